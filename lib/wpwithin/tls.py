"""The TLS client context of an HTTPS connection: the server's certificate checked against given CAs.

gateway_client makes its context with tls_context() once, at start, and
then drops this module. Never disables certificate checks.
"""
from wpwithin.compat import const

_BEGIN = const("-----BEGIN CERTIFICATE-----")
_END = const("-----END CERTIFICATE-----")


def tls_context(cadata=None, cafile=None):
    """An ssl.SSLContext that requires a certificate signed by the given CA(s), PEM or DER.

    Host names are checked against server_hostname (the host by default)
    on both runtimes. MicroPython's unix port cannot parse PEM, so PEM is
    turned into DER here, one certificate at a time.
    """
    import ssl

    if cafile is not None:
        with open(cafile, "rb") as f:
            cadata = f.read()
    if not cadata:
        raise ValueError("a CA certificate is required (cadata or cafile)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED  # MicroPython's default is CERT_NONE
    if hasattr(ctx, "check_hostname"):
        ctx.check_hostname = True  # CPython; mbedTLS checks server_hostname itself
    for der in _der_certificates(cadata):
        try:
            ctx.load_verify_locations(cadata=der)
        except (ValueError, OSError):
            raise ValueError("CA certificate is not a valid X.509 certificate")
    return ctx


def _der_certificates(data):
    """DER certificates from PEM text (one or more) or from one DER certificate."""
    import binascii

    if isinstance(data, str):
        data = data.encode()
    text = str(data, "ascii") if _BEGIN.encode() in data else None
    if text is None:
        return [bytes(data)]
    out = []
    pos = text.find(_BEGIN)
    while pos >= 0:
        end = text.find(_END, pos)
        if end < 0:
            raise ValueError("PEM certificate without an END line")
        b64 = "".join(text[pos + len(_BEGIN):end].split())
        try:
            out.append(binascii.a2b_base64(b64))
        except ValueError:
            raise ValueError("PEM certificate is not valid base64")
        pos = text.find(_BEGIN, end)
    return out

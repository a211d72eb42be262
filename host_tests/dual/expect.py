"""Assertion helpers for dual-runtime tests (MicroPython has no pytest)."""
from wpwithin.errors import ProtocolError


def raises(exc_type, fn, *args, **kwargs):
    """Call fn and return the exception of exc_type it raised; fail if it raised none."""
    try:
        fn(*args, **kwargs)
    except exc_type as exc:
        return exc
    raise AssertionError("%s did not raise %s" % (getattr(fn, "__name__", fn), exc_type.__name__))


def refused(status, fn, *args, **kwargs):
    """Call fn, expect ProtocolError with `status`; return its message."""
    exc = raises(ProtocolError, fn, *args, **kwargs)
    assert exc.status == status, (exc.status, exc.message)
    return exc.message

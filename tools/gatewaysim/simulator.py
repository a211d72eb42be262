"""Assembles a running simulator (ledger, merchants, faults, TLS, server) for the CLI and for tests.

Usage from a test:

    with Simulator(db=str(tmp_path / "ledger.db"), tls_dir=str(tmp_path / "tls")) as sim:
        sim.url          # "https://127.0.0.1:PORT/v1"
        sim.ca_path      # PEM file a client must trust (None without TLS)
        sim.ledger       # gatewaysim.ledger.Ledger: reconcile(), orders_by_customer_order_code(), ...
        sim.faults.add(gatewaysim.faults.parse_fault_spec("orders:drop-after:x1"))
        sim.merchants    # MerchantBook; the default one is merchants.default_merchant()

It owns what it creates and releases all of it in stop(); it holds no
payment rules of its own.
"""
import ipaddress
import time

from gatewaysim import api, faults, ledger, merchants as merchants_mod, server


def _tls_names(host):
    """Extra certificate names for a bind address that is neither loopback nor a wildcard."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return (host,)
    if address.is_unspecified or address.is_loopback:
        return ()
    return (str(address),)


class Simulator:
    """A simulated gateway serving on host:port (port 0 picks a free one)."""

    def __init__(self, merchants=None, db=":memory:", tls_dir=None, tls_names=(), host="127.0.0.1",
                 port=0, fault_list=(), log=server.stderr_log, clock=time.time):
        self.merchants = merchants_mod.MerchantBook(merchants or [merchants_mod.default_merchant()])
        self.faults = faults.FaultBoard(fault_list)
        self.ca_path = None
        context = None
        if tls_dir is not None:
            from gatewaysim import tlsca  # lazy: plain HTTP needs no `cryptography`

            files = tlsca.ensure_credentials(tls_dir, tuple(tls_names) + _tls_names(host))
            self.ca_path = files.ca_cert
            context = tlsca.server_context(files)
        self.ledger = ledger.Ledger(db, clock=clock)
        try:
            self.gateway = api.Gateway(self.ledger, self.merchants, self.faults, clock=clock)
            self._server = server.GatewayServer(self.gateway, host, port, context, log)
        except BaseException:
            self.ledger.close()
            raise
        self._stopped = False

    @property
    def url(self):
        """Base URL of the API, ending in /v1."""
        return self._server.url

    @property
    def port(self):
        """The TCP port served on."""
        return self._server.server_address[1]

    def start(self):
        """Serve in a background thread; returns self."""
        self._server.start()
        return self

    def stop(self):
        """Stop serving, close connections and the ledger. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._server.stop()
        self.ledger.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

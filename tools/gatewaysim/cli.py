"""Command line of the simulated gateway: `gateway [serve] ...` and `gateway ledger ...`.

Parses flags, builds a Simulator, prints the URL as the first line of
stdout, and stops cleanly (exit 0) on SIGTERM or Ctrl-C; `ledger` prints a
ledger file and its reconciliation (exit 1 if inconsistent). Usage errors
exit 2. It prints test keys of the default merchant only (they are public
test values) and never a configured service key or card data.
"""
import argparse
import json
import signal
import sys
import time

from gatewaysim import faults, ledger, merchants as merchants_mod, report, server
from gatewaysim.simulator import Simulator

DEFAULT_PORT = 8443

SERVE_EPILOG = """\
fault SPEC is ENDPOINT:KIND[:ARG][:xN]
  ENDPOINT  tokens, token, orders, order, search, refund, capture, cancel, or *
  KIND      latency:SECONDS | status[:5xx] | drop-before | drop-after | trickle[:SECONDS]
  xN        apply to the next N matching requests only (default: every request)
  e.g. --fault orders:latency:2.0 --fault orders:status:503:x1 --fault orders:drop-after:x1

other command:
  gateway ledger --db FILE [--json]   print a ledger file and its reconciliation
"""


def _serve_parser():
    parser = argparse.ArgumentParser(
        prog="gateway", description="Simulated Worldpay Online Payments gateway (TEST environment).",
        epilog=SERVE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    __import__("version").add_option(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help="TCP port (default %d; 0 picks a free one)" % DEFAULT_PORT)
    parser.add_argument("--db", default=":memory:", metavar="FILE",
                        help="SQLite ledger file (default: in memory, lost on exit)")
    parser.add_argument("--tls", metavar="DIR",
                        help="serve HTTPS with a local test CA kept in DIR (clients trust DIR/ca.pem)")
    parser.add_argument("--tls-name", action="append", default=[], metavar="NAME",
                        help="extra host name or IP for the server certificate (repeatable)")
    parser.add_argument("--merchant", action="append", default=[], metavar="CLIENT_KEY:SERVICE_KEY[:NAME]",
                        help="a merchant's test key pair (repeatable)")
    parser.add_argument("--merchants", metavar="FILE",
                        help="JSON list of {clientKey, serviceKey, name}")
    parser.add_argument("--fault", action="append", default=[], metavar="SPEC",
                        help="inject a fault (repeatable; see below)")
    parser.add_argument("--quiet", action="store_true", help="do not log requests to stderr")
    return parser


def _ledger_parser():
    parser = argparse.ArgumentParser(prog="gateway ledger",
                                     description="Print a simulator ledger and its reconciliation.")
    parser.add_argument("--db", required=True, metavar="FILE", help="the ledger file (from serve --db)")
    parser.add_argument("--json", action="store_true", help="print the reconciliation as JSON only")
    return parser


def serve(argv):
    """`gateway [serve]`: run until SIGTERM/SIGINT; returns the exit status."""
    parser = _serve_parser()
    options = parser.parse_args(argv)
    if not 0 <= options.port <= 65535:
        parser.error("--port must be 0..65535")
    if options.tls:
        try:
            import cryptography  # noqa: F401 (what --tls makes its test CA with)
        except ImportError:
            parser.error("--tls needs the cryptography package, which `make venv` installs into .venv "
                         "(tools/gateway then uses .venv by itself); or: pip install cryptography")
    try:
        merchant_list = [merchants_mod.parse_merchant_spec(spec, number)
                         for number, spec in enumerate(options.merchant, 1)]
        if options.merchants:
            merchant_list += merchants_mod.load_merchants_file(options.merchants)
        fault_list = [faults.parse_fault_spec(spec) for spec in options.fault]
        simulator = Simulator(
            merchants=merchant_list or None, db=options.db, tls_dir=options.tls,
            tls_names=options.tls_name, host=options.host, port=options.port, fault_list=fault_list,
            log=(lambda line: None) if options.quiet else server.stderr_log)
    except (merchants_mod.MerchantConfigError, faults.FaultSpecError, ledger.LedgerError) as exc:
        parser.error(str(exc))
    except OSError as exc:
        sys.stderr.write("gateway: cannot serve on %s:%d: %s\n" % (options.host, options.port, exc.strerror))
        return 2

    stop = []

    def request_stop(signum, frame):
        stop.append(signum)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    simulator.start()
    try:
        print(simulator.url, flush=True)
        if not merchant_list:
            default = merchants_mod.default_merchant()
            print("merchant %s (default test merchant): clientKey %s serviceKey %s"
                  % (default.name, default.client_key, default.service_key))
        else:
            for merchant in simulator.merchants:
                print("merchant %s: clientKey %s" % (merchant.name, merchant.client_key))
        if simulator.ca_path:
            print("trust CA %s" % simulator.ca_path)
        print("ledger %s" % options.db, flush=True)
        while not stop:
            time.sleep(0.1)
    finally:
        simulator.stop()
    return 0


def show_ledger(argv):
    """`gateway ledger`: print the ledger; exit 1 if it does not reconcile."""
    parser = _ledger_parser()
    options = parser.parse_args(argv)
    try:
        book = ledger.Ledger(options.db, create=False)
    except ledger.LedgerError as exc:
        sys.stderr.write("gateway ledger: %s\n" % exc)
        return 2
    try:
        summary = book.reconcile()
        if options.json:
            print(json.dumps(summary, indent=2, sort_keys=True))
        else:
            sys.stdout.write(report.format_ledger(book.dump(), summary, options.db))
    finally:
        book.close()
    return 0 if summary["consistent"] else 1


def main(argv=None):
    """Entry point of tools/gateway; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "ledger":
        return show_ledger(argv[1:])
    if argv and argv[0] == "serve":
        argv = argv[1:]
    return serve(argv)

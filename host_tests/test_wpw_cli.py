"""The wpw command, driven as a user would: subprocesses against a real gateway and a MicroPython producer."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib

import pytest

import demo  # tools/demo.py: its charger and merchant keys
from gatewaysim.ledger import Ledger
from harness.process import Process, free_ports
from harness.things import ROOT, Things
from wpwcli import main as wpw_main

WPW = os.path.join(os.path.dirname(sys.executable), "wpw")
# The installed wpw, running this checkout's code (the venv may have been installed from another one).
CHECKOUT = {"PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "tools"), os.path.join(ROOT, "lib")])}


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """A simulated gateway (HTTPS) and a producer under MicroPython; yields what the CLI needs."""
    work = tmp_path_factory.mktemp("market")
    with Things(work) as things:
        gateway = things.gateway(db=str(work / "gateway.db"), merchants=["%s:%s" % (demo.CLIENT_KEY, demo.SERVICE_KEY)])
        ports = free_ports(2, socket.SOCK_DGRAM)
        charger = demo.CHARGER
        producer = things.producer(charger["serverId"], "micropython", gateway.url, gateway.ca_path, ports=ports,
                                   services=charger["services"], keys=charger["keys"],
                                   description=charger["description"])
        cards = {}
        for name, number in (("good", "5555555555554444"), ("declined", "4000000000000002")):
            cards[name] = str(work / ("%s-card.json" % name))
            with open(cards[name], "w") as f:
                json.dump({"name": "Test Shopper", "number": number, "expiryMonth": 12, "expiryYear": 2031,
                           "cvc": "321"}, f)
        yield {"url": gateway.url, "ca": gateway.ca_path, "address": "%s:%d" % (producer["host"], producer["port"]),
               "ports": ports, "cards": cards, "work": work, "things": things, "db": str(work / "gateway.db")}


def env_of(market, card="good"):
    return dict(os.environ, WPW_GATEWAY=market["url"], WPW_GATEWAY_CA=market["ca"],
                WPW_CARD=market["cards"].get(card, card), WPW_HOME=str(market["work"] / "home"), **CHECKOUT)


def wpw(market, *args, card="good", check=None, env=None):
    proc = subprocess.run([WPW] + list(args), capture_output=True, text=True, timeout=60,
                          env=dict(env_of(market, card), **(env or {})))
    if check is not None:
        assert proc.returncode == check, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_help_lists_the_commands():
    proc = subprocess.run([WPW, "--help"], capture_output=True, text=True, env=dict(os.environ, **CHECKOUT))
    for command in ("scan", "services", "buy", "redeem", "tokens", "pending", "resume", "producer", "consumer"):
        assert command in proc.stdout
    assert "130 interrupted" in proc.stdout and "6 a payment's outcome is not known" in proc.stdout
    proc = subprocess.run([WPW, "buy", "--help"], capture_output=True, text=True, env=dict(os.environ, **CHECKOUT))
    assert "--payment-timeout" in proc.stdout and "3 x its gateway timeout" in " ".join(proc.stdout.split())


def test_scan_finds_the_producer_by_probe(market):
    trace = market["work"] / "scan.svg"
    proc = wpw(market, "scan", "--json", "--seconds", "6", "--probe-address", "127.255.255.255", "--trace", str(trace),
               "--broadcast-port", str(market["ports"][0]), "--probe-port", str(market["ports"][1]), check=0)
    producers = json.loads(proc.stdout)["producers"]
    assert [p["serverID"] for p in producers] == ["charger-bay-3"]
    assert "%s:%d" % (producers[0]["host"], producers[0]["port"]) == market["address"]
    assert "listening" in proc.stderr  # progress while it waits
    svg = trace.read_text()  # the probe, its answer and a broadcast (one every 5 s) drawn
    for label in ("probe to 127.255.255.255:%d" % market["ports"][1], "probe answer: charger-bay-3",
                  "broadcast: charger-bay-3", ">Discover<"):
        assert label in svg, label


def test_services_lists_prices(market):
    proc = wpw(market, "services", market["address"], check=0)
    assert "service 1: Car charge" in proc.stdout
    assert "price 2: GBP 0.25 per kWh (11 kWh and more)" in proc.stdout


def test_buy_then_redeem_in_parts_then_tokens(market):
    trace = market["work"] / "buy.svg"
    proc = wpw(market, "buy", market["address"], "--service", "1", "--price", "1", "--units", "6", "--json",
               "--trace", str(trace), check=0)
    receipt = json.loads(proc.stdout)
    assert receipt["units"] == 6 and receipt["totalPaid"] == 180 and receipt["currency"] == "GBP"
    assert receipt["card"] == "**** **** **** 4444"
    assert "5555555555554444" not in proc.stdout + proc.stderr
    svg = trace.read_text()
    assert svg.startswith("<svg") and "POST /payment: pay GBP 1.80" in svg and "POST /v1/tokens" in svg
    assert "requestTotal: 6 kWh at price 1" in svg and ">charged GBP 1.80<" in svg and ">Pay<" in svg
    token = receipt["token"][:10]
    proc = wpw(market, "redeem", token, "--units", "4", "--parts", "2", "--json", check=0)
    assert json.loads(proc.stdout)["sessions"] == [{"supplied": 2, "remaining": 4}, {"supplied": 2, "remaining": 2}]
    proc = wpw(market, "tokens", "--json", check=0)
    held = [t for t in json.loads(proc.stdout)["tokens"] if t["token"] == receipt["token"]]
    assert held[0]["remaining"] == 2 and held[0]["units"] == 6
    proc = wpw(market, "redeem", token, "--units", "3", check=1)
    assert "2 units left" in proc.stderr
    home = market["work"] / "home"
    assert oct(home.stat().st_mode & 0o777) == "0o700"
    for name in os.listdir(home):  # the journal, its lock: the tokens are bearer credentials
        assert oct((home / name).stat().st_mode & 0o777) == "0o600", name


def test_declined_card_exits_4_and_says_nothing_was_charged(market):
    proc = wpw(market, "buy", market["address"], "--service", "1", "--price", "1", "--units", "1",
               card="declined", check=4)
    assert "declined" in proc.stderr and "nothing was charged" in proc.stderr


def test_unreachable_producer_exits_3(market):
    proc = wpw(market, "services", "127.0.0.1:9", "--timeout", "2", check=3)
    assert "cannot connect to 127.0.0.1:9" in proc.stderr and "the producer is running" in proc.stderr


def test_bad_arguments_exit_2_with_a_message(market):
    proc = wpw(market, "buy", "not-an-address", "--service", "1", "--price", "1", "--units", "1", check=2)
    assert "HOST:PORT" in proc.stderr
    proc = wpw(market, "buy", market["address"], "--service", "1", "--price", "1", "--units", "0", check=2)
    assert "--units must be at least 1" in proc.stderr
    proc = wpw(market, "redeem", "zzzzzzzz", "--units", "1", check=2)
    assert "wpw tokens" in proc.stderr


def test_unknown_service_is_refused_with_exit_1(market):
    proc = wpw(market, "buy", market["address"], "--service", "9", "--price", "1", "--units", "1", check=1)
    assert "does not offer service 9" in proc.stderr and "wpw services" in proc.stderr


# --- scan ---------------------------------------------------------------------------------

def test_the_default_scan_hears_a_producer_that_only_broadcasts(market):
    """Like one on the reference Go SDK: a broadcast every 5 s, no probe answered. The scan starts just
    after a broadcast went out, the worst case: the default listen must last until the next one."""
    ports = free_ports(2, socket.SOCK_DGRAM)
    market["things"].producer("broadcast-only", "cpython", market["url"], market["ca"], ports=ports,
                              network={"probePort": 0}, keys=demo.CHARGER["keys"])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ear:
        ear.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ear.bind(("0.0.0.0", ports[0]))
        ear.settimeout(15)
        assert b"broadcast-only" in ear.recv(1024)
        started = time.monotonic()
        proc = wpw(market, "scan", "--json", "--probe-address", "127.255.255.255", "--broadcast-port", str(ports[0]),
                   "--probe-port", str(ports[1]), check=0)
    print("the scan took %.1f s (default listen %.1f s)" % (time.monotonic() - started, wpw_main.SCAN_SECONDS))
    assert [p["serverID"] for p in json.loads(proc.stdout)["producers"]] == ["broadcast-only"]


def test_scan_stops_once_the_expected_producers_answer(market):
    proc = wpw(market, "scan", "--json", "--expect", "1", "--seconds", "60", "--probe-address", "127.255.255.255",
               "--broadcast-port", str(market["ports"][0]), "--probe-port", str(market["ports"][1]), check=0)
    assert [p["serverID"] for p in json.loads(proc.stdout)["producers"]] == ["charger-bay-3"]  # well before 60 s


def test_a_probe_that_cannot_be_sent_falls_back_to_listening(market):
    """On a host with only loopback there is no route to 255.255.255.255: one line says so, the scan listens."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-n", "true"]).returncode != 0:
        pytest.skip("cannot make a network namespace here (unshare -n needs root)")
    proc = subprocess.run(["unshare", "-n", "sh", "-c", 'ip link set lo up 2>/dev/null; exec "$@"', "sh", WPW, "scan",
                           "--seconds", "1", "--json"], capture_output=True, text=True, timeout=60,
                          env=env_of(market))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["producers"] == []
    said = [line for line in proc.stderr.splitlines() if "probe" in line]
    assert said == ["wpw: cannot send the probe to 255.255.255.255:8981 (Network is unreachable); "
                    "listening for broadcasts only"], proc.stderr


def subcommands():
    parser = wpw_main.parser()
    return parser, next(a for a in parser._actions if a.dest == "command").choices


def test_every_option_says_what_it_is_for_and_tokens_offers_only_its_own():
    parser, commands = subcommands()
    for name, sub in [("wpw", parser)] + sorted(commands.items()):
        for action in sub._actions:
            assert action.help or action.dest == "command", "%s %s has no help text" % (name, action.option_strings or action.dest)
    options = {o for a in commands["tokens"]._actions for o in a.option_strings}
    assert options == {"-h", "--help", "--json", "--quiet", "--wallet"}
    options = {o for a in commands["scan"]._actions for o in a.option_strings}
    assert not options & {"--wallet", "--card", "--gateway", "--payment-timeout", "--client-id"}


def test_every_command_says_the_projects_version():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        version = tomllib.load(f)["project"]["version"]
    tools = [[os.path.join(ROOT, "tools", name)] for name in ("build", "deploy", "gateway", "thing", "vboard")]
    tools += [[sys.executable, os.path.join(ROOT, "tools", name)] for name in ("demo.py", "bench.py")]
    for argv in [[WPW]] + tools:
        proc = subprocess.run(argv + ["--version"], capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, **CHECKOUT))
        assert proc.returncode == 0 and proc.stdout.split()[-1] == version, (argv, proc.stdout, proc.stderr)


# --- messages -------------------------------------------------------------------------------

def card_file(market, name, **fields):
    card = {"name": "Test Shopper", "number": "5555555555554444", "expiryMonth": 12, "expiryYear": 2031, "cvc": "321"}
    card.update(fields)
    path = str(market["work"] / name)
    with open(path, "w") as f:
        f.write(fields.pop("_text", None) or json.dumps({k: v for k, v in card.items() if v is not None}))
    return path


def test_a_card_file_is_checked_field_by_field_before_anything_is_asked(market):
    buy = ["buy", market["address"], "--service", "1", "--price", "1", "--units", "1"]
    cases = [(dict(number=None), "card.number is missing"),
             (dict(numbr="5555555555554444"), "card.numbr is not a known field"),
             (dict(number="5555555555554445"), "card.number is not a card number (its check digit is wrong)"),
             (dict(expiryYear=2020), "the card expired at the end of 12/2020"),
             (dict(expiryMonth="12"), "card.expiryMonth must be an integer"),
             (dict(_text='{"name": "x",}'), "line 1 column 14")]
    for i, (fields, said) in enumerate(cases):
        proc = wpw(market, *buy, card=card_file(market, "bad-%d.json" % i, **fields), check=2)
        assert said in proc.stderr and "asking for" not in proc.stderr, (fields, proc.stderr)
        assert "5555" not in proc.stderr
    proc = wpw(market, *buy, "--json", card=card_file(market, "spaced.json", number="5555 5555 5555 4444"), check=0)
    assert json.loads(proc.stdout)["card"] == "**** **** **** 4444"
    assert "asking for 1 unit of" in proc.stderr and "  units      1 unit (price 1)" not in proc.stdout


def test_a_decline_is_said_once_and_settings_problems_name_the_setting(market, tmp_path):
    buy = ["buy", market["address"], "--service", "1", "--price", "1", "--units", "1"]
    proc = wpw(market, *buy, card="declined", check=4)
    assert proc.stderr.count("declined") == 1 and "nothing was charged" in proc.stderr
    proc = wpw(market, *buy, env={"WPW_GATEWAY_CA": ""}, check=2)
    assert "--ca" in proc.stderr and "WPW_GATEWAY_CA" in proc.stderr and "cadata" not in proc.stderr
    with Things(tmp_path) as things:  # another gateway, with the producer's merchant too: its own CA and tokens
        other = things.gateway(merchants=["%s:%s" % demo.CHARGER["keys"]])
        proc = wpw(market, *buy, env={"WPW_GATEWAY_CA": other.ca_path}, check=2)  # our CA does not sign theirs
        assert "TLS with" in proc.stderr and "a settings problem" in proc.stderr and "--ca" in proc.stderr
        assert "check the address" not in proc.stderr
        proc = wpw(market, *buy, env={"WPW_GATEWAY": other.url, "WPW_GATEWAY_CA": other.ca_path}, check=2)
        assert "another gateway" in proc.stderr and "--gateway" in proc.stderr and "declined" not in proc.stderr


def test_a_tier_move_is_said_before_paying(market):
    proc = wpw(market, "buy", market["address"], "--service", "1", "--price", "1", "--units", "12", "--quiet", check=0)
    note = "wpw: note: you asked for 12 units at price 1; the producer sells 12 units at price 2 instead"
    assert proc.stderr.startswith(note)  # with --quiet too: it is said before the payment
    assert "units      12 units (price 2)" in proc.stdout


# --- quote and --max-total ---------------------------------------------------------------------

def charged(market):
    return Ledger(market["db"], create=False).reconcile()["totals"].get("GBP", {}).get("charged", 0)


def test_quote_and_max_total_pay_nothing(market):
    before = charged(market)
    proc = wpw(market, "quote", market["address"], "--service", "1", "--price", "1", "--units", "12", "--json",
               check=0)
    quote = json.loads(proc.stdout)
    assert (quote["units"], quote["priceID"], quote["totalPrice"], quote["currency"]) == (12, 2, 300, "GBP")
    assert "price 2 instead" in quote["note"]
    held = len(json.loads(wpw(market, "tokens", "--json", check=0).stdout)["tokens"])
    buy = ["buy", market["address"], "--service", "1", "--price", "1", "--units", "12"]
    for cap in ("2.99", "GBP 2.99", "EUR 5"):
        proc = wpw(market, *buy, "--max-total", cap, check=7)
        assert "nothing was paid" in proc.stderr and "paying" not in proc.stderr
    assert charged(market) == before  # the gateway's ledger: nothing charged
    assert len(json.loads(wpw(market, "tokens", "--json", check=0).stdout)["tokens"]) == held
    proc = wpw(market, *buy, "--max-total", "3.00", "--json", check=0)
    assert json.loads(proc.stdout)["totalPaid"] == 300 and charged(market) == before + 300
    proc = wpw(market, *buy, "--max-total", "three", check=2)
    assert "expected an amount" in proc.stderr


# --- exit codes ---------------------------------------------------------------------------------

def test_json_errors_are_a_json_object_on_stdout(market):
    proc = wpw(market, "services", "127.0.0.1:9", "--timeout", "2", "--json", check=3)
    error = json.loads(proc.stdout)["error"]
    assert error["exitCode"] == 3 and error["kind"] == "unreachable" and "127.0.0.1:9" in error["message"]


def test_ctrl_c_exits_130_and_a_server_asked_to_stop_exits_0(market):
    with socket.socket() as silent:  # a producer that takes the connection and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = "127.0.0.1:%d" % silent.getsockname()[1]
        for args in (["services", address], ["buy", address, "--service", "1", "--price", "1", "--units", "1"],
                     ["scan", "--seconds", "30", "--no-probe", "--broadcast-port", str(free_ports(1, socket.SOCK_DGRAM)[0])]):
            process = Process("wpw " + args[0], [WPW] + args, env=env_of(market))
            process.expect("... ", 30)  # its progress line: it is waiting
            assert process.stop(signal.SIGINT) == 130, process.text()
            assert "interrupted" in process.text() and "Traceback" not in process.text()
    config = os.path.join(market["work"], "charger-bay-3", "config.json")
    for sig in (signal.SIGTERM, signal.SIGINT):
        process = Process("wpw producer", [WPW, "producer", "--config", config, "--runtime", "cpython"],
                          env=env_of(market))
        process.expect("listening on", 30)
        assert process.stop(sig, group=False) == 0, process.text()  # the Thing itself, not only wpw, stops
        assert "stopped" in process.text()

"""Runs one scenario of lib's GatewayClient against a running gateway simulator; prints one JSON line.

    micropython host_tests/gateway_client_scenarios.py SCENARIO URL CA CK_A SK_A CK_B SK_B REF [TIMEOUT]
    python      host_tests/gateway_client_scenarios.py ...            (PYTHONPATH=lib)

CA is the CA certificate file (PEM or DER) for an https:// URL, or "-";
CK_x/SK_x are merchant A's and B's client and service keys; REF prefixes
every customerOrderCode so the caller can find the orders in the ledger;
TIMEOUT is the client's timeout in seconds (default 5). Fault scenarios
arm their fault through POST /_sim/faults themselves, so a scenario is
self-contained. The one output line is a JSON object of observations:
results as plain values, exceptions as {"exc": class name, ...}. It
never holds a card number, a CVC or a service key (the tests check).
Plain Python that MicroPython 1.29 also runs: no f-strings.
"""
import asyncio
import json
import sys
import time

from wpwithin import http_client
from wpwithin.card import Card
from wpwithin.gateway_client import GatewayClient, parse_url
from wpwithin.gateway_wire import GatewayError, order_request
from wpwithin.net_errors import ConnectionDropped, NetError

YEAR = time.localtime()[0]
CARDS = {
    "visa": "4444333322221111",
    "mastercard": "5555555555554444",
    "maestro": "6759649826438453",
    "refused": "4000000000000002",
    "insufficient": "4000000000009995",
    "error": "4000000000000119",
    "bad_luhn": "4444333322221112",
    "not_a_test_card": "4111111111111111",
}
CVC = "737"


def card(label, name="Bilbo Baggins", month=12, year=None):
    return Card(name, CARDS[label], month, YEAR + 3 if year is None else year, CVC)


def _ticks():
    if hasattr(time, "ticks_ms"):
        return time.ticks_ms()
    return int(time.monotonic() * 1000)


def _since(start):
    if hasattr(time, "ticks_diff"):
        return time.ticks_diff(time.ticks_ms(), start)
    return _ticks() - start


def failure(exc):
    """What a caller sees of an exception: its class, and the fields it carries."""
    out = {"exc": type(exc).__name__, "message": getattr(exc, "message", None) or str(exc)}
    if isinstance(exc, GatewayError):
        out["http_status"] = exc.http_status
        out["custom_code"] = exc.custom_code
    if isinstance(exc, NetError):
        out["net_error"] = True
    if isinstance(exc, ConnectionDropped):
        out["answered"] = exc.answered
    return out


async def attempt(awaitable):
    """{"ok": result, "ms": elapsed} or the failure() of what it raised, with "ms"."""
    start = _ticks()
    try:
        result = await awaitable
    except (GatewayError, NetError, ValueError) as exc:
        out = failure(exc)
    else:
        out = {"ok": result}
    out["ms"] = _since(start)
    return out


class Run:
    def __init__(self, argv):
        (self.scenario, self.url, ca_path, self.ck_a, self.sk_a, self.ck_b, self.sk_b,
         self.ref) = argv[1:9]
        self.timeout = float(argv[9]) if len(argv) > 9 else 5
        self.ca = None
        if ca_path != "-":
            with open(ca_path, "rb") as f:
                self.ca = f.read()
        self.a = self.client(self.sk_a)
        self.b = self.client(self.sk_b)

    def client(self, service_key=None, timeout=None, url=None):
        return GatewayClient(url or self.url, service_key, self.ca, self.timeout if timeout is None else timeout)

    async def arm(self, endpoint, kind, arg=None):
        """One fault for the next matching request, through the simulator's control endpoint."""
        tls, host, port, _ = parse_url(self.url)
        fault = {"endpoint": endpoint, "kind": kind, "count": 1}
        if arg is not None:
            fault["arg"] = arg
        status, _, _ = await http_client.request(
            "POST", host, port, "/_sim/faults", json.dumps(fault).encode(), {"Content-Type": "application/json"},
            timeout=5, tls=self.a.tls, server_hostname=host if tls else None)
        if status != 200:
            raise RuntimeError("arming %s:%s answered %d" % (endpoint, kind, status))

    async def pay(self, label, amount, suffix, name="Bilbo Baggins", merchant="a"):
        """Token for merchant A's client key, order with `merchant`'s service key: the order dict."""
        token = await self.a.token(self.ck_a, card(label, name))
        client = self.a if merchant == "a" else self.b
        return await client.place_order(order_request(token, amount, "GBP", "scenario " + suffix,
                                                      self.ref + "-" + suffix))


# --- scenarios: each returns a dict of observations ------------------------------------------

async def s_success(run):
    out = {"repr_client": repr(run.a), "repr_card": repr(card("visa"))}
    for n, label in enumerate(("visa", "mastercard", "maestro")):
        token = await run.a.token(run.ck_a, card(label))
        order = await run.a.place_order(order_request(token, 100 + n, "GBP", "scenario " + label,
                                                      run.ref + "-" + label))
        out[label] = {"token_prefix": token[:8], "order": order,
                      "query": await run.a.order(order["orderCode"])}
    return out


async def s_decline(run):
    out = {}
    for label, name in (("refused", "Bilbo"), ("insufficient", "Bilbo"), ("visa", "REFUSED")):
        key = label if name == "Bilbo" else "by_name"
        out[key] = await attempt(run.pay(label, 250, key, name))
        if "ok" in out[key]:
            code = out[key]["ok"]["orderCode"]
            out[key + "_refund"] = await attempt(run.a.refund(code))
    return out


async def s_invalid_card(run):
    out = {}
    for key, c in (("bad_luhn", card("bad_luhn")), ("expired", card("visa", year=YEAR - 1)),
                   ("not_a_test_card", card("not_a_test_card")), ("bad_cvc", Card("B", CARDS["visa"], 12, YEAR + 3, "7"))):
        out[key] = await attempt(run.a.token(run.ck_a, c))
    return out


async def s_gateway_error(run):
    token = await run.a.token(run.ck_a, card("error"))
    request = order_request(token, 300, "GBP", "scenario error", run.ref + "-error")
    first = await attempt(run.a.place_order(request))
    second = await attempt(run.a.place_order(request))  # token not spent: the same answer
    by_name = await attempt(run.pay("visa", 300, "error-by-name", "ERROR"))
    return {"first": first, "second": second, "by_name": by_name}


async def s_token_reuse(run):
    token = await run.a.token(run.ck_a, card("visa"))
    first = await attempt(run.a.place_order(order_request(token, 400, "GBP", "reuse", run.ref + "-first")))
    again = await attempt(run.a.place_order(order_request(token, 400, "GBP", "reuse", run.ref + "-again")))
    declined = await run.a.token(run.ck_a, card("refused"))
    d1 = await attempt(run.a.place_order(order_request(declined, 400, "GBP", "reuse", run.ref + "-declined")))
    d2 = await attempt(run.a.place_order(order_request(declined, 400, "GBP", "reuse", run.ref + "-declined2")))
    unknown = await attempt(run.a.place_order(order_request(
        "TEST_SU_00000000-0000-4000-8000-000000000000", 400, "GBP", "reuse", run.ref + "-unknown")))
    return {"first": first, "again": again, "declined_first": d1, "declined_again": d2, "unknown": unknown}


async def s_merchant_mixup(run):
    token = await run.a.token(run.ck_a, card("visa"))  # made with A's client key
    request = order_request(token, 500, "GBP", "mixup", run.ref + "-mixup")
    by_b = await attempt(run.b.place_order(request))
    by_a = await attempt(run.a.place_order(request))  # the token was not spent by the refusal
    return {"by_b": by_b, "by_a": by_a}


async def s_bad_key(run):
    unknown_sk = "T_S_99999999-9999-4999-8999-999999999999"
    unknown_ck = "T_C_99999999-9999-4999-8999-999999999999"
    token = await run.a.token(run.ck_a, card("visa"))
    request = order_request(token, 600, "GBP", "bad key", run.ref + "-badkey")
    out = {
        "unknown_service_key": await attempt(run.client(unknown_sk).place_order(request)),
        "client_key_as_service_key": await attempt(run.client(run.ck_a).place_order(request)),
        "unknown_client_key": await attempt(run.a.token(unknown_ck, card("visa"))),
        "service_key_as_client_key": await attempt(run.a.token(run.sk_a, card("visa"))),
        "no_service_key": await attempt(run.client(None).place_order(request)),
        "repr_client": repr(run.client(unknown_sk)),
    }
    out["after"] = await attempt(run.a.place_order(request))  # none of the refusals spent the token
    return out


async def s_order_not_found(run):
    order = await run.pay("visa", 700, "nf")
    code = order["orderCode"]
    return {
        "unknown": await attempt(run.a.order("00000000-0000-4000-8000-000000000000")),
        "other_merchant": await attempt(run.b.order(code)),
        "refund_unknown": await attempt(run.a.refund("00000000-0000-4000-8000-000000000000")),
        "refund_other_merchant": await attempt(run.b.refund(code)),
        "own": await attempt(run.a.order(code)),
    }


async def s_refund_full(run):
    order = await run.pay("visa", 800, "full")
    code = order["orderCode"]
    return {
        "refund": await attempt(run.a.refund(code)),
        "after": await attempt(run.a.order(code)),
        "twice": await attempt(run.a.refund(code)),
        "partial_after_full": await attempt(run.a.refund(code, 1)),
    }


async def s_refund_partial(run):
    order = await run.pay("mastercard", 1000, "partial")
    code = order["orderCode"]
    out = {"order": order}
    out["part"] = await attempt(run.a.refund(code, 300))
    out["after_part"] = await attempt(run.a.order(code))
    out["over"] = await attempt(run.a.refund(code, 701))
    out["zero"] = await attempt(run.a.refund(code, 0))
    out["rest"] = await attempt(run.a.refund(code, 700))
    out["after_rest"] = await attempt(run.a.order(code))
    out["again"] = await attempt(run.a.refund(code, 1))
    return out


async def s_find_orders(run):
    code = run.ref + "-found+a&b c%2F"  # characters that mean something in a query string
    token = await run.a.token(run.ck_a, card("refused"))
    await run.a.place_order(order_request(token, 900, "GBP", "find", code))
    token = await run.a.token(run.ck_a, card("visa"))
    await run.a.place_order(order_request(token, 901, "GBP", "find", code))
    token = await run.b.token(run.ck_b, card("visa"))
    await run.b.place_order(order_request(token, 902, "GBP", "find", code))
    return {
        "a": await attempt(run.a.find_orders(code)),
        "b": await attempt(run.b.find_orders(code)),
        "prefix_only": await attempt(run.a.find_orders(run.ref + "-found")),
        "none": await attempt(run.a.find_orders(run.ref + "-nothing")),
    }


async def s_https(run):
    """A token and an order through HTTPS verified against the given CA (PEM or DER)."""
    return {"pay": await attempt(run.pay("visa", 1100, "https"))}


async def s_tls_refused(run):
    """The same, when the CA or the host name is wrong: nothing reaches the gateway."""
    return {"token": await attempt(run.a.token(run.ck_a, card("visa"))),
            "order": await attempt(run.a.order("00000000-0000-4000-8000-000000000000"))}


async def s_no_ca(run):
    try:
        GatewayClient(run.url, run.sk_a, None)
    except ValueError as exc:
        return {"construct": failure(exc)}
    return {"construct": {"ok": "constructed without a CA"}}


async def s_refused(run):
    return {"token": await attempt(run.a.token(run.ck_a, card("visa")))}


async def _wait_for_orders(run, code, seconds):
    """Ask the gateway (find_orders) until it knows an order with `code`, for up to `seconds`."""
    start = _ticks()
    while True:
        found = await run.a.find_orders(code)
        if found or _since(start) > seconds * 1000:
            return found
        await asyncio.sleep(0.1)


async def _order_fault(run, kind, arg=None, wait=0):
    """Arm a fault on POST /orders and pay; look at what the gateway knows; retry with the same token.

    The retry carries another customerOrderCode, so the ledger tells the
    faulted attempt and the retry apart.
    """
    token = await run.a.token(run.ck_a, card("visa"))
    code = run.ref + "-fault"
    await run.arm("orders", kind, arg)
    out = {"pay": await attempt(run.a.place_order(order_request(token, 1200, "GBP", "fault " + kind, code)))}
    out["found"] = await _wait_for_orders(run, code, wait) if wait else await run.a.find_orders(code)
    out["retry"] = await attempt(run.a.place_order(order_request(token, 1200, "GBP", "retry", code + "-retry")))
    return out


async def s_fault_latency(run):
    # The gateway sleeps 3 timeouts before committing: the client gives up first, the order still commits.
    return await _order_fault(run, "latency", 3 * run.timeout, wait=6 * run.timeout)


async def s_fault_status(run):
    return await _order_fault(run, "status", 503)


async def s_fault_drop_before(run):
    return await _order_fault(run, "drop-before")


async def s_fault_drop_after(run):
    return await _order_fault(run, "drop-after")


async def s_fault_trickle(run):
    # 16 bytes per write, 1/40 of the timeout apart: the whole answer takes longer than the
    # timeout, each piece much less (the timeout is per read).
    return await _order_fault(run, "trickle", run.timeout / 40)


async def s_fault_other_endpoints(run):
    """Faults on the token, query, search and refund endpoints."""
    out = {}
    await run.arm("tokens", "drop-before")
    out["token_drop_before"] = await attempt(run.a.token(run.ck_a, card("visa")))
    await run.arm("tokens", "latency", 3 * run.timeout)
    out["token_latency"] = await attempt(run.a.token(run.ck_a, card("visa")))
    order = await run.pay("visa", 1300, "other")
    code = order["orderCode"]
    out["order"] = order
    await run.arm("order", "drop-before")
    out["query_drop_before"] = await attempt(run.a.order(code))
    await run.arm("order", "latency", 3 * run.timeout)
    out["query_latency"] = await attempt(run.a.order(code))
    await run.arm("search", "status", 500)
    out["search_status"] = await attempt(run.a.find_orders(run.ref + "-other"))
    await run.arm("search", "drop-after")
    out["search_drop_after"] = await attempt(run.a.find_orders(run.ref + "-other"))
    await run.arm("refund", "drop-after")
    out["refund_drop_after"] = await attempt(run.a.refund(code, 500))
    out["after_refund"] = await attempt(run.a.order(code))
    await run.arm("refund", "status", 502)
    out["refund_status"] = await attempt(run.a.refund(code))
    await run.arm("refund", "drop-before")
    out["refund_drop_before"] = await attempt(run.a.refund(code))
    out["after_status"] = await attempt(run.a.order(code))
    return out


SCENARIOS = {
    "success": s_success,
    "decline": s_decline,
    "invalid_card": s_invalid_card,
    "gateway_error": s_gateway_error,
    "token_reuse": s_token_reuse,
    "merchant_mixup": s_merchant_mixup,
    "bad_key": s_bad_key,
    "order_not_found": s_order_not_found,
    "refund_full": s_refund_full,
    "refund_partial": s_refund_partial,
    "find_orders": s_find_orders,
    "https": s_https,
    "tls_refused": s_tls_refused,
    "no_ca": s_no_ca,
    "refused": s_refused,
    "fault_latency": s_fault_latency,
    "fault_status": s_fault_status,
    "fault_drop_before": s_fault_drop_before,
    "fault_drop_after": s_fault_drop_after,
    "fault_trickle": s_fault_trickle,
    "fault_other_endpoints": s_fault_other_endpoints,
}


def main(argv):
    if len(argv) < 9 or argv[1] not in SCENARIOS:
        print("usage: gateway_client_scenarios.py SCENARIO URL CA|- CK_A SK_A CK_B SK_B REF [TIMEOUT]")
        print("scenarios: " + " ".join(sorted(SCENARIOS)))
        sys.exit(2)
    if argv[1] == "no_ca":
        out = asyncio.run(s_no_ca(_NoClients(argv)))
    else:
        run = Run(argv)
        out = asyncio.run(SCENARIOS[run.scenario](run))
    out["scenario"] = argv[1]
    out["runtime"] = sys.implementation.name
    print(json.dumps(out))


class _NoClients:
    """Arguments only: for scenarios that must build their clients themselves."""

    def __init__(self, argv):
        self.url, self.sk_a = argv[2], argv[5]


main(sys.argv)

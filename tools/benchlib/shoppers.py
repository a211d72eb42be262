"""CPython consumers buying from a producer: many at once, each with the lib's ConsumerRole.

A purchase is the whole protocol (service list, price list, total, card to
token at the gateway, payment, delivery begin and end: every producer
route and both gateway calls). shop() runs `consumers` of them at once,
each making purchases one after another until it has made `each` or the
time is up; every failure is counted with its kind, never raised.
"""
import asyncio
import time

from wpwithin.card import Card
from wpwithin.consumer_role import ConsumerRole, Producer
from wpwithin.gateway_client import GatewayClient

CARD = Card("Bench Consumer", "4444333322221111", 12, 2031, "123")
UNITS = 2


def _kind(exc):
    status = getattr(exc, "status", None)
    return "%s %s" % (type(exc).__name__, status) if status else "%s: %s" % (type(exc).__name__, str(exc)[:80])


async def _shop(port, gateway_url, ca, consumers, each, seconds, timeout):
    producer = Producer("127.0.0.1", port)
    deadline = time.monotonic() + seconds
    result = {"completed": 0, "failures": 0, "kinds": {}, "busyRetries": 0}

    async def consumer(number):
        role = ConsumerRole("bench-%d" % number, CARD, GatewayClient(gateway_url, ca=ca, timeout=timeout),
                            timeout=timeout)
        made = 0
        while made < each and time.monotonic() < deadline:
            made += 1
            try:
                purchase = await role.buy(producer, 1, 1, UNITS)
                await role.deliver(producer, purchase, UNITS)
                result["completed"] += 1
            except Exception as exc:  # noqa: every failure is a figure, whatever its kind
                result["failures"] += 1
                kind = _kind(exc)
                result["kinds"][kind] = result["kinds"].get(kind, 0) + 1
        result["busyRetries"] += role.busy_answers

    began = time.monotonic()
    await asyncio.gather(*[consumer(i) for i in range(consumers)])
    result["seconds"] = time.monotonic() - began
    return result


def shop(port, gateway_url, ca_path=None, consumers=1, each=1, seconds=60.0, timeout=10):
    """{"completed", "failures", "kinds": {kind: count}, "busyRetries", "seconds"}.

    each: purchases per consumer at most; seconds: no purchase starts after this.
    """
    ca = None
    if ca_path:
        with open(ca_path, "rb") as f:
            ca = f.read()
    return asyncio.run(_shop(port, gateway_url, ca, consumers, each, seconds, timeout))

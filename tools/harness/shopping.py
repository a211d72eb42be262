"""CPython consumers buying from a producer with the lib's ConsumerRole: the one shopping loop.

A purchase is the whole protocol (service list, price list, total, card
to token at the gateway, payment, delivery begin and end: every producer
route and both gateway calls). shop() runs `consumers` of them at once;
each buys, takes the units in the delivery sessions `parts` says, and
buys again until the shared budget of `purchases` is spent, it has made
`each`, or `seconds` have passed (each makes one at least). A failure is
raised, or with count_failures counted by its kind (a bench figure).
"""
import asyncio
import time

from harness.things import CARD
from wpwithin.card import from_secrets
from wpwithin.consumer_role import ConsumerRole, Producer
from wpwithin.gateway_client import GatewayClient


def card(obj=CARD):
    """A lib Card from a card file's object."""
    return from_secrets(obj)


def gateway_client(url, ca_path=None, timeout=10):
    ca = None
    if ca_path:
        with open(ca_path, "rb") as f:
            ca = f.read()
    return GatewayClient(url, ca=ca, timeout=timeout)


def _kind(exc):
    status = getattr(exc, "status", None)
    return "%s %s" % (type(exc).__name__, status) if status else "%s: %s" % (type(exc).__name__, str(exc)[:80])


async def _shop(port, gateway, consumers, purchases, each, seconds, parts, name, count_failures, timeout,
                busy_retries):
    producer = Producer("127.0.0.1", port)
    deadline = time.monotonic() + seconds
    result = {"completed": 0, "failures": 0, "kinds": {}, "busyRetries": 0, "bought": 0, "delivered": 0}
    budget = [purchases]

    async def consumer(number):
        options = {} if busy_retries is None else {"busy_retries": busy_retries}
        role = ConsumerRole("%s-%02d" % (name, number), card(), gateway, timeout=timeout, **options)
        made = 0
        while budget[0] is None or budget[0] > 0:
            if budget[0] is not None:
                budget[0] -= 1
            made += 1
            try:
                purchase = await role.buy(producer, 1, 1, sum(parts))
                result["bought"] += sum(parts)
                for units in parts:
                    end = await role.deliver(producer, purchase, units)  # before the +=: it reads, then awaits
                    result["delivered"] += end["unitsJustSupplied"]
                result["completed"] += 1
            except Exception as exc:  # noqa: counted, for a figure, or raised below
                if not count_failures:
                    raise
                result["failures"] += 1
                kind = _kind(exc)
                result["kinds"][kind] = result["kinds"].get(kind, 0) + 1
            if (each is not None and made >= each) or time.monotonic() >= deadline:
                break
        result["busyRetries"] += role.busy_answers

    began = time.monotonic()
    await asyncio.gather(*[consumer(i) for i in range(consumers)])
    result["seconds"] = time.monotonic() - began
    return result


def shop(port, gateway_url, ca_path=None, consumers=1, purchases=None, each=None, seconds=0, parts=(2,),
         name="car", count_failures=False, timeout=10, busy_retries=None):
    """{"completed", "failures", "kinds": {kind: count}, "busyRetries", "bought", "delivered", "seconds"}.

    purchases: made by all consumers together at most; each: by one at most;
    seconds: no consumer starts another purchase after this (0: one each).
    parts: units per delivery session (sum(parts) units are bought).
    """
    gateway = gateway_client(gateway_url, ca_path, timeout)
    return asyncio.run(_shop(port, gateway, consumers, purchases, each, seconds, tuple(parts), name,
                             count_failures, timeout, busy_retries))

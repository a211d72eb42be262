"""The producer's rare paths: a payment whose outcome is unknown, the expiry sweep, refunds.

producer_role loads this module when one of them is needed and drops it
after (ProducerRole._rare), so a producer that is selling normally carries
none of it. Each function takes the ProducerRole as `role` and follows its
rules: every record is journalled before the gateway is asked, an
attempt's outcome comes only from the gateway, a refund is asked for once
and checked before any retry. Never logs the client token, card data or
the service key: what the gateway says goes through wire.scrub().
"""
from wpwithin import wire
from wpwithin.errors import PeerError, ProtocolError
from wpwithin.gateway_wire import FAILED, SUCCESS, GatewayError
from wpwithin.ledger import PAID, PAYING, attempt_code
from wpwithin.net_errors import NetError
from wpwithin.producer_role import money


async def unknown(role, order, why):
    """The answer to a payment whose attempt got no clear answer: settled with the gateway first."""
    role.log("payment %s: outcome unknown (%s); asking the gateway" % (order.ref, why))
    await settle(role, order)
    if order.state == PAID:
        return role.core.payment_response(order)
    if order.failure.startswith("gateway error"):
        raise ProtocolError(502, "payment not taken (%s); nothing was charged: retry with a new "
                            "client token" % order.failure)
    raise ProtocolError(402, "payment declined: %s; pay with a new client token" % order.failure)


async def settle(role, order):
    """Settle the order's attempt in flight with the gateway, or raise 504 (it stays PAYING)."""
    code = attempt_code(order)
    try:
        if await _found(role, order, code):
            return
        if not order.token:  # an attempt journalled before attempts had tokens: the search is all
            role._write([role.core.ledger.failed(order.ref, "no order at the gateway")])
            return
        try:
            result = await role._send(order)
        except GatewayError as exc:
            if exc.http_status >= 500:
                if order.doubt:
                    raise  # a request that went unanswered may still charge: keep asking
                role._write([role.core.ledger.failed(order.ref, "gateway error %d" % exc.http_status)])
                return
            # The token cannot be charged now: spent by this attempt (then its order shows) or never.
            if not await _found(role, order, code):
                role._write([role.core.ledger.failed(order.ref, exc.custom_code)])
            return
        role._outcome(order, result)
    except (NetError, GatewayError, PeerError) as exc:
        role.log("payment %s: outcome still unknown (%s)" % (order.ref, wire.scrub(str(exc))))
        raise ProtocolError(504, "payment outcome unknown (the gateway is not answering); retry "
                            "with the same paymentReferenceID and clientToken: it will not be charged twice")


async def _found(role, order, code):
    """True once the gateway's orders for this attempt's code settled it (charged or failed)."""
    found = await role._gateway(role.gateway.find_orders, code)
    for result in found:
        if result["paymentStatus"] == SUCCESS:
            if result["amount"] != order.total:
                raise PeerError("gateway order %s is for %d, not %d" % (code, result["amount"], order.total))
            return role._outcome(order, result) or True
    for result in found:
        if result["paymentStatus"] == FAILED:
            return role._outcome(order, result) or True
    return False


async def resolve(role, order):
    """Settle an order left PAYING (a lost answer, a reset): True if it turned out paid; 504 while unknown."""
    await role._turn(order.ref)
    try:
        if order.state == PAYING:
            await settle(role, order)
        return order.state == PAID
    finally:
        role._busy.discard(order.ref)


async def expire(role):
    """The sweep: settle stuck payments, end stalled deliveries, drop stale quotes and expired
    tokens, refunding unused units as promised (exactly once: asked for, then checked)."""
    ledger = role.core.ledger
    for order in ledger.unresolved():
        if order.ref not in role._busy:
            try:
                await resolve(role, order)
            except ProtocolError:
                pass  # still unknown: the next sweep asks again
    now = role._now()
    for order in ledger.stalled(now):
        units = order.in_flight
        record, units = ledger.end_delivery(order, units)
        role._write([record])
        role.log("delivery on %s not ended in %d s: %d units counted as supplied"
                 % (order.ref, ledger.delivery_timeout, units))
        role._fire("delivery_end", order.service_id, units)
    for order, owed in ledger.due(now):
        if owed:
            try:
                await _refund(role, ledger, order, owed)
            except (NetError, GatewayError, PeerError) as exc:
                role._remember("refund of %s failed (%s); will retry" % (order.ref, wire.scrub(str(exc))))
                continue
        role._write([ledger.drop(order.ref)])


async def _refund(role, ledger, order, owed):
    if not order.refunding:
        role._write([ledger.refund_asked(order.ref, owed)])
        await role._gateway(role.gateway.refund, order.order_code, owed)
    # Asked for before and the answer lost: the gateway's order says whether it went through.
    elif (await role._gateway(role.gateway.order, order.order_code))["paymentStatus"] == SUCCESS:
        await role._gateway(role.gateway.refund, order.order_code, owed)
    role._write([ledger.refunded(order.ref, owed)])
    role.log("refunded %s on %s (units not delivered)" % (money(owed, order.currency), order.ref[:8]))

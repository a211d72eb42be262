"""A whole purchase between a producer core and a consumer core, no sockets."""
from expect import raises, refused
from fixtures import NOW, MemoryGateway, Randomness, producer, replay, snapshot

from wpwithin import consumer, gateway_wire, wire
from wpwithin.card import Card, parse_token_response, token_request
from wpwithin.consumer import Purchase
from wpwithin.errors import PeerError
from wpwithin.ledger import ANSWER, CHARGE

CARD = Card("Bilbo Baggins", "4444333322221111", 11, 2030, "123")


def trip(message):
    """Through the wire and back, as bytes."""
    return wire.decode_json(wire.encode_json(message))


def select(hte, random, units=5, service_id=1, price_id=1):
    """Discover and select; returns (purchase, journal records)."""
    purchase = Purchase("client-1", service_id, price_id, units)
    purchase.check_services(trip(hte.services()))
    purchase.check_prices(trip(hte.prices(str(service_id))))
    response, records = hte.request_total(str(service_id), trip(purchase.total_request()), NOW, random())
    purchase.check_total(trip(response))
    return purchase, records


def pay(hte, gateway, random, purchase, card=CARD):
    """Card to token at the gateway, token to the producer; returns journal records."""
    journal = []
    token = gateway.token(trip(token_request(purchase.total["merchantClientKey"], card)))
    client_token = parse_token_response(token)["token"]
    step, request, record, ref = hte.payment(wire.parse_payment_request(trip(purchase.payment_request(client_token))), NOW + 1)
    assert step == CHARGE
    journal.append(record)
    order = gateway_wire.parse_order_response(gateway.order(trip(request)))
    if order["paymentStatus"] != "SUCCESS":
        record, error = hte.declined(ref, order["paymentStatusReason"])
        journal.append(record)
        raise error
    response, record = hte.charged(ref, order, NOW + 2, random())
    journal.append(record)
    purchase.check_payment(trip(response))
    return journal


def buy(hte, gateway, random, units=5, price_id=1):
    purchase, journal = select(hte, random, units, price_id=price_id)
    return purchase, journal + pay(hte, gateway, random, purchase)


def deliver(hte, purchase, units, received=None):
    response, begin, _ = hte.delivery_begin(str(purchase.service_id), trip(purchase.begin_request(units)), NOW + 3)
    purchase.check_begin(trip(response), units)
    response, end, _ = hte.delivery_end(
        str(purchase.service_id), trip(purchase.end_request(units if received is None else received)), NOW + 4)
    purchase.check_end(trip(response))
    return [begin, end]


def test_full_purchase_in_two_delivery_sessions():
    hte, gateway, random = producer(), MemoryGateway(), Randomness()
    purchase, journal = buy(hte, gateway, random, units=5)
    assert purchase.total["totalPrice"] == 150
    # The gateway knows the charge by its attempt's code: the reference and the attempt's number.
    assert gateway.orders == [(purchase.total["paymentReferenceID"] + ".1", 150, "SUCCESS")]
    journal += deliver(hte, purchase, 2)
    assert purchase.remaining == 3
    journal += deliver(hte, purchase, 3)
    assert purchase.remaining == 0
    over = trip(consumer.begin_request("client-1", purchase.token, 1))
    assert "not available" in refused(409, hte.delivery_begin, "1", over, NOW + 5)
    assert snapshot(replay(journal)) == snapshot(hte.ledger)


def test_volume_tier_is_applied_by_the_producer():
    hte, gateway, random = producer(), MemoryGateway(), Randomness()
    purchase, _ = buy(hte, gateway, random, units=20, price_id=1)
    assert purchase.total["priceID"] == 2
    assert purchase.total["totalPrice"] == 20 * 25


def test_declined_card_charges_nothing_and_a_new_token_may_pay():
    hte, gateway, random = producer(), MemoryGateway(), Randomness()
    purchase, journal = select(hte, random, units=3)
    declined = Card("DECLINE", "4444333322221111", 11, 2030, "123")
    assert "REFUSED" in refused(402, pay, hte, gateway, random, purchase, declined)
    assert gateway.orders[0][2] == "FAILED"
    journal += pay(hte, gateway, random, purchase)
    assert purchase.token is not None and purchase.remaining == 3
    assert [o[2] for o in gateway.orders] == ["FAILED", "SUCCESS"]


def test_retried_payment_answers_the_same_token_without_charging_again():
    hte, gateway, random = producer(), MemoryGateway(), Randomness()
    purchase, _ = buy(hte, gateway, random, units=2)
    paid_with = hte.ledger.orders[purchase.total["paymentReferenceID"]].token
    again = purchase.payment_request(paid_with)
    step, response, record, _ = hte.payment(wire.parse_payment_request(trip(again)), NOW + 10)
    assert step == ANSWER and record is None
    assert response["serviceDeliveryToken"] == purchase.token
    assert len(gateway.orders) == 1
    # Knowing the reference and the client ID is not enough: the token goes to the one who paid.
    other = purchase.payment_request("TEST_SU_anything")
    assert "client token that paid" in refused(409, hte.payment, wire.parse_payment_request(trip(other)), NOW + 10)


def test_consumer_refuses_a_total_that_does_not_add_up():
    hte, random = producer(), Randomness()
    purchase = Purchase("client-1", 1, 1, 4)
    purchase.check_prices(trip(hte.prices("1")))
    response, _ = hte.request_total("1", trip(purchase.total_request()), NOW, random())
    response["totalPrice"] += 1
    err = raises(PeerError, purchase.check_total, trip(response))
    assert "totalPrice" in str(err)


def test_consumer_refuses_a_changed_server_id():
    hte = producer()
    purchase = Purchase("client-1", 1, 1, 4)
    purchase.check_services(trip(hte.services()))
    prices = hte.prices("1")
    prices["serverID"] = "someone-else"
    err = raises(PeerError, purchase.check_prices, trip(prices))
    assert "serverID" in str(err)


def test_a_service_or_price_not_offered_is_its_own_error():
    from wpwithin.consumer import NotOffered

    hte = producer()
    err = raises(NotOffered, Purchase("client-1", 9, 1, 1).check_services, trip(hte.services()))
    assert "service 9" in str(err)
    err = raises(NotOffered, Purchase("client-1", 1, 9, 1).check_prices, trip(hte.prices("1")))
    assert "price 9" in str(err)

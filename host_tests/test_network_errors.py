"""Error answers over real sockets, from a producer under each runtime: the reference's codes and ours.

The reference's cases, answered as it answers them: unknown service,
price or payment reference 404; a body that is not JSON of the right
shape 422; a client ID that does not match the order 400; a delivery
token that fails validation 400; a path id that is not a number 400.
Ours: body too large 413, too many connections 503, a request not
received in time 408, delivery beyond what was paid 409, wrong method
405. Every error is the reference's JSON error body with the reference's
Content-Type, and every status met here is in the status table of docs/protocol.md.
Raw sockets where the case is about the connection itself.
"""
import asyncio
import copy
import http.client
import json
import os
import re
import socket
import time

import pytest
from gatewaysim.simulator import Simulator

import mpy
from wpwithin import http1
from harness.shopping import card, gateway_client
from harness.things import Things
from wpwithin.consumer_role import ConsumerRole, Producer

READ_TIMEOUT = 1  # network.readTimeout of the producers here (s)
MAX_CONNECTIONS = 2
CONTENT_TYPE = "application/json;charset=UTF-8"
STATUSES_MET = (400, 404, 405, 408, 409, 413, 422, 503)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gateway")
    with Simulator(db=str(folder / "gateway.db"), tls_dir=str(folder / "tls"), log=lambda *a: None) as sim:
        yield sim


@pytest.fixture(scope="module", params=["micropython", "cpython"])
def producer(request, gateway, tmp_path_factory):
    """A producer under the runtime with a 1 s read timeout, 2 connections at most, and one paid purchase."""
    things = Things(tmp_path_factory.mktemp("producer-" + request.param))
    try:
        started = things.producer("errors-" + request.param, request.param, gateway.url, gateway.ca_path,
                                  network={"readTimeout": READ_TIMEOUT, "maxConnections": MAX_CONNECTIONS})
        started["purchase"] = asyncio.run(buy(gateway, started, "paid-car", 1, 1, 5))
        yield started
    finally:
        things.close()


async def buy(gateway, producer, client_id, service, price, units):
    role = ConsumerRole(client_id, card(), gateway_client(gateway.url, gateway.ca_path))
    return await role.buy(Producer("127.0.0.1", producer["port"]), service, price, units)


def call(producer, method, path, body=None, raw=None):
    """(status, decoded JSON body) of one request; the body is a dict (JSON-encoded here) or raw bytes."""
    conn = http.client.HTTPConnection("127.0.0.1", producer["port"], timeout=5)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, data, {"Content-Type": "application/json"} if data is not None else {})
        response = conn.getresponse()
        payload = response.read()
        obj = json.loads(payload)
        if response.status != 200:
            assert response.getheader("Content-Type") == CONTENT_TYPE
            assert set(obj) == {"HTTPStatusCode", "message", "errorCode"}, obj
            assert obj["HTTPStatusCode"] == response.status and isinstance(obj["message"], str), obj
        return response.status, obj
    finally:
        conn.close()


def status_of(producer, method, path, body=None, raw=None):
    return call(producer, method, path, body, raw)[0]


def message_of(producer, method, path, body=None, raw=None):
    status, obj = call(producer, method, path, body, raw)
    return status, obj["message"]


def quote(producer, client_id="quoting-car", units=2):
    status, total = call(producer, "POST", "/service/1/requestTotal",
                         {"clientID": client_id, "selectedNumberOfUnits": units, "selectedPriceID": 1})
    assert status == 200, total
    return total


def begin(purchase, **changes):
    body = {"clientID": purchase.client_id, "serviceDeliveryToken": dict(purchase.token), "unitsToSupply": 1}
    for key, value in changes.items():
        if key in purchase.token:
            body["serviceDeliveryToken"][key] = value
        else:
            body[key] = value
    return body


def whole(response):
    """True once `response` holds a head and the body its Content-Length announces."""
    head, sep, body = response.partition(b"\r\n\r\n")
    found = re.search(rb"\r\nContent-Length: (\d+)", head)
    return bool(sep and found and len(body) >= int(found.group(1)))


def raw_exchange(port, data, timeout=5.0):
    """Send bytes on a new connection, read one response (or until closed): (bytes read, seconds)."""
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        if data:
            sock.sendall(data)
        got = b""
        while not whole(got):
            try:
                more = sock.recv(4096)
            except ConnectionResetError:
                break
            if not more:
                break
            got += more
    return got, time.monotonic() - began


def status_line(response):
    assert response.startswith(b"HTTP/1.1 "), response
    return int(response[9:12])


def error_body(response):
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"\r\nContent-Type: " + CONTENT_TYPE.encode() in head, head
    obj = json.loads(body)
    assert obj["HTTPStatusCode"] == status_line(response), obj
    return obj


# --- the reference's cases ------------------------------------------------------------

def test_unknown_service_price_or_payment_reference_is_404(producer):
    assert status_of(producer, "GET", "/service/99/prices") == 404
    assert status_of(producer, "POST", "/service/99/requestTotal",
                     {"clientID": "c", "selectedNumberOfUnits": 1, "selectedPriceID": 1}) == 404
    assert status_of(producer, "POST", "/service/1/requestTotal",
                     {"clientID": "c", "selectedNumberOfUnits": 1, "selectedPriceID": 99}) == 404
    status, message = message_of(producer, "POST", "/payment", {
        "clientID": "c", "clientToken": "TEST_SU_x", "paymentReferenceID": "no-such-reference"})
    assert (status, message) == (404, "Unable to find order for payment ref no-such-reference")
    assert status_of(producer, "GET", "/service/1/nothing") == 404


def test_body_not_json_of_the_right_shape_is_422(producer):
    route = "/service/1/requestTotal"
    assert status_of(producer, "POST", route, raw=b"{") == 422
    assert status_of(producer, "POST", route, raw=b"\xff\xfe") == 422
    assert status_of(producer, "POST", route, raw=b"[1, 2]") == 422
    status, message = message_of(producer, "POST", route,
                                 {"clientID": "c", "selectedNumberOfUnits": "5", "selectedPriceID": 1})
    assert status == 422 and "selectedNumberOfUnits" in message
    status, message = message_of(producer, "POST", route, {"clientID": "c", "selectedPriceID": 1})
    assert status == 422 and "selectedNumberOfUnits" in message
    assert status_of(producer, "POST", "/payment", {"clientID": "c", "paymentReferenceID": "r"}) == 422


def test_a_client_id_that_does_not_match_the_order_is_400(producer):
    total = quote(producer, "car-a")
    status, message = message_of(producer, "POST", "/payment", {
        "clientID": "car-b", "clientToken": "TEST_SU_x", "paymentReferenceID": total["paymentReferenceID"]})
    assert (status, message) == (400, "Client ID does not match Order Client ID")
    purchase = producer["purchase"]
    assert status_of(producer, "POST", "/service/1/delivery/begin", begin(purchase, clientID="car-b")) == 400


def test_delivery_token_problems_are_400(producer):
    purchase = producer["purchase"]
    route = "/service/1/delivery/begin"
    assert status_of(producer, "POST", route, begin(purchase, key="0" * 32)) == 400  # unknown
    signature = purchase.token["signature"]
    forged = ("A" if signature[0] != "A" else "B") + signature[1:]
    assert status_of(producer, "POST", route, begin(purchase, signature=forged)) == 400  # forged
    assert status_of(producer, "POST", route, begin(purchase, signature=None)) == 400  # unsigned
    expired = copy.deepcopy(purchase.token)["expiry"].replace("20", "19", 1)
    assert status_of(producer, "POST", route, begin(purchase, expiry=expired)) == 400  # altered
    assert status_of(producer, "POST", "/service/2/delivery/begin", begin(purchase)) == 400  # other service
    assert status_of(producer, "POST", "/service/x1/delivery/begin", begin(purchase)) == 400  # path id
    assert status_of(producer, "GET", "/service/-1/prices") == 400


# --- ours ----------------------------------------------------------------------------

def test_delivery_beyond_what_was_paid_is_409(producer):
    purchase = producer["purchase"]  # 5 units paid
    route = "/service/1/delivery/"
    status, message = message_of(producer, "POST", route + "begin", begin(purchase, unitsToSupply=6))
    assert status == 409 and "Units available = 5" in message
    end = {"clientID": purchase.client_id, "serviceDeliveryToken": purchase.token, "unitsReceived": 1}
    assert status_of(producer, "POST", route + "end", end) == 409  # end without begin
    assert status_of(producer, "POST", route + "begin", begin(purchase, unitsToSupply=5)) == 200
    assert status_of(producer, "POST", route + "begin", begin(purchase)) == 409  # one in progress
    assert status_of(producer, "POST", route + "end", dict(end, unitsReceived=5)) == 200
    assert status_of(producer, "POST", route + "begin", begin(purchase)) == 409  # none left


def test_wrong_method_is_405(producer):
    assert status_of(producer, "POST", "/service/discover", {}) == 405
    assert status_of(producer, "GET", "/payment") == 405


def test_body_too_large_is_413_before_it_is_read(producer):
    head = ("POST /service/1/requestTotal HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            "Content-Length: 100000\r\n\r\n").encode()
    response, _ = raw_exchange(producer["port"], head + b"{" * 1000)
    assert status_line(response) == 413, response
    assert error_body(response)["message"] == "body over %d bytes" % http1.MAX_BODY


def test_too_many_connections_is_503(producer):
    holders = []
    try:
        for _ in range(MAX_CONNECTIONS):  # requests begun, not finished: each holds a connection slot
            sock = socket.create_connection(("127.0.0.1", producer["port"]), timeout=5)
            sock.sendall(b"GET /service/discover HTTP/1.1\r\n")
            holders.append(sock)
        time.sleep(0.1)
        response, seconds = raw_exchange(producer["port"], b"GET /service/discover HTTP/1.1\r\nHost: t\r\n\r\n")
        assert status_line(response) == 503, response
        assert "too many connections" in error_body(response)["message"]
        assert seconds < READ_TIMEOUT, "refused at once, not after a wait"
    finally:
        for sock in holders:
            sock.close()
    time.sleep(0.1)
    assert status_of(producer, "GET", "/service/discover") == 200  # and served again once they are gone


def test_a_request_not_received_in_time_is_408_and_a_silent_connection_is_closed(producer):
    async def both():
        loop = asyncio.get_running_loop()
        return await asyncio.gather(
            loop.run_in_executor(None, raw_exchange, producer["port"], b"POST /payment HTTP/1.1\r\nHost: t\r\n"),
            loop.run_in_executor(None, raw_exchange, producer["port"], b""))
    (partial, partial_s), (silent, silent_s) = asyncio.run(both())
    assert status_line(partial) == 408, partial
    assert error_body(partial)["message"] == "request not received in time"
    assert silent == b""  # nothing was asked: nothing to answer
    for seconds in (partial_s, silent_s):
        assert READ_TIMEOUT * 0.9 <= seconds < READ_TIMEOUT + 1.5, (partial_s, silent_s)


def test_every_status_met_here_is_in_the_readme_status_table():
    with open(os.path.join(mpy.ROOT, "docs", "protocol.md")) as f:
        readme = f.read()
    table = readme[readme.index("status code a producer answers with"):]
    table = table[:table.index("\n\n", table.index("| status |"))]
    documented = {int(code) for code in re.findall(r"\b([1-5]\d\d)\b", table)}
    assert set(STATUSES_MET) <= documented, sorted(set(STATUSES_MET) - documented)

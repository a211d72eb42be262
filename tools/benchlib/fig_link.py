"""Figure 8: the heap the MQTT broker link (network.broker, fleet_link) costs our producer, code as .mpy.

Two runs of our producer at the profile heap, the same build and config
but for network.broker: one against a real mosquitto on loopback (the
harness's, users and ACL as docs/mqtt.md sets them), one without. Heap
after start is taken once the link says it is connected and has sent its
first status (a full collection, mp_heap.Sampler); peak over a few
purchases with the link up. The anchor is the same producer without the
link, in the same run: the difference is the link's cost. A machine
without mosquitto gets a FAILED row saying how to install it.
"""
import socket
import time

from benchlib import report
from benchlib.fig_heap import PROFILE_HEAP, profile_server
from benchlib.ours import SERVER_ID
from harness.process import Failed, free_port

GROUP = "8. MQTT broker link (network.broker), .mpy"
STATUS_S = 5  # network.brokerStatusInterval: its least, so the run does not wait long
SETTLE_S = 1.0  # after "connected": the advert and the first status are sent and acknowledged


def _run(bench, broker=None):
    """profile_server's figures of one producer run, with the broker link (once connected) when given."""
    network = secrets = None
    if broker is not None:
        network = {"broker": broker.url, "brokerStatusInterval": STATUS_S}
        secrets = {"brokerPassword": broker.password(SERVER_ID)}
    config, secrets = bench.producer_files("link" if broker else "no-link", network, secrets)
    server = bench.runtime.start_producer(config, secrets, PROFILE_HEAP, "mpy", free_port(socket.SOCK_DGRAM))
    try:
        if broker is not None:
            server.child.expect("broker %s: connected" % broker.url, 15)
        time.sleep(SETTLE_S)
    except BaseException:
        server.stop()
        raise
    return profile_server(bench, "ours", server)


def figures(bench):
    titles = (("idle", "after", "heap after start, link connected"),
              ("peak", "peak", "peak heap during purchases, link up"))
    try:
        without = _run(bench)
        broker = bench.things.broker(things=[SERVER_ID], consumers=())
        try:
            with_link = _run(bench, broker)
        finally:
            broker.stop()
    except (Failed, RuntimeError) as exc:
        return [report.failed("link_%s" % fid, GROUP, title, "bytes", str(exc)[-200:], None,
                              "the same producer without a broker") for key, fid, title in titles]
    notes = ["the link's cost: %+d bytes after start, %+d at peak" % (
        with_link["idle"] - without["idle"], with_link["peak"] - without["peak"])]
    return [report.figure("link_%s" % fid, GROUP, title, "bytes", with_link[key], without[key],
                          "the same producer without a broker", None, {"notes": notes if key == "idle" else []})
            for key, fid, title in titles]

"""The harness's mosquitto: listens where it says, its TLS listener presents a certificate of the test CA, and
stop() leaves nothing behind. What the broker enforces (ACLs, passwords) is tested with our MQTT client in
test_mqtt_broker.py."""
import os
import socket
import ssl

import pytest

from gatewaysim import tlsca
from harness.things import ROOT


def tls_handshake(port, ca_path):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with tlsca.client_context(ca_path).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.version()


def test_the_broker_listens_on_both_ports_and_its_certificate_verifies(broker):
    b = broker(things=["thing-a"], consumers=["car"])
    assert b.url == "mqtt://127.0.0.1:%d" % b.port and b.tls_url == "mqtts://127.0.0.1:%d" % b.tls_port
    socket.create_connection(("127.0.0.1", b.port), timeout=5).close()
    assert tls_handshake(b.tls_port, b.ca_path) in ("TLSv1.2", "TLSv1.3")


def test_a_certificate_of_another_ca_is_refused(broker, tmp_path):
    b = broker(things=["thing-a"])
    other = tlsca.ensure_credentials(str(tmp_path / "other-ca"))
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_handshake(b.tls_port, other.ca_cert)


def test_the_configuration_is_the_documented_one(broker):
    b = broker(things=["thing-a", "thing-b"], consumers=["car", "fleet"])
    with open(b.files["conf"]) as f:
        conf = f.read().splitlines()
    assert "per_listener_settings true" in conf
    listeners = [i for i, line in enumerate(conf) if line.startswith("listener ")]
    assert len(listeners) == 2
    for start, end in zip(listeners, listeners[1:] + [len(conf)]):
        block = conf[start:end]
        assert "allow_anonymous false" in block
        assert "password_file %s" % b.files["passwd"] in block and "acl_file %s" % b.files["acl"] in block
    with open(b.files["acl"]) as f:
        acl = [line for line in f.read().splitlines() if line and not line.startswith("#")]
    assert acl == ["user thing-a", "topic write wpw/v1/things/thing-a/#",
                   "user thing-b", "topic write wpw/v1/things/thing-b/#",
                   "user car", "topic read wpw/v1/things/#", "user fleet", "topic read wpw/v1/things/#"]
    with open(b.files["passwd"]) as f:
        text = f.read()
    assert all(b.password(user) not in text for user in ("thing-a", "thing-b", "car", "fleet"))  # hashed


def test_stop_ends_mosquitto_and_frees_its_port(broker):
    b = broker()
    process = b.process
    b.stop()
    assert process.proc.poll() is not None
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", b.port), timeout=5).close()


def test_restart_serves_again_on_the_same_port(broker):
    b = broker()
    port = b.port
    b.restart()
    assert b.port == port
    socket.create_connection(("127.0.0.1", port), timeout=5).close()


def security_lines(text):
    """A mosquitto.conf's lines from its first listener on, comments out, each file named by its base name
    and each listener line without its port and address."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    lines = lines[next(i for i, line in enumerate(lines) if line.startswith("listener ")):]
    out = []
    for line in lines:
        key, _, value = line.partition(" ")
        out.append("listener" if key == "listener" else
                   "%s %s" % (key, os.path.basename(value)) if key.endswith("file") else line)
    return out


def test_the_broker_runs_the_configuration_of_the_docs(broker):
    with open(os.path.join(ROOT, "docs", "mqtt.md")) as f:
        doc = f.read().split("```conf\n", 1)[1].split("```", 1)[0]
    with open(broker().files["conf"]) as f:
        ours = f.read()
    assert security_lines(ours) == security_lines(doc)
    for line in doc.split("\n# ", 1)[0].splitlines():  # the global lines before the first listener
        assert line in ours.splitlines()

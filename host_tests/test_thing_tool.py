"""tools/thing as a user runs it: says where it listens, serves, and stops cleanly on SIGTERM or Ctrl-C.

Under each runtime: the producer's address is printed and answers there;
SIGTERM to tools/thing (as a service manager sends it) becomes a clean
stop of the Thing (its server and journal closed, "stopped"), exit 0,
the port free again and no process left behind. A consumer-only Thing
and a Thing with both roles say so; a bad configuration exits 2 naming
the field.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from harness.things import THING, Things, thing_files
from harness.vboard import alive, children

GATEWAY = "http://127.0.0.1:9/v1"  # never called here: nothing is bought


def config_for(tmp_path, name, **kwargs):
    return thing_files(str(tmp_path / name), name, GATEWAY, **kwargs)


@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_prints_where_it_listens_and_stops_cleanly(tmp_path, runtime, sig):
    things = Things(tmp_path)
    try:
        config = config_for(tmp_path, "tool-" + runtime)
        process = things.start("tools/thing", [sys.executable, THING, "--config", config, "--runtime", runtime])
        line = process.expect("listening on")
        address = line.split()[2]
        assert line == "listening on %s serverID tool-%s" % (address, runtime)
        host, port = address.rsplit(":", 1)
        with urllib.request.urlopen("http://%s:%s/service/discover" % (host, port), timeout=5) as answer:
            assert json.loads(answer.read())["serverID"] == "tool-" + runtime
        (runtime_pid,) = children(process.proc.pid)

        began = time.monotonic()
        process.proc.send_signal(sig)  # to tools/thing alone, as `kill PID` or a service manager does
        assert process.proc.wait(10) == 0, "".join(process.output)
        assert time.monotonic() - began < 5
        process.reader.join(5)
        assert process.output[-1] == "stopped\n", "".join(process.output)
        assert not alive(runtime_pid)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, int(port)), timeout=2).close()
        assert os.path.exists(os.path.join(os.path.dirname(config), "ledger.journal"))
    finally:
        things.close()


@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_a_thing_with_both_roles_says_so_and_a_consumer_alone_too(tmp_path, runtime):
    things = Things(tmp_path)
    try:
        both = things.start("both", [sys.executable, THING, "--runtime", runtime, "--config",
                                     config_for(tmp_path, "both", consumer=True)])
        assert both.expect("listening on").endswith("serverID both")
        assert both.expect("consumer") == "consumer both-consumer ready"
        alone = config_for(tmp_path, "alone", consumer=True)
        with open(alone) as f:
            obj = json.load(f)
        obj["producer"] = {"enabled": False}
        with open(alone, "w") as f:
            json.dump(obj, f)
        consumer = things.start("alone", [sys.executable, THING, "--runtime", runtime, "--config", alone])
        assert consumer.expect("consumer") == "consumer alone-consumer ready"
        for process in (both, consumer):
            process.proc.send_signal(signal.SIGTERM)
            assert process.proc.wait(10) == 0
    finally:
        things.close()


@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_a_bad_configuration_exits_2_naming_the_field(tmp_path, runtime):
    config = config_for(tmp_path, "bad", network={"port": "64521"})
    proc = subprocess.run([sys.executable, THING, "--config", config, "--runtime", runtime],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stdout.startswith("configuration error: config.network.port must be an integer"), proc.stdout


def test_a_missing_config_file_is_a_usage_error(tmp_path):
    proc = subprocess.run([sys.executable, THING, "--config", str(tmp_path / "none.json")],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_a_busy_port_or_a_foreign_address_is_named_with_what_to_do(tmp_path, runtime):
    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = config_for(tmp_path, "busy", network={"port": port})
        proc = subprocess.run([sys.executable, THING, "--config", config, "--runtime", runtime],
                              capture_output=True, text=True, timeout=30)
    finally:
        taken.close()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.strip() == ("cannot start: 127.0.0.1:%d is already in use (another program, or this Thing "
                                   "started twice): stop that, or set network.port to a free port (0: any)" % port)
    assert "Traceback" not in proc.stdout + proc.stderr
    # Binding an address this machine does not have sends nothing anywhere: the bind itself fails.
    config = config_for(tmp_path, "foreign", host="10.99.99.99")
    proc = subprocess.run([sys.executable, THING, "--config", config, "--runtime", runtime],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.strip() == ("cannot start: network.host 10.99.99.99 is not an address of this machine: "
                                   "set it to one of its addresses, or 0.0.0.0 for all of them")


def test_it_finds_the_checkouts_venv_when_started_by_another_python(tmp_path):
    """`tools/thing` as typed in a shell where the venv is not activated: another python3 first on PATH."""
    other = os.path.realpath(sys.executable)  # the interpreter the venv was made from: no micropython beside it
    assert os.path.dirname(other) != os.path.dirname(sys.executable)
    env = dict(os.environ, PATH=os.path.dirname(other) + os.pathsep + "/usr/bin:/bin")
    env.pop("VIRTUAL_ENV", None)
    things = Things(tmp_path)
    try:
        process = things.start("plain", [other, THING, "--config", config_for(tmp_path, "plain")], env=env)
        assert process.expect("listening on").endswith("serverID plain")
        process.proc.send_signal(signal.SIGTERM)
        assert process.proc.wait(10) == 0
    finally:
        things.close()

"""The status table of docs/protocol.md lists every status a producer can send, and no other.

The statuses sent are read from the code a producer-only image holds: the
first argument of every ProtocolError(...), http1's _fail(...) and the
server's own answers (_answer, _error_body), resolved to the module's
constants. A status added to the code without a row in the table fails here.
"""
import ast
import importlib
import os
import re

from imagebuild import sources

import mpy

LIB = os.path.join(mpy.ROOT, "lib", "wpwithin")
SENDERS = ("ProtocolError", "_fail", "_answer", "_error_body")


def statuses_in_code():
    """{status: [modules sending it]} over the producer's modules."""
    found = {}
    for name in sorted(os.listdir(LIB)):
        if not name.endswith(".py") or name in sources.CONSUMER_ONLY or name == "board_esp32.py" or \
                name.startswith("mqtt"):  # MQTT packets, not HTTP answers: its _fail(N) numbers a phrase
            continue
        module = importlib.import_module("wpwithin." + name[:-3])
        with open(os.path.join(LIB, name)) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            func = node.func
            if getattr(func, "id", getattr(func, "attr", None)) not in SENDERS:
                continue
            arg = node.args[0]
            if isinstance(arg, ast.Constant):
                status = arg.value
            elif isinstance(arg, ast.Name) and isinstance(getattr(module, arg.id, None), int):
                status = getattr(module, arg.id)
            else:
                continue  # a status passed through (exc.status, a parameter): counted where it was made
            found.setdefault(status, []).append(name)
    return found


def statuses_in_readme():
    with open(os.path.join(mpy.ROOT, "docs", "protocol.md")) as f:
        text = f.read()
    start = text.index("Every status code a producer answers with")
    table = text[start:text.index("\n\n", text.index("| status | when |", start))]
    documented = set()
    for line in table.splitlines()[3:]:
        cell = line.split("|")[1]
        documented.update(int(code) for code in re.findall(r"\d{3}", cell))
    return documented


def test_every_status_the_producer_sends_is_in_the_readme_table_and_no_other():
    sent = statuses_in_code()
    documented = statuses_in_readme()
    # the sender calls of http1 (417, 501, 505, ...) and of the server (408, 500, 503) are found
    assert {408, 417, 422, 501, 505} <= set(sent), sent
    missing = dict((status, modules) for status, modules in sent.items() if status not in documented)
    assert not missing, "statuses sent but not in the table of docs/protocol.md: %s" % missing
    assert documented - set(sent) <= {200}, "in the table but never sent: %s" % (documented - set(sent) - {200})


def test_every_status_sent_has_gos_reason_phrase():
    from test_http1 import GO_REASONS as go_reasons  # dual/: it checks http1 writes each with Go's phrase

    sent = set(statuses_in_code()) | {200}
    assert sent == set(go_reasons), "sent without Go's phrase: %s; listed, never sent: %s" % (
        sent - set(go_reasons), set(go_reasons) - sent)

"""Fault injection rules: parse them, hold them, and decide what a request suffers.

A fault applies to one endpoint name (or "*" for all) and optionally to the
next N requests only. For each request the board returns a FaultPlan; the
server carries it out. Kinds:

  latency:SECONDS   sleep before the request is processed (nothing is
                    committed until the delay is over)
  status[:CODE]     answer CODE (500-599, default 500) with an
                    INTERNAL_SERVER_ERROR body, without processing
  drop-before       close the connection without answering or processing
  drop-after        process and commit, then close without answering
                    (the ambiguous outcome)
  trickle[:SECONDS] send the response TRICKLE_CHUNK bytes at a time,
                    sleeping SECONDS (default 0.1) between chunks

Every active fault matching a request counts that request. This module
decides only; it never sleeps, touches sockets or logs.
"""
import itertools
import re
import threading

ENDPOINTS = ("tokens", "token", "orders", "order", "search", "refund", "capture", "cancel")
ANY_ENDPOINT = "*"
KINDS = ("latency", "status", "drop-before", "drop-after", "trickle")
TRICKLE_CHUNK = 16  # bytes per write of a trickled response
MAX_DELAY = 300.0  # seconds, for latency and per trickle chunk
DEFAULT_STATUS = 500
DEFAULT_TRICKLE = 0.1

_COUNT = re.compile(r"x([1-9][0-9]{0,8})")


class FaultSpecError(ValueError):
    """A fault description that cannot be used; the message says which part is wrong."""


class Fault:
    """One active rule; `remaining` is None for unlimited."""

    def __init__(self, endpoint, kind, arg, remaining, fault_id=0):
        self.endpoint = endpoint
        self.kind = kind
        self.arg = arg
        self.remaining = remaining
        self.id = fault_id

    def as_dict(self):
        """JSON form, as /_sim/faults returns it."""
        return {"id": self.id, "endpoint": self.endpoint, "kind": self.kind,
                "arg": self.arg, "count": self.remaining}

    def __repr__(self):
        return "Fault(%s)" % describe(self)


def describe(fault):
    """The command-line spelling of `fault`, e.g. 'orders:status:503:x2'."""
    text = "%s:%s" % (fault.endpoint, fault.kind)
    if fault.arg is not None:
        text += ":%s" % (fault.arg if fault.kind != "status" else int(fault.arg))
    if fault.remaining is not None:
        text += ":x%d" % fault.remaining
    return text


def _check_arg(kind, arg):
    """Validate/normalise the argument of `kind`; returns the value to store."""
    if kind in ("drop-before", "drop-after"):
        if arg is not None:
            raise FaultSpecError("%s takes no argument" % kind)
        return None
    if kind == "status":
        if arg is None:
            return DEFAULT_STATUS
        if isinstance(arg, bool) or not isinstance(arg, int) or not 500 <= arg <= 599:
            raise FaultSpecError("status needs an HTTP status code from 500 to 599")
        return arg
    if arg is None:
        if kind == "latency":
            raise FaultSpecError("latency needs a number of seconds")
        return DEFAULT_TRICKLE
    if isinstance(arg, bool) or not isinstance(arg, (int, float)) or not 0 <= arg <= MAX_DELAY:
        raise FaultSpecError("%s needs a number of seconds from 0 to %g" % (kind, MAX_DELAY))
    return float(arg)


def make_fault(endpoint, kind, arg=None, count=None):
    """A checked Fault; `count` None means every request from now on."""
    if endpoint != ANY_ENDPOINT and endpoint not in ENDPOINTS:
        raise FaultSpecError("unknown endpoint %r (use one of %s or *)" % (endpoint, ", ".join(ENDPOINTS)))
    if kind not in KINDS:
        raise FaultSpecError("unknown fault kind %r (use one of %s)" % (kind, ", ".join(KINDS)))
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise FaultSpecError("count must be a positive integer")
    return Fault(endpoint, kind, _check_arg(kind, arg), count)


def parse_fault_spec(spec):
    """Parse ENDPOINT:KIND[:ARG][:xN], e.g. 'orders:latency:2.0' or 'refund:drop-after:x1'."""
    parts = spec.split(":")
    if len(parts) < 2 or len(parts) > 4:
        raise FaultSpecError("%r: expected ENDPOINT:KIND[:ARG][:xN]" % spec)
    endpoint, kind, rest = parts[0], parts[1], parts[2:]
    count = None
    if rest:
        match = _COUNT.fullmatch(rest[-1])
        if match:
            count = int(match.group(1))
            rest = rest[:-1]
    if len(rest) > 1:
        raise FaultSpecError("%r: too many parts" % spec)
    arg = None
    if rest:
        text = rest[0]
        try:
            arg = int(text) if kind == "status" else float(text)
        except ValueError:
            raise FaultSpecError("%r: argument %r is not a number" % (spec, text))
    try:
        return make_fault(endpoint, kind, arg, count)
    except FaultSpecError as exc:
        raise FaultSpecError("%r: %s" % (spec, exc))


def fault_from_json(obj):
    """Build a Fault from the /_sim/faults body {endpoint, kind, arg, count}."""
    if not isinstance(obj, dict):
        raise FaultSpecError("body must be a JSON object")
    endpoint, kind = obj.get("endpoint"), obj.get("kind")
    if not isinstance(endpoint, str) or not isinstance(kind, str):
        raise FaultSpecError("endpoint and kind are required strings")
    return make_fault(endpoint, kind, obj.get("arg"), obj.get("count"))


class FaultPlan:
    """What the server must do to one request."""

    __slots__ = ("delay", "status", "drop", "trickle", "labels")

    def __init__(self):
        self.delay = 0.0  # seconds to sleep before processing
        self.status = None  # answer this 5xx instead of processing
        self.drop = None  # None, "before" or "after"
        self.trickle = None  # seconds between chunks, or None
        self.labels = []  # for the request log

    def __bool__(self):
        return bool(self.labels)


class FaultBoard:
    """The active faults, shared by all connection threads."""

    def __init__(self, faults=()):
        self._lock = threading.Lock()
        self._faults = []
        self._ids = itertools.count(1)
        for fault in faults:
            self.add(fault)

    def add(self, fault):
        """Activate `fault` (gets an id); returns it."""
        with self._lock:
            fault.id = next(self._ids)
            self._faults.append(fault)
        return fault

    def clear(self):
        """Remove every fault; returns how many were active."""
        with self._lock:
            count = len(self._faults)
            self._faults = []
        return count

    def active(self):
        """The active faults as JSON dicts."""
        with self._lock:
            return [fault.as_dict() for fault in self._faults]

    def plan(self, endpoint):
        """Consume one use of every fault matching `endpoint`; the first fault of a kind wins."""
        plan = FaultPlan()
        if endpoint is None:
            return plan
        with self._lock:
            matched = [f for f in self._faults if f.endpoint in (endpoint, ANY_ENDPOINT)]
            for fault in matched:
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                plan.labels.append(fault.kind)
                if fault.kind == "latency":
                    plan.delay += fault.arg
                elif fault.kind == "status" and plan.status is None:
                    plan.status = fault.arg
                elif fault.kind == "drop-before":
                    plan.drop = "before"
                elif fault.kind == "drop-after" and plan.drop is None:
                    plan.drop = "after"
                elif fault.kind == "trickle" and plan.trickle is None:
                    plan.trickle = fault.arg
        return plan

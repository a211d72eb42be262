"""Typed errors of the protocol core.

ProtocolError carries the HTTP status the producer answers with and a
message naming the bad field. PeerError is raised on the consumer side when
a producer's or gateway's answer breaks the protocol. Statuses are written
as their numbers (400, 402, 404, 405, 409, 410, 411, 413, 422, 431, 500,
502, 503, 504): a named constant each was one more name on every board.
Never holds secrets.
"""


def nth(phrases, n):
    """The n-th of the "|"-separated `phrases`: a module's refusals in one string cost less heap
    than a string object each (~90 B), and only the phrase said is copied."""
    i = 0
    while n:
        i = phrases.index("|", i) + 1
        n -= 1
    j = phrases.find("|", i)
    return phrases[i:] if j < 0 else phrases[i:j]


class ProtocolError(Exception):
    """A request the producer refuses: `status` is its HTTP status, `message` says why."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


class PeerError(Exception):
    """A response from a producer or gateway that breaks the protocol."""


"""RFC 3339 timestamps: what Go emits and accepts."""
from expect import refused

from wpwithin.errors import UNPROCESSABLE
from wpwithin.rfc3339 import format_time, parse_time


def test_known_instants():
    assert format_time(0) == "1970-01-01T00:00:00Z"
    assert format_time(951782400) == "2000-02-29T00:00:00Z"
    assert format_time(1795737600) == "2026-11-27T00:00:00Z"
    assert format_time(4102444799) == "2099-12-31T23:59:59Z"


def test_round_trip_across_leap_years_and_month_ends():
    t = 0
    while t < 4102444800:
        assert parse_time(format_time(t)) == t, t
        t += 86400 * 37 + 3607


def test_go_forms_with_fractions_and_offsets():
    assert parse_time("2016-09-12T16:42:07.123456789+01:00") == parse_time("2016-09-12T15:42:07Z")
    assert parse_time("2016-09-12T10:42:07-05:30") == parse_time("2016-09-12T16:12:07Z")
    assert parse_time("0001-01-01T00:00:00Z") == -62135596800


def test_malformed_times_are_refused():
    for bad in ("2026-11-27", "2026-11-27T00:00:00", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z",
                "2026-11-27T24:00:00Z", "2026-11-27 00:00:00Z", "2026-11-27T00:00:00.Z",
                "2026-11-27T00:00:00+0100", "x" * 30, 5):
        assert "expiry" in refused(UNPROCESSABLE, parse_time, bad, "expiry")

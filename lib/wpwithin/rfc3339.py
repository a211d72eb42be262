"""RFC 3339 timestamps <-> Unix seconds, by integer arithmetic only.

Produces "2026-11-26T23:58:23Z" (what Go's time.Time marshals for a whole
second in UTC) and parses what Go emits, with or without fractional seconds
and with any UTC offset. Never reads the clock: callers pass the time in.
"""
from wpwithin.errors import UNPROCESSABLE, ProtocolError
from wpwithin.wire import ascii_digits


def _days_from_civil(y, m, d):
    # Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(z):
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (m <= 2), m, d


def format_time(seconds):
    """Unix seconds (int, UTC) -> RFC 3339 string."""
    days, rest = divmod(seconds, 86400)
    y, m, d = _civil_from_days(days)
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, m, d, rest // 3600, rest // 60 % 60, rest % 60)


def _number(text, start, length, what):
    part = text[start:start + length]
    if len(part) != length or not ascii_digits(part):
        raise ProtocolError(UNPROCESSABLE, "%s is not an RFC 3339 time" % what)
    return int(part)


def parse_time(text, what="time"):
    """RFC 3339 string -> Unix seconds (fractions dropped); bad text raises ProtocolError naming `what`."""
    if not isinstance(text, str) or len(text) < 20 or len(text) > 40:
        raise ProtocolError(UNPROCESSABLE, "%s is not an RFC 3339 time" % what)
    for index, char in ((4, "-"), (7, "-"), (13, ":"), (16, ":")):
        if text[index] != char:
            raise ProtocolError(UNPROCESSABLE, "%s is not an RFC 3339 time" % what)
    if text[10] not in "Tt":
        raise ProtocolError(UNPROCESSABLE, "%s is not an RFC 3339 time" % what)
    y = _number(text, 0, 4, what)
    mo = _number(text, 5, 2, what)
    d = _number(text, 8, 2, what)
    h = _number(text, 11, 2, what)
    mi = _number(text, 14, 2, what)
    s = _number(text, 17, 2, what)
    pos = 19
    if text[pos] == ".":
        pos += 1
        start = pos
        while pos < len(text) and ascii_digits(text[pos]):
            pos += 1
        if pos == start:
            raise ProtocolError(UNPROCESSABLE, "%s is not an RFC 3339 time" % what)
    zone = text[pos:]
    if zone in ("Z", "z"):
        offset = 0
    elif len(zone) == 6 and zone[0] in "+-" and zone[3] == ":":
        offset = _number(zone, 1, 2, what) * 3600 + _number(zone, 4, 2, what) * 60
        if zone[0] == "-":
            offset = -offset
    else:
        raise ProtocolError(UNPROCESSABLE, "%s is not an RFC 3339 time" % what)
    if not (1 <= mo <= 12 and 1 <= d <= _month_days(y, mo) and h < 24 and mi < 60 and s < 60):
        raise ProtocolError(UNPROCESSABLE, "%s is not a valid date and time" % what)
    return _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset


def _month_days(y, m):
    if m == 2:
        return 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    return 30 if m in (4, 6, 9, 11) else 31

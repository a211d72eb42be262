"""Unix seconds -> RFC 3339 timestamps, by integer arithmetic only.

Produces "2026-11-26T23:58:23Z", what Go's time.Time marshals for a whole
second in UTC. Nothing here parses one: a producer checks a presented
token's times against the text it issued (the signature binds that text),
so no Thing needs to. Never reads the clock: callers pass the time in.
"""


def format_time(seconds):
    """Unix seconds (int, UTC) -> RFC 3339 string."""
    z, rest = divmod(seconds, 86400)
    # The date of day z since 1970-01-01, proleptic Gregorian (H. Hinnant's algorithm).
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    y = yoe + era * 400 + (m <= 2)
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, m, d, rest // 3600, rest // 60 % 60, rest % 60)

"""RFC 3339 timestamps as Go marshals a whole second in UTC."""
from wpwithin.delivery_token import format_time


def test_known_instants():
    assert format_time(0) == "1970-01-01T00:00:00Z"
    assert format_time(-1) == "1969-12-31T23:59:59Z"
    assert format_time(-62135596800) == "0001-01-01T00:00:00Z"
    assert format_time(951782400) == "2000-02-29T00:00:00Z"  # a leap century
    assert format_time(1709164800) == "2024-02-29T00:00:00Z"
    assert format_time(1795737600) == "2026-11-27T00:00:00Z"
    assert format_time(4102444799) == "2099-12-31T23:59:59Z"
    assert format_time(4107542400) == "2100-03-01T00:00:00Z"  # 2100 is not a leap year

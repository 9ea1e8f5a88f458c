from email.utils import parsedate_to_datetime

from mailyard.core.dates import header_date


def test_header_date_is_utc_with_a_known_zone() -> None:
    text = header_date(1_767_225_600.5)
    assert text == "Thu, 01 Jan 2026 00:00:00 +0000"
    assert parsedate_to_datetime(header_date()).utcoffset() is not None

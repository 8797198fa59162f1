from decimal import Decimal

import pytest
from django.template import Context, Template

from leadgen.display import duration_text, error_line, usd


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("1234.5678"), "$1,234.5678"),
        ("6.141191", "$6.1412"),
        ("6.3712", "$6.3712"),
        (0, "$0.0000"),
        ("1234567.00005", "$1,234,567.0001"),
        (Decimal("-2.5"), "-$2.5000"),
        (None, "—"),
        ("not money", "—"),
    ],
)
def test_money_reads_as_dollars_with_separators_and_four_places(value, text):
    assert usd(value) == text


def test_the_template_filter_is_the_same_formatter():
    template = Template("{% load leadgen_display %}{{ spent|usd }} / {{ seconds|duration }}")
    assert template.render(Context({"spent": "6141.191", "seconds": 125})) == "$6,141.1910 / 2 min"


@pytest.mark.parametrize(
    ("raw", "line"),
    [
        ("<html><body><h1>429 Too Many Requests</h1><hr>nginx</body></html>", "429 Too Many Requests"),
        ("hunter: <html><head><title>502 Bad Gateway</title></head></html>", "hunter: 502 Bad Gateway"),
        ("<div><style>p{}</style>Service &amp; API\n down</div>", "Service & API down"),
        ("timeout after\n\n 20 s", "timeout after 20 s"),
        ("", ""),
    ],
)
def test_error_lines_carry_no_markup_and_no_newlines(raw, line):
    assert error_line(raw) == line


def test_a_long_error_is_cut_to_one_line():
    assert len(error_line("x" * 1000)) == 200
    assert error_line("x" * 1000).endswith("…")
    assert duration_text(45) == "45 s" and duration_text(7500) == "2 h 5 min"

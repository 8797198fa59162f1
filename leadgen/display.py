"""How values read for people, the same on every page, list and email: money, durations, error lines.

The API keeps its machine formats (money as a 4-place decimal string, seconds as numbers); these are
the words and figures a person reads. Templates reach them through the `leadgen_display` filters.
"""

import html
import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

MONEY_PLACES = Decimal("0.0001")
ERROR_LINE_LIMIT = 200
NO_VALUE = "—"

_TAG = re.compile(r"<[^>]*>")
_HEADING = re.compile(r"<(title|h1)[^>]*>(.*?)</\1>", re.IGNORECASE | re.DOTALL)
_INVISIBLE = re.compile(r"<(script|style|head)[^>]*>.*?</\1>", re.IGNORECASE | re.DOTALL)


def usd(value) -> str:
    """`$1,234.5678`: dollars with thousands separators and 4 places; "—" for no value."""
    if value is None or value == "":
        return NO_VALUE
    try:
        amount = Decimal(str(value)).quantize(MONEY_PLACES, rounding=ROUND_HALF_UP)
    except InvalidOperation:
        return NO_VALUE
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,}"


def money_column(field: str, description: str):
    """An admin list column (or read-only field) that shows a money field as `usd` does."""
    from django.contrib import admin

    @admin.display(description=description, ordering=field)
    def column(obj) -> str:
        return usd(getattr(obj, field))

    column.__name__ = f"{field}_display"
    return column


def duration_text(seconds: int | float | None) -> str:
    """A short human duration: "45 s", "12 min", "2 h 5 min"."""
    if seconds is None:
        return "unknown"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def percent_text(value: float | None, places: int = 1) -> str:
    return NO_VALUE if value is None else f"{value:.{places}f}%"


def code_label(code: str | None) -> str:
    """A machine code as words: "budget_exhausted" reads "budget exhausted"."""
    return (code or "").replace("_", " ")


def error_line(text: str | None, limit: int = ERROR_LINE_LIMIT) -> str:
    """One readable line of an error: no markup, no newlines, at most `limit` characters.

    An error that holds an HTML page (a proxy's error page kept whole) reads as its title or first
    heading, e.g. "429 Too Many Requests", never as its markup.
    """
    if not text:
        return ""
    text = str(text)
    if "<" in text and ">" in text:
        heading = _HEADING.search(text)
        if heading and _TAG.sub(" ", heading.group(2)).strip():
            before = _TAG.sub(" ", text[: text.find("<")])
            text = f"{before} {heading.group(2)}"
        else:
            text = _INVISIBLE.sub(" ", text)
        text = _TAG.sub(" ", text)
    text = " ".join(html.unescape(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"

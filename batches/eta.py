"""The time left of a batch, told honestly: a range when the pace is known, otherwise what it waits for.

Pure arithmetic on the snapshot's counts, no ORM. A number is given only when one is true: while
every open lead waits for its retry, or the batch is paused, the answer says so instead; before
enough leads have finished to know the pace, it says the estimate is still warming up; and a batch
with work left never reads "0 s".

The range comes from the pace so far: `n` leads finished in `elapsed` seconds give a rate whose
relative uncertainty is about 1/sqrt(n) (finishes are close to a Poisson process), so the time left is
`open / rate` within that share either way, and never shorter than the longest backoff still to wait.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from leadgen.display import duration_text

# Enough history for a range: this many finished leads over at least this many seconds.
WARMUP_LEADS = 5
WARMUP_SECONDS = 10.0
# The range never claims more precision than this share either way, nor less than this.
MIN_SPREAD = 0.1
MAX_SPREAD = 0.5

DASH = "\N{EN DASH}"

DONE = "done"
FINISHING = "finishing"
WAITING_TO_START = "waiting_to_start"
PAUSED = "paused"
CANCELLING = "cancelling"
WAITING_FOR_RETRIES = "waiting_for_retries"
WARMING_UP = "warming_up"
ESTIMATE = "estimate"

# Words of a provider's stop_detail ("hunter: plan usage limit reached (HTTP 429)") and how the
# pause reads; the first match wins.
_PAUSE_REASONS = [
    ("not set", "key missing"),
    ("key", "key rejected"),
    ("credit", "account out of credit"),
    ("quota", "quota used up"),
    ("limit", "plan used up"),
    ("model", "model not available"),
]


@dataclass(frozen=True)
class Eta:
    state: str
    text: str
    seconds: int | None = None
    low_seconds: int | None = None
    high_seconds: int | None = None

    def as_fields(self) -> dict:
        """The snapshot's fields: eta_seconds, eta_low_seconds, eta_high_seconds, eta_state, eta_text."""
        values = asdict(self)
        return {
            "eta_seconds": values["seconds"],
            "eta_low_seconds": values["low_seconds"],
            "eta_high_seconds": values["high_seconds"],
            "eta_state": values["state"],
            "eta_text": values["text"],
        }


def pause_text(stop_reason: str, stop_detail: str) -> str:
    """ "paused: hunter plan used up" for a provider pause; "paused by a user" for the button."""
    if stop_reason != "provider_unavailable":
        return "paused: press Resume to go on"
    provider, _, reason = stop_detail.partition(":")
    reason_lower = reason.lower()
    for words, label in _PAUSE_REASONS:
        if words in reason_lower:
            return f"paused: {provider.strip()} {label}"
    return f"paused: {stop_detail}" if stop_detail else "paused: a provider is unavailable"


def _range_text(low: int, high: int) -> str:
    low_text, high_text = duration_text(low), duration_text(high)
    if low_text == high_text:
        return f"about {low_text}"
    low_number, _, low_unit = low_text.rpartition(" ")
    high_number, _, high_unit = high_text.rpartition(" ")
    if low_unit == high_unit and " " not in low_number and " " not in high_number:
        return f"{low_number}{DASH}{high_number} {high_unit}"
    return f"{low_text} {DASH} {high_text}"


def batch_eta(
    *,
    status: str,
    finished: bool,
    started: bool,
    stop_reason: str = "",
    stop_detail: str = "",
    open_leads: int,
    processing: int,
    waiting_for_retry: int = 0,
    next_retry_in: float | None = None,
    last_retry_in: float | None = None,
    finished_since_start: int = 0,
    elapsed_seconds: float = 0.0,
    open_circuits: tuple[str, ...] = (),
) -> Eta:
    """What is left of a batch. `waiting_for_retry`: pending leads whose backoff has not ended yet,
    the next and last of them due in `next_retry_in` and `last_retry_in` seconds; `open_circuits`:
    providers whose circuit is open (their leads wait for the cool-down)."""
    if finished:
        return Eta(DONE, "done", 0, 0, 0)
    if open_leads <= 0:
        return Eta(FINISHING, "finishing")
    if status == "paused":
        return Eta(PAUSED, pause_text(stop_reason, stop_detail))
    if status == "cancelling":
        return Eta(CANCELLING, "cancelling: leads in flight finish")
    if not started:
        return Eta(WAITING_TO_START, "waiting to start")
    if processing == 0 and waiting_for_retry >= open_leads:
        due = duration_text(max(1, math.ceil(next_retry_in or 0)))
        if open_circuits:
            names = ", ".join(open_circuits)
            return Eta(WAITING_FOR_RETRIES, f"waiting for retries: {names} circuit open (next try in {due})")
        return Eta(WAITING_FOR_RETRIES, f"waiting for retries (next in {due})")
    if finished_since_start < WARMUP_LEADS or elapsed_seconds < WARMUP_SECONDS:
        return Eta(WARMING_UP, "estimating: not enough history yet")

    rate = finished_since_start / elapsed_seconds
    spread = min(MAX_SPREAD, max(MIN_SPREAD, 1 / math.sqrt(finished_since_start)))
    middle = open_leads / rate
    low = max(1, round(middle / (1 + spread)))
    high = max(low, round(middle / (1 - spread)), math.ceil(last_retry_in or 0))
    seconds = min(max(1, round(middle)), high)
    return Eta(ESTIMATE, _range_text(low, high), max(seconds, low), low, high)

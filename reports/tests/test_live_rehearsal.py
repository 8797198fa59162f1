"""The live rehearsal at CI size: a batch with PROVIDER_MODE=live against the loopback stand-in.

bench/drills/live_rehearsal.py says what the stand-in answers and injects; here the latencies and
deadlines are scaled down (PageSpeed's recorded 20.6 s run takes about 0.4 s, its deadline 2.4 s) and
the limits are lifted, so the run takes seconds.
"""

import os
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from bench.drills import live_rehearsal
from reports import limits
from reports.models import ProviderCall

pytestmark = pytest.mark.django_db(transaction=True)
SCALE = 0.02


@pytest.fixture
def standin(settings, monkeypatch):
    folder = Path(django_settings.BASE_DIR).parent / "shared" / "provider-fixtures"
    if not folder.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{folder} is missing: the live rehearsal must run in CI")
        pytest.skip(f"{folder} is missing (a clone outside the workspace): live rehearsal skipped")
    with live_rehearsal.StandIn(scale=SCALE) as server:
        for name, value in live_rehearsal.live_settings(server, scale=SCALE).items():
            setattr(settings, name, value)
        settings.PROVIDER_LIMITS = {
            name: {"concurrency": 50, "per_second": 1000} for name in limits.DEFAULT_LIMITS
        }
        settings.BATCH_RETRY_BASE_SECONDS = 0
        settings.SANDBOX_LATENCY_MS = 0
        # Hunter's slow-down holds every Hunter call off for 5 s at full scale.
        monkeypatch.setattr(limits, "MAX_HOLD_SECONDS", 0.1)
        yield server


def test_live_rehearsal(standin):
    outcome = live_rehearsal.rehearse(standin, leads=12, concurrency=4, timeout=120, cannot_load=False)

    assert live_rehearsal.problems(outcome) == []
    assert sorted(detail for _, detail in outcome["pauses"]) == live_rehearsal.EXPECTED_PAUSES
    assert outcome["batch"].status == "completed"
    # Hunter's 403 and ScreenshotOne's concurrency limit each cost the lead that met it one retry
    # (maybe the same lead); nothing else was retried.
    transient = set(
        ProviderCall.objects.filter(
            transient=True, batch_lead_id__in=[row.pk for row in outcome["rows"]]
        ).values_list("provider", "batch_lead_id")
    )
    assert {provider for provider, _ in transient} == {"hunter", "screenshot"}
    assert {row.pk for row in outcome["rows"] if row.attempts == 2} == {row_id for _, row_id in transient}
    assert {row.attempts for row in outcome["rows"]} == {1, 2}


def test_live_rehearsal_site_pagespeed_cannot_load(standin):
    outcome = live_rehearsal.rehearse(standin, leads=6, concurrency=3, timeout=120, cannot_load=True)

    assert live_rehearsal.problems(outcome) == []


def test_rehearsal_deadlines_are_the_settings_defaults():
    from leadgen import settings as defaults

    assert live_rehearsal.DEADLINES == defaults.PROVIDER_TIMEOUTS

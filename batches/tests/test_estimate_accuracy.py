from decimal import Decimal

import pytest

from batches.services import batch_create_draft, batch_launch
from batches.tests.engine import make_leads, run_to_end

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.slow
def test_preview_of_a_200_lead_batch_with_10_percent_failures_is_within_5_percent(settings):
    settings.SANDBOX_LATENCY_MS = 0
    settings.SANDBOX_FAILURE_RATE = 0.10
    settings.BATCH_RETRY_BASE_SECONDS = 0
    settings.BATCH_RETRY_MAX_SECONDS = 0
    leads = [
        *make_leads(150, prefix="full"),
        *make_leads(30, prefix="noemail", email=False),
        *make_leads(20, prefix="nosite", website=False),
    ]
    batch = batch_create_draft(user=None, lead_ids=[lead.pk for lead in leads], concurrency=10, max_retries=3)
    batch = batch_launch(batch=batch, user=None, enqueue=False)
    assert batch.estimate["expected_retries"] > 0
    batch = run_to_end(batch.pk, timeout=240)
    assert batch.leads.filter(attempts__gt=1).exists()
    error = abs(batch.actual_cost_usd - batch.estimated_cost_usd) / batch.actual_cost_usd
    assert error <= Decimal("0.05"), (batch.estimated_cost_usd, batch.actual_cost_usd)

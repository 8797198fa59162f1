"""The claim's query plans on a 100,000-lead batch: on the claim index, never a scan of the lead table.

The claim's statements run inside `batch_claim_v1`, where EXPLAIN cannot reach; auto_explain logs the
plan of every statement the function runs (`log_nested_statements`), and `client_min_messages = log`
sends those log lines to this connection, where a notice handler collects them.
"""

import pytest
from django.db import connection

from batches.engine import PricedAhead, claim_leads, new_owner
from batches.engine.claim import _SHARED_DOMAINS, _shared_domains
from batches.models import BatchReport, BatchReportLead
from reports.selectors import price_table

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LEADS = 100_000


def _batch_of_leads(count: int) -> BatchReport:
    """`count` leads and one running batch of them, written in SQL (the ORM would take a minute)."""
    batch = BatchReport.objects.create(
        name="plan", status=BatchReport.Status.RUNNING, provider_mode="sandbox"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO leads_lead (company_name, website, domain, email, phone, contact_name, industry,"
            " city, state, country, score, source, status, created_at, updated_at)"
            " SELECT 'Lead ' || n, 'https://lead' || n || '.example.com', 'lead' || n || '.example.com',"
            " 'info@lead' || n || '.example.com', '', '', 'dentist', '', '', 'US', 50, '', 'new',"
            " now(), now()"
            " FROM generate_series(1, %s) AS n",
            [count],
        )
        cursor.execute(
            "INSERT INTO batches_batchreportlead (batch_id, lead_id, position, status, attempts,"
            " run_attempts, last_error, error_code, cost_usd, cost_breakdown, warnings, reserved_usd,"
            " lease_owner, updated_at)"
            " SELECT %s, id, row_number() OVER (ORDER BY id), 'pending', 0, 0, '', '', 0, '{}', '[]', 0, '',"
            " now()"
            " FROM leads_lead",
            [batch.pk],
        )
        # Some leads of the batch done and some in flight, as mid-batch.
        cursor.execute(
            "UPDATE batches_batchreportlead SET status = 'succeeded', attempts = 1, run_attempts = 1"
            " WHERE batch_id = %s AND position <= %s",
            [batch.pk, count // 4],
        )
        cursor.execute("ANALYZE leads_lead, batches_batchreportlead, batches_batchreport")
    return batch


def test_the_claim_reads_the_claim_index_and_never_scans_the_lead_table():
    batch = _batch_of_leads(LEADS)
    connection.ensure_connection()
    plans: list[str] = []
    raw = connection.connection
    raw.add_notice_handler(lambda diagnostic: plans.append(diagnostic.message_primary or ""))
    with connection.cursor() as cursor:
        cursor.execute("LOAD 'auto_explain'")
        cursor.execute("SET auto_explain.log_min_duration = 0")
        cursor.execute("SET auto_explain.log_nested_statements = on")
        cursor.execute("SET client_min_messages = log")
    try:
        claims = claim_leads(
            batch_id=batch.pk, owner=new_owner(), prices=price_table(), limit=5, ahead=PricedAhead(rows=10)
        )
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET client_min_messages = notice")
            cursor.execute("SET auto_explain.log_min_duration = -1")
    assert [claim.lead_id for claim in claims] == list(
        BatchReportLead.objects.filter(batch=batch, status="processing")
        .order_by("position")
        .values_list("lead_id", flat=True)
    )
    assert len(claims) == 5
    nested = [plan for plan in plans if "batches_batchreportlead" in plan]
    candidates = [plan for plan in nested if "SKIP LOCKED" in plan]
    assert candidates, plans
    assert all("batch_lead_claim" in plan for plan in candidates), candidates
    assert not [plan for plan in plans if "Seq Scan on batches_batchreportlead" in plan], plans


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


def test_shared_domains_are_found_without_reading_the_batch_of_a_new_batch():
    """Every read of the leads priced ahead asks which of their domains other leads of the batch share.
    A batch launched since the last ANALYZE is absent from the statistics, estimated at a row or two:
    a plan starting from its rows would read all of them for every domain."""
    analyzed = _batch_of_leads(20_000)
    batch = BatchReport.objects.create(name="new", status=BatchReport.Status.RUNNING, provider_mode="sandbox")
    BatchReportLead.objects.filter(batch=analyzed).update(batch=batch)
    domains = [f"lead{n}.example.com" for n in range(10_001, 10_041)]
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {_SHARED_DOMAINS}", [domains, batch.pk])
        [plan] = cursor.fetchone()[0]
    read = {
        f"{node['Node Type']} {node.get('Relation Name', '')} {node.get('Index Name', '')}": node[
            "Actual Rows"
        ]
        * node["Actual Loops"]
        for node in _nodes(plan["Plan"])
    }
    assert max(read.values()) <= 2 * len(domains), list(read.items())
    assert _shared_domains(batch.pk, set(domains)) == set()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE leads_lead SET domain = 'lead10001.example.com' WHERE domain = 'lead10002.example.com'"
        )
    assert _shared_domains(batch.pk, set(domains)) == {"lead10001.example.com"}

"""The live adapters against the providers' real answers in `../shared/provider-fixtures/`.

Every file there is served, byte for byte, by the local replay server and goes through the adapter's
own request, classification and parsing code. The files are read where they are (they are other
people's data, never copied into the project); outside the workspace these tests skip, in CI
(`CI` set) a missing folder fails them. Cases the folder lacks are built here from the facts its README
documents, and say so.
"""

import asyncio
import json
import os
import re
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import yaml
from django.conf import settings as django_settings

from leadgen import settings as settings_module
from reports.models import ProviderCall
from reports.pricing import call_cost
from reports.providers import PROVIDERS
from reports.providers.base import LeadInfo, parse_duration
from reports.providers.hunter import HunterData
from reports.providers.llm import LlmSummary
from reports.providers.pagespeed import PageSpeedData
from reports.providers.semrush import SemrushData
from reports.selectors import price_table
from reports.services import report_generate
from reports.tests import payloads

pytestmark = pytest.mark.django_db

PAGESPEED_HTML5ROCKS = "pagespeed/psi-v5_html5rocks_desktop_lh4.1_GoogleChromeLabs-psi.json"
PAGESPEED_AIRTEL = "pagespeed/psi-v5_stores.airtel.in_desktop_lh11.0_measure-grill.json"
PAGESPEED_KEYLESS_429 = "pagespeed/psi-v5_429_RESOURCE_EXHAUSTED_keyless_sabushid-speed-to-lead.json"
PAGESPEED_KEY_INVALID = "pagespeed/psi-v5_400_API_KEY_INVALID_asimexports123-pseo-plumbing-site.json"
PAGESPEED_FAILED_DOCUMENT = "pagespeed/psi-v5_400_FAILED_DOCUMENT_REQUEST_lighthouse-issue-16900.json"
HUNTER_STRIPE = "hunter/domain-search_stripe.com_rohith016-python-email-gen-csv.json"
HUNTER_401 = "hunter/error_401_authentication_failed_zan-maker-Zans-repository.json"
SEMRUSH_ALL_DATABASES = "semrush/domain_ranks_silktide.com_all-dbs_export_escape_silktide-semrush-api.txt"
SEMRUSH_SEOBOOK = "semrush/domain_ranks_seobook.com_silktide-semrush-api.txt"
SEMRUSH_ONE_DATABASE = "semrush/domain_rank_amazon.com_one-db_silktide-semrush-api.txt"
SEMRUSH_NOTHING_FOUND = "semrush/error_50_nothing_found_silktide-semrush-api.txt"
SEMRUSH_WRONG_KEY = "semrush/error_120_wrong_key_silktide-semrush-api.txt"
SCREENSHOTONE_ERRORS = "screenshotone/errors-doc-excerpt_screenshotone.com-docs-errors.md"
LLM_JSON_OBJECT = (
    "llm/chat-completions_json_object_gpt-4o_pydantic-ai-cassette_test_openai_prompted_output.yaml"
)
LLM_PLAIN = "llm/chat-completions_plain_gpt-4o_pydantic-ai-cassette_test_user_id.yaml"
LLM_INSUFFICIENT_QUOTA = "llm/error_429_insufficient_quota_via-proxy_smartdarisun.ir.json"
USED = {
    PAGESPEED_HTML5ROCKS,
    PAGESPEED_AIRTEL,
    PAGESPEED_KEYLESS_429,
    PAGESPEED_KEY_INVALID,
    PAGESPEED_FAILED_DOCUMENT,
    HUNTER_STRIPE,
    HUNTER_401,
    SEMRUSH_ALL_DATABASES,
    SEMRUSH_SEOBOOK,
    SEMRUSH_ONE_DATABASE,
    SEMRUSH_NOTHING_FOUND,
    SEMRUSH_WRONG_KEY,
    SCREENSHOTONE_ERRORS,
    LLM_JSON_OBJECT,
    LLM_PLAIN,
    LLM_INSUFFICIENT_QUOTA,
}
JSON = {"Content-Type": "application/json; charset=UTF-8"}
TEXT = {"Content-Type": "text/plain; charset=utf-8"}


def fixtures_dir() -> Path:
    folder = Path(django_settings.BASE_DIR).parent / "shared" / "provider-fixtures"
    if not folder.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{folder} is missing: the provider contract tests must run in CI")
        pytest.skip(f"{folder} is missing (a clone outside the workspace): provider contract tests skipped")
    return folder


def fixture_bytes(name: str) -> bytes:
    return (fixtures_dir() / name).read_bytes()


def cassette(name: str) -> list[dict]:
    """The recorded interactions of a pydantic-ai VCR cassette (bodies stored as `parsed_body`)."""
    return yaml.safe_load(fixture_bytes(name))["interactions"]


def lead_info(server) -> LeadInfo:
    return LeadInfo(
        id=7,
        company_name="Smile Dental",
        website=f"{server.base_url}/website/",
        domain="smile-dental.com",
        email="",
    )


def call(name: str, server):
    async def go():
        async with httpx.AsyncClient() as client:
            return await PROVIDERS[name].call(client, lead_info(server), {})

    result = asyncio.run(go())
    cost = call_cost(
        price_table()[name],
        succeeded=result.succeeded,
        input_tokens=result.usage.input_tokens,
        output_tokens=result.usage.output_tokens,
        units=result.usage.units,
    )
    return result, cost


def kind(error) -> str:
    """Which of the three kinds of failure an error is."""
    if error.unavailable:
        assert not error.transient
        return "unavailable"
    return "transient" if error.transient else "lead"


def test_every_fixture_file_is_used():
    files = {
        str(path.relative_to(fixtures_dir()))
        for path in fixtures_dir().rglob("*")
        if path.is_file() and path.name != "README.md"
    }
    assert files == USED


# PageSpeed Insights.


def test_pagespeed_performance_only_run(replay_server):
    replay_server.answer("pagespeed", 200, fixture_bytes(PAGESPEED_HTML5ROCKS), JSON)

    result, cost = call("pagespeed", replay_server)

    assert result.error is None
    assert result.data == PageSpeedData(
        scores={"performance": 99},
        metrics={"first-contentful-paint": "0.6\xa0s", "speed-index": "0.8\xa0s"},
        failed_audits=[
            {
                "id": "font-display",
                "title": "Ensure text remains visible during webfont load",
                "score": 0,
                "display_value": "",
            },
            {
                "id": "render-blocking-resources",
                "title": "Eliminate render-blocking resources",
                "score": 81,
                "display_value": "Potential savings of 230\xa0ms",
            },
        ],
        final_url="https://www.html5rocks.com/en/",
    )
    assert cost == Decimal("0.03")


def test_pagespeed_all_categories_run_keeps_only_the_categories_asked_for(replay_server):
    replay_server.answer("pagespeed", 200, fixture_bytes(PAGESPEED_AIRTEL), JSON)

    result, cost = call("pagespeed", replay_server)

    assert result.error is None
    data = result.data
    # The answer also scores PWA (0.29): not asked for, not reported.
    assert data.scores == {"performance": 72, "accessibility": 86, "seo": 92, "best_practices": 95}
    assert data.metrics == {
        "first-contentful-paint": "2.0\xa0s",
        "largest-contentful-paint": "2.3\xa0s",
        "total-blocking-time": "0\xa0ms",
        "cumulative-layout-shift": "0.085",
        "speed-index": "3.1\xa0s",
    }
    assert [(audit["id"], audit["score"]) for audit in data.failed_audits] == [
        ("color-contrast", 0),
        ("crawlable-anchors", 0),
        ("heading-order", 0),
        ("image-aspect-ratio", 0),
        ("link-in-text-block", 0),
        ("link-name", 0),
        ("speed-index", 23),
        ("first-contentful-paint", 28),
        ("first-meaningful-paint", 28),
        ("uses-long-cache-ttl", 46),
        ("largest-contentful-paint", 53),
        ("render-blocking-resources", 55),
    ]
    assert data.final_url == (
        "https://stores.airtel.in/airtel-store-hazratganj-lko-telecommunications-service-provider-"
        "hazratganj-lucknow-121271/Home"
    )
    assert cost == Decimal("0.03")


def test_pagespeed_default_deadline_fits_the_longest_recorded_run():
    runs = [
        json.loads(fixture_bytes(name))["lighthouseResult"]["timing"]["total"] / 1000
        for name in (PAGESPEED_HTML5ROCKS, PAGESPEED_AIRTEL)
    ]
    # The README records 63.2 s for another run of the same source; the default leaves room above it.
    assert max(runs) < 63.3 < settings_module.PROVIDER_TIMEOUTS["pagespeed"] == 120.0
    assert settings_module.PROVIDER_TIMEOUTS["screenshot"] == 90.0


def test_pagespeed_slow_answer_within_the_deadline_succeeds_at_once(replay_server, settings):
    settings.PROVIDER_TIMEOUTS = {**settings.PROVIDER_TIMEOUTS, "pagespeed": 3.0}
    replay_server.answer("pagespeed", 200, fixture_bytes(PAGESPEED_HTML5ROCKS), JSON, delay=1.0)

    result, _ = call("pagespeed", replay_server)

    assert result.error is None
    assert result.data.scores == {"performance": 99}
    assert len(replay_server.requests) == 1


def test_deadline_bounds_the_whole_call_not_each_read(replay_server, settings):
    # Every piece arrives within 0.15 s, the whole answer takes about 1.5 s: a per-read timeout of
    # 0.6 s never fires, the total deadline does.
    settings.PROVIDER_TIMEOUTS = {**settings.PROVIDER_TIMEOUTS, "pagespeed": 0.6}
    replay_server.answer("pagespeed", 200, fixture_bytes(PAGESPEED_HTML5ROCKS), JSON, trickle=0.15)

    result, cost = call("pagespeed", replay_server)

    assert (result.error.code, kind(result.error), result.error.message) == (
        "timeout",
        "transient",
        "no answer within 0.6 s",
    )
    assert result.duration_ms < 1400
    assert cost == Decimal("0")


def test_pagespeed_keyless_quota_is_unavailable(replay_server):
    replay_server.answer("pagespeed", 429, fixture_bytes(PAGESPEED_KEYLESS_429), JSON)

    result, cost = call("pagespeed", replay_server)

    assert (result.error.code, kind(result.error), result.error.http_status) == (
        "quota_exhausted",
        "unavailable",
        429,
    )
    assert result.error.message == "no quota for this project: is the API key set? (HTTP 429)"
    assert cost == Decimal("0")


def test_pagespeed_per_minute_quota_passes(replay_server):
    # Built from the documented facts: the same 429 RESOURCE_EXHAUSTED for the per-minute quota (240
    # queries per minute per project) of a project that has quota.
    body = json.loads(fixture_bytes(PAGESPEED_KEYLESS_429))
    body["error"]["message"] = body["error"]["message"].replace("per day", "per minute")
    metadata = body["error"]["details"][0]["metadata"]
    metadata.update(quota_limit="defaultPerMinutePerProject", quota_limit_value="240")
    replay_server.answer("pagespeed", 429, body)

    result, _ = call("pagespeed", replay_server)

    assert (result.error.code, kind(result.error)) == ("rate_limited", "transient")


def test_pagespeed_invalid_key_is_unavailable(replay_server):
    replay_server.answer("pagespeed", 400, fixture_bytes(PAGESPEED_KEY_INVALID), JSON)

    result, _ = call("pagespeed", replay_server)

    assert (result.error.code, kind(result.error)) == ("key_rejected", "unavailable")
    assert result.error.message == (
        "key rejected (API_KEY_INVALID): API key not valid. Please pass a valid API key. (HTTP 400)"
    )


def test_pagespeed_site_that_cannot_be_loaded_is_the_leads_own(replay_server):
    replay_server.answer("pagespeed", 400, fixture_bytes(PAGESPEED_FAILED_DOCUMENT), JSON)

    result, cost = call("pagespeed", replay_server)

    assert (result.error.code, kind(result.error), result.error.http_status) == (
        "failed_document_request",
        "lead",
        400,
    )
    assert (
        result.error.message
        == "could not load this site (FAILED_DOCUMENT_REQUEST: net::ERR_TIMED_OUT) (HTTP 400)"
    )
    assert cost == Decimal("0")


def test_pagespeed_site_answering_500_is_the_leads_own_not_retried(replay_server):
    # Built from the documented facts (GoogleChrome/lighthouse #9666): a site answering 500 gives
    # PSI's error 500 ERRORED_DOCUMENT_REQUEST, which a retry does not change.
    message = (
        "Lighthouse returned error: ERRORED_DOCUMENT_REQUEST. Lighthouse was unable to reliably load the "
        "page you requested. Make sure you are testing the correct URL and that the server is properly "
        "responding to all requests. (Status code: 500)"
    )
    body = {
        "error": {
            "code": 500,
            "message": message,
            "errors": [{"message": message, "domain": "lighthouse", "reason": "lighthouseUserError"}],
        }
    }
    replay_server.answer("pagespeed", 500, body)

    result, _ = call("pagespeed", replay_server)

    assert (result.error.code, kind(result.error)) == ("errored_document_request", "lead")
    assert result.error.message == "could not load this site (ERRORED_DOCUMENT_REQUEST) (HTTP 500)"


# Hunter.


def test_hunter_domain_search(replay_server):
    replay_server.answer("hunter", 200, fixture_bytes(HUNTER_STRIPE), JSON)

    result, cost = call("hunter", replay_server)

    assert result.error is None
    data = result.data
    assert isinstance(data, HunterData)
    assert (data.organization, data.pattern, data.results) == ("Stripe", "{first}", 252)
    assert [(email["value"], email["confidence"]) for email in data.emails] == [
        ("carl@stripe.com", 94),
        ("charles.francis@stripe.com", 94),
        ("edwin@stripe.com", 94),
        ("govind.dandekar@stripe.com", 94),
        ("karla@stripe.com", 94),
        ("lisa@stripe.com", 94),
        ("ludwig@stripe.com", 94),
        ("patrick@stripe.com", 94),
        ("sana@stripe.com", 94),
        ("anamaria@stripe.com", 93),
    ]
    assert data.emails[7] == {
        "value": "patrick@stripe.com",
        "type": "personal",
        "confidence": 94,
        "first_name": "Patrick",
        "last_name": "Collison",
        "position": "CEO",
    }
    assert cost == Decimal("0.10")


def test_hunter_bad_key_is_unavailable(replay_server):
    replay_server.answer("hunter", 401, fixture_bytes(HUNTER_401), JSON)

    result, _ = call("hunter", replay_server)

    assert (result.error.code, kind(result.error)) == ("key_rejected", "unavailable")
    assert result.error.message == "key rejected: No user found for the API key supplied (HTTP 401)"


def test_hunter_403_is_its_rate_limit_and_passes(replay_server):
    # Built from Hunter's documented statuses: 403 "You have reached the rate limit", no Retry-After.
    body = {
        "errors": [{"id": "too_many_requests", "code": 403, "details": "You have reached the rate limit."}]
    }
    replay_server.answer("hunter", 403, body)

    result, cost = call("hunter", replay_server)

    assert (result.error.code, kind(result.error), result.error.http_status) == (
        "rate_limited",
        "transient",
        403,
    )
    assert result.error.retry_after == 5.0
    assert cost == Decimal("0")


def test_hunter_429_is_its_plan_used_up(replay_server):
    # Built from Hunter's documented statuses: 429 "You have reached your usage limit. Upgrade your
    # plan if necessary".
    body = {
        "errors": [
            {
                "id": "too_many_requests",
                "code": 429,
                "details": "You have reached your usage limit. Upgrade your plan if necessary.",
            }
        ]
    }
    replay_server.answer("hunter", 429, body)

    result, _ = call("hunter", replay_server)

    assert (result.error.code, kind(result.error)) == ("plan_limit_reached", "unavailable")
    assert f"{result.error.provider}: {result.error.message}" == "hunter: plan usage limit reached (HTTP 429)"


# SEMrush.


def test_semrush_reads_the_configured_database_row_of_an_all_databases_answer(replay_server, settings):
    replay_server.answer("semrush", 200, fixture_bytes(SEMRUSH_ALL_DATABASES), TEXT)

    result, cost = call("semrush", replay_server)

    assert result.data == SemrushData(
        found=True,
        database="us",
        rank=53439,
        organic_keywords=833,
        organic_traffic=11119,
        organic_cost=26871.0,
        adwords_keywords=0,
        adwords_traffic=0,
        adwords_cost=0.0,
    )
    # Billed per line: this answer has 26 (one per database), which is why the request names one.
    assert result.usage.units == 26
    assert cost == Decimal("2.08")

    settings.SEMRUSH_DATABASE = "uk"
    result, _ = call("semrush", replay_server)
    assert (result.data.database, result.data.rank, result.data.organic_traffic) == ("uk", 21727, 7181)
    assert replay_server.requests[-1]["query"]["database"] == ["uk"]


def test_semrush_one_database_row(replay_server):
    replay_server.answer("semrush", 200, fixture_bytes(SEMRUSH_SEOBOOK), TEXT)

    result, cost = call("semrush", replay_server)

    assert result.data == SemrushData(
        found=True,
        database="us",
        rank=29062,
        organic_keywords=3214,
        organic_traffic=33696,
        organic_cost=193957.0,
        adwords_keywords=0,
        adwords_traffic=0,
        adwords_cost=0.0,
    )
    assert (result.usage.units, cost) == (1, Decimal("0.08"))
    assert replay_server.requests[0]["query"]["database"] == ["us"]


def test_semrush_answer_without_database_column_is_the_database_asked_for(replay_server):
    replay_server.answer("semrush", 200, fixture_bytes(SEMRUSH_ONE_DATABASE), TEXT)

    result, cost = call("semrush", replay_server)

    assert result.data == SemrushData(
        found=True,
        database="us",
        rank=7,
        organic_keywords=12683520,
        organic_traffic=276106383,
        organic_cost=212685647.0,
        adwords_keywords=4852719,
        adwords_traffic=22177894,
        adwords_cost=17474082.0,
    )
    assert cost == Decimal("0.08")


def test_semrush_nothing_found_is_a_finding(replay_server):
    replay_server.answer("semrush", 200, fixture_bytes(SEMRUSH_NOTHING_FOUND), TEXT)

    result, cost = call("semrush", replay_server)

    assert result.error is None
    assert result.data == SemrushData(found=False)
    assert cost == Decimal("0.08")


def test_semrush_wrong_key_is_unavailable(replay_server):
    replay_server.answer("semrush", 200, fixture_bytes(SEMRUSH_WRONG_KEY), TEXT)

    result, cost = call("semrush", replay_server)

    assert (result.error.code, kind(result.error), result.error.message) == (
        "semrush_error_120",
        "unavailable",
        "WRONG KEY - ID PAIR",
    )
    assert cost == Decimal("0")


def test_semrush_units_balance_zero_is_unavailable(replay_server):
    # Built from the documented facts: a Semrush-MCP log shows `403 ERROR 132 :: API UNITS BALANCE IS ZERO`.
    replay_server.answer("semrush", 403, "ERROR 132 :: API UNITS BALANCE IS ZERO", TEXT)

    result, _ = call("semrush", replay_server)

    assert (result.error.code, kind(result.error), result.error.http_status) == (
        "semrush_error_132",
        "unavailable",
        403,
    )
    assert f"{result.error.provider}: {result.error.message}" == "semrush: API UNITS BALANCE IS ZERO"


# ScreenshotOne: the documented error codes, each in the documented error JSON.


def screenshotone_error_table() -> dict[str, int]:
    """error_code -> HTTP status, from the codes table of the errors page excerpt."""
    text = fixture_bytes(SCREENSHOTONE_ERRORS).decode()
    return {code: int(status) for code, status in re.findall(r"^([a-z_]+) \| (\d{3}) \|", text, re.M)}


# error_code -> (kind, the error's code). Request and selector errors are neither ours for every lead
# nor worth retrying: they fail the lead as they are.
SCREENSHOTONE_KINDS = {
    "access_key_required": ("unavailable", "access_key_required"),
    "access_key_invalid": ("unavailable", "access_key_invalid"),
    "signature_is_required": ("unavailable", "signature_is_required"),
    "signature_is_not_valid": ("unavailable", "signature_is_not_valid"),
    "screenshots_limit_reached": ("unavailable", "screenshots_limit_reached"),
    "concurrency_limit_reached": ("transient", "concurrency_limit_reached"),
    "request_not_valid": ("lead", "http_400"),
    "selector_not_found": ("lead", "http_400"),
    "name_not_resolved": ("lead", "name_not_resolved"),
    "internal_application_error": ("transient", "internal_application_error"),
}


@pytest.mark.parametrize("code", sorted(SCREENSHOTONE_KINDS))
def test_screenshotone_documented_errors(replay_server, code):
    table = screenshotone_error_table()
    assert set(table) == set(SCREENSHOTONE_KINDS)
    body = {"is_successful": False, "error_code": code, "error_message": f"The API says {code}."}
    replay_server.answer("screenshot", table[code], body)

    result, cost = call("screenshot", replay_server)

    expected_kind, expected_code = SCREENSHOTONE_KINDS[code]
    assert (result.error.code, kind(result.error), result.error.http_status) == (
        expected_code,
        expected_kind,
        table[code],
    )
    assert cost == Decimal("0")


def test_screenshotone_plan_and_concurrency_messages(replay_server):
    table = screenshotone_error_table()
    for code, expected in (
        ("concurrency_limit_reached", "screenshot: concurrency limit reached (HTTP 400)"),
        ("screenshots_limit_reached", "screenshot: plan screenshot limit reached (HTTP 400)"),
    ):
        replay_server.answer("screenshot", table[code], {"is_successful": False, "error_code": code})
        result, _ = call("screenshot", replay_server)
        assert (result.error.code, f"{result.error.provider}: {result.error.message}") == (code, expected)


@pytest.mark.parametrize("status", [400, 500])
@pytest.mark.parametrize("code", ["network_error", "host_returned_error"])
def test_screenshotone_target_site_errors_are_the_leads_own(replay_server, code, status):
    # Built from the "how to handle API errors" guide in the excerpt: not worth retrying as they are,
    # whatever the status.
    body = {"is_successful": False, "error_code": code, "error_message": "The site returned 403."}
    replay_server.answer("screenshot", status, body)

    result, _ = call("screenshot", replay_server)

    assert (result.error.code, kind(result.error)) == (code, "lead")
    assert result.error.message == f"could not load this site: The site returned 403. (HTTP {status})"


def test_screenshotone_is_sent_its_own_timeout_below_ours(replay_server, settings):
    settings.PROVIDER_TIMEOUTS = {**settings.PROVIDER_TIMEOUTS, "screenshot": 90.0}
    replay_server.answer("screenshot", 200, payloads.jpeg(), {"Content-Type": "image/jpeg"})

    result, _ = call("screenshot", replay_server)

    assert result.error is None
    assert replay_server.requests[0]["query"]["timeout"] == ["60"]


# OpenAI-compatible chat completions.


def test_llm_plain_completion(replay_server):
    response = cassette(LLM_PLAIN)[0]["response"]
    replay_server.answer("llm", response["status"]["code"], response["parsed_body"])

    result, cost = call("llm", replay_server)

    assert result.data == LlmSummary(summary="Hello! How can I assist you today?", model="gpt-4o-2024-08-06")
    assert (result.usage.input_tokens, result.usage.output_tokens) == (8, 10)
    # 8 x $0.15/1M + 10 x $0.60/1M.
    assert cost == Decimal("0.000007")


def test_llm_null_content_is_an_error_not_an_empty_summary(replay_server):
    response = cassette(LLM_JSON_OBJECT)[0]["response"]
    assert response["parsed_body"]["choices"][0]["message"]["content"] is None
    replay_server.answer("llm", 200, response["parsed_body"])

    result, cost = call("llm", replay_server)

    assert (result.error.code, kind(result.error)) == ("bad_response", "lead")
    assert result.error.message == "answer without text (finish_reason tool_calls)"
    assert cost == Decimal("0")


def test_llm_json_without_the_fields_asked_for_is_an_error(replay_server):
    response = cassette(LLM_JSON_OBJECT)[1]["response"]
    assert response["parsed_body"]["usage"]["prompt_tokens"] == 137
    replay_server.answer("llm", 200, response["parsed_body"])

    result, _ = call("llm", replay_server)

    assert (result.error.code, kind(result.error)) == ("bad_response", "lead")
    assert result.error.message == "answer without a summary (fields: city, country)"


def test_llm_insufficient_quota_is_unavailable(replay_server):
    # The proxy's page nests OpenAI's error object under `details`: that object is what OpenAI sends.
    body = json.loads(fixture_bytes(LLM_INSUFFICIENT_QUOTA))["details"]
    replay_server.answer("llm", 429, body)

    result, cost = call("llm", replay_server)

    assert (result.error.code, kind(result.error), result.error.http_status) == (
        "insufficient_quota",
        "unavailable",
        429,
    )
    assert f"{result.error.provider}: {result.error.message}" == "llm: account out of credit (HTTP 429)"
    assert cost == Decimal("0")


@pytest.mark.parametrize(
    ("headers", "retry_after"),
    [
        ({"retry-after": "3"}, 3.0),
        (
            {
                "x-ratelimit-reset-requests": "1s",
                "x-ratelimit-reset-tokens": "6m0s",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-remaining-tokens": "1200",
            },
            1.0,
        ),
        ({"x-ratelimit-reset-requests": "20ms", "x-ratelimit-reset-tokens": "6m0s"}, 360.0),
    ],
)
def test_llm_rate_limit_waits_what_its_headers_say(replay_server, headers, retry_after):
    # Built from the documented facts: the same 429, with `rate_limit_exceeded` and reset headers.
    body = {
        "error": {
            "message": "Rate limit reached for gpt-4o in organization org-x on requests per min (RPM).",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    replay_server.answer("llm", 429, body, headers)

    result, _ = call("llm", replay_server)

    assert (result.error.code, kind(result.error), result.error.retry_after) == (
        "rate_limited",
        "transient",
        retry_after,
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("20ms", 0.02),
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("1h2m3.5s", 3723.5),
        ("2", 2.0),
        ("soon", None),
        ("", None),
    ],
)
def test_parse_duration(text, seconds):
    if seconds is None:
        assert parse_duration(text) is None
    else:
        assert parse_duration(text) == pytest.approx(seconds)


# Across providers.


@pytest.mark.parametrize(
    ("name", "setting"),
    [
        ("pagespeed", "PAGESPEED_API_KEY"),
        ("semrush", "SEMRUSH_API_KEY"),
        ("screenshot", "SCREENSHOTONE_ACCESS_KEY"),
        ("hunter", "HUNTER_API_KEY"),
        ("llm", "LLM_API_KEY"),
    ],
)
def test_blank_key_is_unavailable_without_a_request(replay_server, settings, name, setting):
    setattr(settings, setting, "  ")

    result, _ = call(name, replay_server)

    assert (result.error.code, kind(result.error), result.error.message) == (
        "key_missing",
        "unavailable",
        f"{setting} is not set",
    )
    assert replay_server.requests == []


@pytest.mark.parametrize("name", ["pagespeed", "semrush", "screenshot", "hunter", "llm"])
def test_error_pages_are_never_stored_as_messages(replay_server, name):
    page = "<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center>" + "x" * 5000
    replay_server.answer(name, 502, page, {"Content-Type": "text/html"})

    result, _ = call(name, replay_server)

    assert (result.error.code, kind(result.error), result.error.message) == (
        "http_502",
        "transient",
        "server error (HTTP 502)",
    )


def test_unavailable_provider_decides_the_reports_error(replay_server, lead_factory):
    """One lead meeting Hunter's used-up plan pauses the batch rather than failing for its site."""
    replay_server.answer("website", 200, payloads.WEBSITE, {"Content-Type": "text/html; charset=utf-8"})
    replay_server.answer("pagespeed", 400, fixture_bytes(PAGESPEED_FAILED_DOCUMENT), JSON)
    replay_server.answer("semrush", 200, fixture_bytes(SEMRUSH_SEOBOOK), TEXT)
    replay_server.answer("screenshot", 200, payloads.jpeg(), {"Content-Type": "image/jpeg"})
    replay_server.answer("hunter", 429, {"errors": [{"id": "too_many_requests", "code": 429}]})
    lead = lead_factory(website=f"{replay_server.base_url}/website/", email="")

    outcome = report_generate(lead=lead)

    assert outcome.report is None
    assert (outcome.error.provider, outcome.error.code, outcome.error.unavailable) == (
        "hunter",
        "plan_limit_reached",
        True,
    )
    # The LLM is not asked once a provider has failed; what was paid is logged.
    assert sorted(ProviderCall.objects.filter(lead=lead).values_list("provider", "status", "cost_usd")) == [
        ("hunter", "failed", Decimal("0")),
        ("pagespeed", "failed", Decimal("0")),
        ("screenshot", "succeeded", Decimal("0.02")),
        ("semrush", "succeeded", Decimal("0.08")),
        ("website", "succeeded", Decimal("0")),
    ]


# The lead's own problem: the report is still built (partial=True, as a batch asks for it).


def serve_all_but_pagespeed(server):
    server.answer("website", 200, payloads.WEBSITE, {"Content-Type": "text/html; charset=utf-8"})
    server.answer("semrush", 200, fixture_bytes(SEMRUSH_SEOBOOK), TEXT)
    server.answer("screenshot", 200, payloads.jpeg(), {"Content-Type": "image/jpeg"})
    server.answer("hunter", 200, fixture_bytes(HUNTER_STRIPE), JSON)
    server.answer("llm", 200, payloads.LLM)


def test_site_pagespeed_cannot_load_gives_a_report_without_that_section(replay_server, lead_factory):
    serve_all_but_pagespeed(replay_server)
    replay_server.answer("pagespeed", 400, fixture_bytes(PAGESPEED_FAILED_DOCUMENT), JSON)
    lead = lead_factory(website=f"{replay_server.base_url}/website/", email="")

    outcome = report_generate(lead=lead, partial=True)

    # The provider's codes stay in the warning, for staff; the report the prospect reads has none.
    note = "PageSpeed Insights could not load this site"
    assert outcome.error is None
    assert outcome.warnings == [
        {
            "provider": "pagespeed",
            "code": "failed_document_request",
            "message": "could not load this site (FAILED_DOCUMENT_REQUEST: net::ERR_TIMED_OUT) (HTTP 400)",
        }
    ]
    report = outcome.report
    assert report.scores == {}
    assert report.data["missing_sections"] == [
        {"provider": "pagespeed", "label": "PageSpeed Insights", "note": note}
    ]
    assert f"<li>{note}.</li>" in report.html
    assert "FAILED_DOCUMENT_REQUEST" not in report.html
    assert "<h2>Scores</h2>" not in report.html
    # The LLM was asked without Lighthouse facts; the failed call is logged and free.
    llm_request = next(request for request in replay_server.requests if request["provider"] == "llm")
    assert "Lighthouse" not in json.loads(llm_request["body"])["messages"][1]["content"]
    assert outcome.cost_usd == Decimal("0.200378")
    assert ProviderCall.objects.get(lead=lead, provider="pagespeed").status == "failed"


def test_without_partial_the_leads_own_problem_fails_it_without_retry(replay_server, lead_factory):
    serve_all_but_pagespeed(replay_server)
    replay_server.answer("pagespeed", 400, fixture_bytes(PAGESPEED_FAILED_DOCUMENT), JSON)
    lead = lead_factory(website=f"{replay_server.base_url}/website/", email="")

    outcome = report_generate(lead=lead)

    assert outcome.report is None
    assert (outcome.error.code, kind(outcome.error)) == ("failed_document_request", "lead")
    assert outcome.warnings == []


def test_partial_report_still_pauses_for_a_provider_unavailable_to_every_lead(replay_server, lead_factory):
    serve_all_but_pagespeed(replay_server)
    replay_server.answer("pagespeed", 400, fixture_bytes(PAGESPEED_FAILED_DOCUMENT), JSON)
    replay_server.answer("hunter", 429, {"errors": [{"id": "too_many_requests", "code": 429}]})
    lead = lead_factory(website=f"{replay_server.base_url}/website/", email="")

    outcome = report_generate(lead=lead, partial=True)

    assert outcome.report is None
    assert (outcome.error.provider, kind(outcome.error)) == ("hunter", "unavailable")
    assert outcome.warnings == []


def test_partial_report_retries_a_transient_llm_failure_not_the_leads_own(replay_server, lead_factory):
    serve_all_but_pagespeed(replay_server)
    replay_server.answer("pagespeed", 400, fixture_bytes(PAGESPEED_FAILED_DOCUMENT), JSON)
    replay_server.answer("llm", 503, {"error": {"message": "The server is overloaded."}})
    lead = lead_factory(website=f"{replay_server.base_url}/website/", email="")

    outcome = report_generate(lead=lead, partial=True)

    assert outcome.report is None
    assert (outcome.error.provider, outcome.error.code, kind(outcome.error)) == (
        "llm",
        "http_503",
        "transient",
    )

"""Every live provider against a local HTTP server replaying realistic payloads."""

import asyncio
import json
from decimal import Decimal

import httpx
import pytest

from reports.models import ProviderCall
from reports.pricing import call_cost
from reports.providers import PROVIDERS
from reports.providers.base import LeadInfo
from reports.providers.hunter import HunterData
from reports.providers.llm import LlmSummary
from reports.providers.pagespeed import PageSpeedData
from reports.providers.screenshot import ScreenshotData
from reports.providers.semrush import SemrushData
from reports.providers.website import WebsiteAudit
from reports.selectors import price_table
from reports.services import report_generate
from reports.tests import payloads

pytestmark = pytest.mark.django_db

SUCCESS_BODIES = {
    "pagespeed": (payloads.PAGESPEED, {}),
    "semrush": (payloads.SEMRUSH, {"Content-Type": "text/plain; charset=utf-8"}),
    "screenshot": (payloads.jpeg(), {"Content-Type": "image/jpeg"}),
    "hunter": (payloads.HUNTER, {}),
    "llm": (payloads.LLM, {}),
    "website": (payloads.WEBSITE, {"Content-Type": "text/html; charset=utf-8"}),
}
MALFORMED_BODIES = {
    "pagespeed": ('{"lighthouseResult": {"categories": ', {"Content-Type": "application/json"}),
    "semrush": ("<html>Bad gateway page</html>", {"Content-Type": "text/html"}),
    "screenshot": (b"\xff\xd8 not really a jpeg", {"Content-Type": "image/jpeg"}),
    "hunter": ('{"data": ', {"Content-Type": "application/json"}),
    "llm": ('{"choices": [', {"Content-Type": "application/json"}),
}
EXPECTED_PRICE = {
    "pagespeed": Decimal("0.03"),
    "semrush": Decimal("0.08"),
    "screenshot": Decimal("0.02"),
    "hunter": Decimal("0.10"),
    "website": Decimal("0"),
    # 1234 input tokens at $0.15/1M + 321 output tokens at $0.60/1M.
    "llm": Decimal("0.000378"),
}


def lead_info(server) -> LeadInfo:
    return LeadInfo(
        id=7,
        company_name="Smile Dental",
        website=f"{server.base_url}/website/",
        domain="smile-dental.com",
        email="",
        industry="Dentist",
        city="Austin",
        state="Texas",
    )


def call(name: str, server):
    async def go():
        async with httpx.AsyncClient() as client:
            return await PROVIDERS[name].call(client, lead_info(server), {})

    result = asyncio.run(go())
    price = price_table()[name]
    cost = call_cost(
        price,
        succeeded=result.succeeded,
        input_tokens=result.usage.input_tokens,
        output_tokens=result.usage.output_tokens,
    )
    return result, cost


@pytest.mark.parametrize("name", list(SUCCESS_BODIES))
def test_success_gives_typed_data_and_price(replay_server, name):
    body, headers = SUCCESS_BODIES[name]
    replay_server.answer(name, 200, body, headers)

    result, cost = call(name, replay_server)

    assert result.error is None
    assert result.http_status == 200
    assert cost == EXPECTED_PRICE[name]
    data = result.data
    if name == "pagespeed":
        assert isinstance(data, PageSpeedData)
        assert data.scores == {"performance": 42, "accessibility": 87, "best_practices": 96, "seo": 82}
        assert data.metrics == {"first-contentful-paint": "4.0 s", "largest-contentful-paint": "8.1 s"}
        assert [audit["id"] for audit in data.failed_audits] == [
            "image-alt",
            "render-blocking-resources",
            "largest-contentful-paint",
            "first-contentful-paint",
        ]
    elif name == "semrush":
        assert data == SemrushData(
            found=True,
            database="us",
            rank=1873422,
            organic_keywords=214,
            organic_traffic=389,
            organic_cost=1204.0,
            adwords_keywords=3,
            adwords_traffic=18,
            adwords_cost=45.0,
        )
    elif name == "screenshot":
        assert isinstance(data, ScreenshotData)
        assert (data.width, data.height, data.content_type) == (64, 40, "image/jpeg")
        from django.core.files.storage import default_storage

        assert default_storage.open(data.image_path).read() == body
    elif name == "hunter":
        assert isinstance(data, HunterData)
        assert data.organization == "Smile Dental"
        assert [email["value"] for email in data.emails] == [
            "maria@smile-dental.com",
            "info@smile-dental.com",
        ]
    elif name == "llm":
        assert data == LlmSummary(
            summary="Smile Dental loads slowly on phones.",
            top_issues=["Slow largest contentful paint (8.1 s)", "Images without alt text"],
            quick_wins=["Compress the hero image", "Add alt text to images"],
            model="test-model",
        )
        assert (result.usage.input_tokens, result.usage.output_tokens) == (1234, 321)
    elif name == "website":
        assert isinstance(data, WebsiteAudit)
        assert data.title == "Smile Dental | Family Dentist in Austin"
        assert data.meta_description == "Gentle family dentistry in Austin, TX."
        assert (data.h1, data.h1_count) == ("Smile Dental", 1)
        assert data.has_viewport is True
        assert (data.images_total, data.images_missing_alt) == (3, 2)
        assert data.page_bytes == len(payloads.WEBSITE.encode())
        assert data.https is False
        assert data.lang == "en-US"


def test_requests_use_the_live_formats(replay_server):
    for name, (body, headers) in SUCCESS_BODIES.items():
        replay_server.answer(name, 200, body, headers)
        call(name, replay_server)
    requests = {request["provider"]: request for request in replay_server.requests}

    pagespeed = requests["pagespeed"]
    assert pagespeed["path"] == "/pagespeed/runPagespeed"
    assert pagespeed["query"]["category"] == ["PERFORMANCE", "ACCESSIBILITY", "SEO", "BEST_PRACTICES"]
    assert pagespeed["query"]["strategy"] == ["mobile"]
    assert pagespeed["query"]["key"] == ["ps-key"]
    assert pagespeed["query"]["url"] == [f"{replay_server.base_url}/website/"]
    semrush = requests["semrush"]["query"]
    assert semrush["type"] == ["domain_ranks"]
    assert semrush["export_columns"] == ["Db,Dn,Rk,Or,Ot,Oc,Ad,At,Ac"]
    assert (semrush["domain"], semrush["key"]) == (["smile-dental.com"], ["sr-key"])
    assert semrush["database"] == ["us"]
    screenshot = requests["screenshot"]
    assert screenshot["path"] == "/screenshot/take"
    assert screenshot["query"]["access_key"] == ["so-key"]
    assert screenshot["query"]["format"] == ["jpg"]
    # Below the client's deadline (5 s in these tests), at least ScreenshotOne's minimum.
    assert screenshot["query"]["timeout"] == ["5"]
    assert (screenshot["query"]["viewport_width"], screenshot["query"]["viewport_height"]) == (
        ["1280"],
        ["800"],
    )
    hunter = requests["hunter"]
    assert hunter["path"] == "/hunter/domain-search"
    assert (hunter["query"]["domain"], hunter["query"]["api_key"]) == (["smile-dental.com"], ["hu-key"])
    llm = requests["llm"]
    assert llm["path"] == "/llm/chat/completions"
    body = json.loads(llm["body"])
    assert body["model"] == "test-model"
    assert body["max_tokens"] == 600
    assert [message["role"] for message in body["messages"]] == ["system", "user"]
    assert "Smile Dental" in body["messages"][1]["content"]


@pytest.mark.parametrize("name", list(SUCCESS_BODIES))
def test_timeout_is_transient_and_free(replay_server, name, settings):
    settings.PROVIDER_TIMEOUTS = {**settings.PROVIDER_TIMEOUTS, name: 0.2}
    body, headers = SUCCESS_BODIES[name]
    replay_server.answer(name, 200, body, headers, delay=1.0)

    result, cost = call(name, replay_server)

    assert result.error is not None
    assert (result.error.code, result.error.transient) == ("timeout", True)
    assert result.error.message == "no answer within 0.2 s"
    assert cost == Decimal("0")


@pytest.mark.parametrize("name", list(SUCCESS_BODIES))
def test_server_error_is_transient_and_free(replay_server, name):
    replay_server.answer(name, 500, {"error": {"code": 500, "message": "Internal error"}})

    result, cost = call(name, replay_server)

    assert (result.error.code, result.error.transient, result.error.http_status) == ("http_500", True, 500)
    assert result.error.unavailable is False
    assert result.error.retry_after is None
    assert cost == Decimal("0")


# Hunter's 429 is its plan used up, not a rate limit (see test_provider_contracts.py).
@pytest.mark.parametrize("name", [name for name in SUCCESS_BODIES if name != "hunter"])
def test_rate_limit_is_transient_with_retry_after(replay_server, name):
    replay_server.answer(name, 429, {"error": {"message": "Slow down"}}, {"Retry-After": "7"})

    result, cost = call(name, replay_server)

    assert (result.error.code, result.error.transient, result.error.http_status) == (
        "rate_limited",
        True,
        429,
    )
    assert result.error.retry_after == 7.0
    assert cost == Decimal("0")


@pytest.mark.parametrize("name", list(MALFORMED_BODIES))
def test_malformed_body_is_permanent_and_free(replay_server, name):
    body, headers = MALFORMED_BODIES[name]
    replay_server.answer(name, 200, body, headers)

    result, cost = call(name, replay_server)

    assert (result.error.code, result.error.transient) == ("bad_response", False)
    assert cost == Decimal("0")


def test_client_error_is_permanent(replay_server):
    replay_server.answer(
        "hunter", 400, {"errors": [{"id": "wrong_params", "code": 400, "details": "Invalid domain"}]}
    )

    result, _ = call("hunter", replay_server)

    assert (result.error.code, result.error.transient, result.error.unavailable) == ("http_400", False, False)
    assert result.error.message == "Invalid domain (HTTP 400)"


def test_semrush_error_text(replay_server):
    replay_server.answer("semrush", 200, "ERROR 120 :: WRONG KEY - ID PAIR")
    result, cost = call("semrush", replay_server)
    assert (result.error.code, result.error.transient, result.error.unavailable, result.error.message) == (
        "semrush_error_120",
        False,
        True,
        "WRONG KEY - ID PAIR",
    )
    assert cost == Decimal("0")

    replay_server.answer("semrush", 200, "ERROR 50 :: NOTHING FOUND")
    result, cost = call("semrush", replay_server)
    assert result.data == SemrushData(found=False)
    assert cost == Decimal("0.08")


def test_llm_prose_answer_is_kept_as_summary(replay_server):
    answer = json.loads(json.dumps(payloads.LLM))
    answer["choices"][0]["message"]["content"] = "The site is slow."
    replay_server.answer("llm", 200, answer)

    result, cost = call("llm", replay_server)

    assert result.data.summary == "The site is slow."
    assert cost == Decimal("0.000378")


def test_malformed_domain_is_refused_without_a_request(replay_server):
    info = LeadInfo(id=1, company_name="X", website="http://-bad-.example", domain="-bad-.example", email="")

    async def go():
        async with httpx.AsyncClient() as client:
            return await PROVIDERS["semrush"].call(client, info, {})

    result = asyncio.run(go())

    assert (result.error.code, result.error.transient) == ("malformed_domain", False)
    assert replay_server.requests == []


def test_full_report_in_live_mode_costs_the_price_list(replay_server, lead_factory):
    for name, (body, headers) in SUCCESS_BODIES.items():
        replay_server.answer(name, 200, body, headers)
    lead = lead_factory(website=f"{replay_server.base_url}/website/", email="")

    outcome = report_generate(lead=lead)

    assert outcome.error is None
    assert outcome.cost_usd == Decimal("0.230378")
    assert outcome.cost_breakdown == {
        "website": "0.000000",
        "pagespeed": "0.030000",
        "semrush": "0.080000",
        "screenshot": "0.020000",
        "hunter": "0.100000",
        "llm": "0.000378",
    }
    assert outcome.report.cost_usd == Decimal("0.230378")
    calls = ProviderCall.objects.filter(lead=lead)
    assert sorted(calls.values_list("provider", "status")) == sorted(
        (name, "succeeded") for name in SUCCESS_BODIES
    )
    assert calls.get(provider="llm").input_tokens == 1234

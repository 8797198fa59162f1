"""PageSpeed Insights v5 (`runPagespeed`): Lighthouse category scores and the audits that failed."""

from dataclasses import dataclass, field
from datetime import timedelta

import httpx
from django.conf import settings

from reports.models import Provider
from reports.providers.base import BaseProvider, LeadInfo, ResultData, Usage

CATEGORIES = ("performance", "accessibility", "seo", "best-practices")
METRICS = (
    "first-contentful-paint",
    "largest-contentful-paint",
    "total-blocking-time",
    "cumulative-layout-shift",
    "speed-index",
)
MAX_FAILED_AUDITS = 12


@dataclass
class PageSpeedData(ResultData):
    # Category scores 0-100 keyed performance, accessibility, seo, best_practices.
    scores: dict[str, int]
    # Lab metrics as Lighthouse displays them, e.g. {"largest-contentful-paint": "4.1 s"}.
    metrics: dict[str, str] = field(default_factory=dict)
    # Failed audits, worst first: {"id", "title", "score" (0-100), "display_value"}.
    failed_audits: list[dict] = field(default_factory=list)
    final_url: str = ""


class PageSpeedProvider(BaseProvider):
    name = Provider.PAGESPEED.value
    ttl = timedelta(days=7)
    result_type = PageSpeedData
    default_base_url = "https://www.googleapis.com/pagespeedonline/v5"

    def build_request(self, lead: LeadInfo, context) -> httpx.Request:
        params = [("url", lead.website)]
        params += [
            ("category", category) for category in ("PERFORMANCE", "ACCESSIBILITY", "SEO", "BEST_PRACTICES")
        ]
        params.append(("strategy", "mobile"))
        params.append(("key", settings.PAGESPEED_API_KEY))
        return httpx.Request("GET", f"{self.base_url()}/runPagespeed", params=params)

    def parse(self, response: httpx.Response, lead: LeadInfo) -> tuple[PageSpeedData, Usage]:
        body = response.json()
        result = body["lighthouseResult"]
        categories = result["categories"]
        scores = {}
        for category in CATEGORIES:
            score = categories.get(category, {}).get("score")
            if score is not None:
                scores[category.replace("-", "_")] = round(float(score) * 100)
        if not scores:
            raise self.error("bad_response", "No category scores in the Lighthouse result")
        audits = result.get("audits", {})
        metrics = {key: str(audits[key].get("displayValue", "")) for key in METRICS if key in audits}
        failed = []
        for audit_id, audit in audits.items():
            score = audit.get("score")
            if audit.get("scoreDisplayMode") in {"informative", "notApplicable", "manual", "error"}:
                continue
            if score is None or float(score) >= 0.9:
                continue
            failed.append(
                {
                    "id": audit_id,
                    "title": str(audit.get("title", audit_id))[:200],
                    "score": round(float(score) * 100),
                    "display_value": str(audit.get("displayValue", ""))[:100],
                }
            )
        failed.sort(key=lambda item: (item["score"], item["id"]))
        return (
            PageSpeedData(
                scores=scores,
                metrics=metrics,
                failed_audits=failed[:MAX_FAILED_AUDITS],
                final_url=str(result.get("finalUrl", "")),
            ),
            Usage(),
        )

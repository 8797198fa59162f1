"""PageSpeed Insights v5 (`runPagespeed`): Lighthouse category scores and the audits that failed.

A run takes 20-60 s and more (PROVIDER_TIMEOUTS gives it 120 s). Its errors, as Google answers them:
400 `FAILED_DOCUMENT_REQUEST` and 500 `ERRORED_DOCUMENT_REQUEST` (Lighthouse errors) when the lead's
site cannot be loaded, which retrying does not change; 400 `API_KEY_INVALID` for a bad key; 429
`RESOURCE_EXHAUSTED` for a used-up quota: the daily one (or none at all without a key) is ours for
every lead, the per-minute one passes.
"""

import re
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
from django.conf import settings

from reports.models import Provider
from reports.providers.base import (
    BaseProvider,
    LeadInfo,
    ProviderError,
    ResultData,
    Usage,
    json_body,
    json_error,
    one_line,
)

CATEGORIES = ("performance", "accessibility", "seo", "best-practices")
METRICS = (
    "first-contentful-paint",
    "largest-contentful-paint",
    "total-blocking-time",
    "cumulative-layout-shift",
    "speed-index",
)
MAX_FAILED_AUDITS = 12
# Lighthouse's names for a page it could not load or measure: the lead's site, not the service.
SITE_ERRORS = (
    "FAILED_DOCUMENT_REQUEST",
    "ERRORED_DOCUMENT_REQUEST",
    "DNS_FAILURE",
    "NO_FCP",
    "PAGE_HUNG",
    "DOCUMENT_NOT_FOUND",
    "INSECURE_DOCUMENT_REQUEST",
    "NOT_HTML",
)
_LIGHTHOUSE_ERROR = re.compile(r"Lighthouse returned error: ([A-Z_]+)")
_DETAILS = re.compile(r"\(Details: ([^)]*)\)")
KEY_ERRORS = {"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED", "SERVICE_DISABLED"}


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
    key_setting = "PAGESPEED_API_KEY"

    def build_request(self, lead: LeadInfo, context) -> httpx.Request:
        params = [("url", lead.website)]
        params += [
            ("category", category) for category in ("PERFORMANCE", "ACCESSIBILITY", "SEO", "BEST_PRACTICES")
        ]
        params.append(("strategy", "mobile"))
        params.append(("key", settings.PAGESPEED_API_KEY))
        return httpx.Request("GET", f"{self.base_url()}/runPagespeed", params=params)

    def classify(self, response: httpx.Response) -> ProviderError | None:
        status = response.status_code
        if status < 400:
            return None
        error = json_error(response)
        message = str(error.get("message") or "")
        reasons = {str(item.get("reason")) for item in error.get("errors") or [] if isinstance(item, dict)}
        infos = [
            item
            for item in error.get("details") or []
            if isinstance(item, dict) and item.get("@type", "").endswith("google.rpc.ErrorInfo")
        ]
        info_reasons = {str(item.get("reason")) for item in infos}
        lighthouse = _LIGHTHOUSE_ERROR.search(message)
        if lighthouse or "lighthouseUserError" in reasons:
            name = lighthouse.group(1) if lighthouse else "lighthouseUserError"
            if name in SITE_ERRORS or "lighthouseUserError" in reasons:
                details = _DETAILS.search(message)
                why = f"{name}: {details.group(1)}" if details else name
                return self.failure(response, name.lower(), one_line(f"could not load this site ({why})"))
        if info_reasons & KEY_ERRORS or status in (401, 403):
            reason = next(iter(sorted(info_reasons & KEY_ERRORS)), "") or f"HTTP {status}"
            return self.failure(
                response, "key_rejected", one_line(f"key rejected ({reason}): {message}"), unavailable=True
            )
        if status == 429:
            metadata = [item.get("metadata") or {} for item in infos]
            keyless = any(str(item.get("quota_limit_value")) == "0" for item in metadata)
            daily = any("PerDay" in str(item.get("quota_limit", "")) for item in metadata) or (
                "per day" in message.lower()
            )
            if keyless:
                return self.failure(
                    response,
                    "quota_exhausted",
                    "no quota for this project: is the API key set?",
                    unavailable=True,
                )
            if daily:
                return self.failure(response, "quota_exhausted", "daily quota used up", unavailable=True)
        return super().classify(response)

    def parse(self, response: httpx.Response, lead: LeadInfo) -> tuple[PageSpeedData, Usage]:
        body = json_body(response)
        result = body["lighthouseResult"]
        runtime = (result.get("runtimeError") or {}).get("code")
        if runtime and runtime != "NO_ERROR":
            raise self.error(str(runtime).lower(), one_line(f"could not load this site ({runtime})"))
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
        # Only the audits of the categories asked for (an answer may carry others, e.g. PWA).
        asked = {
            ref["id"]
            for category in CATEGORIES
            for ref in categories.get(category, {}).get("auditRefs") or []
            if isinstance(ref, dict) and "id" in ref
        }
        failed = []
        for audit_id, audit in audits.items():
            if asked and audit_id not in asked:
                continue
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

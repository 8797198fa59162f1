"""Hunter domain search: the public email addresses found for a domain (for leads without an email).

Hunter's statuses (its API docs): 401 a bad key; 403 the rate limit (15 requests/s, 500/min for Domain
Search) reached, slow down; 429 the plan's usage limit reached, no more calls until it renews or is
upgraded. No Retry-After is documented for either.
"""

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
    one_line,
)

MAX_EMAILS = 10
# Hunter asks to slow down without saying for how long; a few seconds clears a per-second limit and
# the backoff of further attempts grows from there.
SLOW_DOWN_SECONDS = 5.0


@dataclass
class HunterData(ResultData):
    organization: str = ""
    pattern: str = ""
    # {"value", "type" (personal/generic), "confidence" (0-100), "first_name", "last_name", "position"}
    emails: list[dict] = field(default_factory=list)
    # How many addresses Hunter knows for the domain (`meta.results`), of which `emails` are the first.
    results: int = 0


class HunterProvider(BaseProvider):
    name = Provider.HUNTER.value
    ttl = timedelta(days=30)
    result_type = HunterData
    default_base_url = "https://api.hunter.io/v2"
    key_setting = "HUNTER_API_KEY"

    def applies(self, *, has_website: bool, has_email: bool) -> bool:
        return has_website and not has_email

    def build_request(self, lead: LeadInfo, context) -> httpx.Request:
        params = {"domain": lead.domain, "api_key": settings.HUNTER_API_KEY, "limit": MAX_EMAILS}
        return httpx.Request("GET", f"{self.base_url()}/domain-search", params=params)

    def error_message(self, response: httpx.Response) -> str:
        try:
            errors = json_body(response).get("errors") or []
            return one_line("; ".join(str(error.get("details") or error.get("id")) for error in errors))
        except (ValueError, AttributeError, TypeError):
            return one_line(response.text)

    def classify(self, response: httpx.Response) -> ProviderError | None:
        status = response.status_code
        if status == 403:
            return self.failure(
                response,
                "rate_limited",
                "rate limit reached, slowing down",
                transient=True,
                retry_after=self.retry_after(response) or SLOW_DOWN_SECONDS,
            )
        if status == 429:
            return self.failure(response, "plan_limit_reached", "plan usage limit reached", unavailable=True)
        return super().classify(response)

    def parse(self, response: httpx.Response, lead: LeadInfo) -> tuple[HunterData, Usage]:
        body = json_body(response)
        data = body["data"]
        emails = []
        for item in data.get("emails") or []:
            if not item.get("value"):
                continue
            emails.append(
                {
                    "value": str(item["value"])[:254],
                    "type": str(item.get("type") or ""),
                    "confidence": int(item.get("confidence") or 0),
                    "first_name": str(item.get("first_name") or ""),
                    "last_name": str(item.get("last_name") or ""),
                    "position": str(item.get("position") or ""),
                }
            )
        emails.sort(key=lambda email: (-email["confidence"], email["value"]))
        return (
            HunterData(
                organization=str(data.get("organization") or ""),
                pattern=str(data.get("pattern") or ""),
                emails=emails[:MAX_EMAILS],
                results=int((body.get("meta") or {}).get("results") or len(emails)),
            ),
            Usage(),
        )

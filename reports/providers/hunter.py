"""Hunter domain search: the public email addresses found for a domain (for leads without an email)."""

from dataclasses import dataclass, field
from datetime import timedelta

import httpx
from django.conf import settings

from reports.models import Provider
from reports.providers.base import BaseProvider, LeadInfo, ResultData, Usage

MAX_EMAILS = 10


@dataclass
class HunterData(ResultData):
    organization: str = ""
    pattern: str = ""
    # {"value", "type" (personal/generic), "confidence" (0-100), "first_name", "last_name", "position"}
    emails: list[dict] = field(default_factory=list)


class HunterProvider(BaseProvider):
    name = Provider.HUNTER.value
    ttl = timedelta(days=30)
    result_type = HunterData
    default_base_url = "https://api.hunter.io/v2"

    def applies(self, *, has_website: bool, has_email: bool) -> bool:
        return has_website and not has_email

    def build_request(self, lead: LeadInfo, context) -> httpx.Request:
        params = {"domain": lead.domain, "api_key": settings.HUNTER_API_KEY, "limit": MAX_EMAILS}
        return httpx.Request("GET", f"{self.base_url()}/domain-search", params=params)

    def error_message(self, response: httpx.Response) -> str:
        try:
            errors = response.json().get("errors") or []
            return "; ".join(str(error.get("details") or error.get("id")) for error in errors)[:200]
        except (ValueError, AttributeError):
            return response.text[:200]

    def parse(self, response: httpx.Response, lead: LeadInfo) -> tuple[HunterData, Usage]:
        data = response.json()["data"]
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
            ),
            Usage(),
        )

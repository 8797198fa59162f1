"""OpenAI-compatible chat completions: a short audit summary, top issues and quick wins as JSON.

The prompt is cut to LLM_MAX_INPUT_TOKENS (counted as UTF-8 bytes, an upper bound for any byte-level
tokenizer) and `max_tokens` is LLM_MAX_OUTPUT_TOKENS, so the cost of one call is bounded.
"""

import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from django.conf import settings

from reports.models import Provider
from reports.pricing import LLM_MAX_INPUT_TOKENS, LLM_MAX_OUTPUT_TOKENS
from reports.providers.base import BaseProvider, LeadInfo, ResultData, Usage

# Chat framing costs a few tokens per message on top of the text.
MESSAGE_OVERHEAD_TOKENS = 16
MAX_ITEMS = 5

SYSTEM_PROMPT = (
    "You are a website and local-marketing auditor writing for a small-business owner. "
    "From the audit facts, answer with one JSON object: "
    '{"summary": "<3-4 plain sentences>", "top_issues": ["<issue>", ...], "quick_wins": ["<action>", ...]} '
    "with at most 5 items per list. Be concrete and do not invent facts."
)


@dataclass
class LlmSummary(ResultData):
    summary: str
    top_issues: list[str] = field(default_factory=list)
    quick_wins: list[str] = field(default_factory=list)
    model: str = ""


def _facts(lead: LeadInfo, context: dict[str, Any]) -> str:
    lines = [f"Business: {lead.company_name}"]
    if lead.industry:
        lines.append(f"Industry: {lead.industry}")
    if lead.city or lead.state:
        lines.append(f"Location: {', '.join(part for part in (lead.city, lead.state) if part)}")
    lines.append(f"Website: {lead.website or 'none'}")
    website = context.get(Provider.WEBSITE)
    if website is not None:
        lines.append(
            f"Homepage: HTTP {website.status_code}, {'HTTPS' if website.https else 'no HTTPS'}, "
            f"{website.response_time_ms} ms, {website.page_bytes} bytes, title {website.title!r}, "
            f"meta description {'present' if website.meta_description else 'missing'}, "
            f"{website.h1_count} h1, viewport {'set' if website.has_viewport else 'missing'}, "
            f"{website.images_missing_alt} of {website.images_total} images without alt text"
        )
    pagespeed = context.get(Provider.PAGESPEED)
    if pagespeed is not None:
        lines.append("Lighthouse scores: " + ", ".join(f"{k} {v}" for k, v in pagespeed.scores.items()))
        lines.extend(
            f"Failed audit: {audit['title']} {audit['display_value']}".rstrip()
            for audit in pagespeed.failed_audits
        )
    semrush = context.get(Provider.SEMRUSH)
    if semrush is not None:
        if semrush.found:
            lines.append(
                f"Search: rank {semrush.rank}, {semrush.organic_keywords} organic keywords, "
                f"{semrush.organic_traffic} monthly organic visits, {semrush.adwords_keywords} paid keywords"
            )
        else:
            lines.append("Search: no search visibility data for this domain")
    hunter = context.get(Provider.HUNTER)
    if hunter is not None:
        lines.append(f"Public email addresses found: {len(hunter.emails)}")
    return "\n".join(lines)


def truncate_utf8(text: str, max_bytes: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", errors="ignore")


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [str(item).strip()[:300] for item in value if str(item).strip()][:MAX_ITEMS]


class LlmProvider(BaseProvider):
    name = Provider.LLM.value
    ttl = timedelta(days=7)
    result_type = LlmSummary
    per_lead = True
    needs_domain = False

    def applies(self, *, has_website: bool, has_email: bool) -> bool:
        return True

    def base_url(self) -> str:
        overrides = getattr(settings, "PROVIDER_BASE_URLS", None) or {}
        return (overrides.get(self.name) or settings.LLM_BASE_URL).rstrip("/")

    def messages(self, lead: LeadInfo, context: dict[str, Any]) -> list[dict[str, str]]:
        budget = LLM_MAX_INPUT_TOKENS - MESSAGE_OVERHEAD_TOKENS - len(SYSTEM_PROMPT.encode("utf-8"))
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": truncate_utf8(_facts(lead, context), budget)},
        ]

    def build_request(self, lead: LeadInfo, context) -> httpx.Request:
        body = {
            "model": settings.LLM_MODEL,
            "messages": self.messages(lead, context),
            "max_tokens": LLM_MAX_OUTPUT_TOKENS,
            "temperature": 0.2,
            "response_format": {"type": "json_object"},
            # OpenAI's end-user identifier; it also lets the sandbox answer per lead.
            "user": f"lead-{lead.id}",
        }
        headers = {"Authorization": f"Bearer {settings.LLM_API_KEY}"}
        return httpx.Request("POST", f"{self.base_url()}/chat/completions", json=body, headers=headers)

    def parse(self, response: httpx.Response, lead: LeadInfo) -> tuple[LlmSummary, Usage]:
        body = response.json()
        content = body["choices"][0]["message"]["content"] or ""
        usage = body.get("usage") or {}
        if "prompt_tokens" in usage and "completion_tokens" in usage:
            tokens = Usage(int(usage["prompt_tokens"]), int(usage["completion_tokens"]))
        else:
            # No usage reported: bill the bounds rather than nothing.
            tokens = Usage(LLM_MAX_INPUT_TOKENS, LLM_MAX_OUTPUT_TOKENS)
        text = content.strip()
        if text.startswith("```"):
            text = text.strip("`").removeprefix("json").strip()
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            # Plain prose instead of the JSON asked for: still a usable summary.
            return LlmSummary(summary=content.strip()[:2000], model=str(body.get("model", ""))), tokens
        return (
            LlmSummary(
                summary=str(answer.get("summary", "")).strip()[:2000],
                top_issues=_strings(answer.get("top_issues")),
                quick_wins=_strings(answer.get("quick_wins")),
                model=str(body.get("model", "")),
            ),
            tokens,
        )

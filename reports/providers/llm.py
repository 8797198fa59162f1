"""OpenAI-compatible chat completions: a short audit summary, top issues and quick wins as JSON.

The prompt is cut to LLM_MAX_INPUT_TOKENS (counted as UTF-8 bytes, an upper bound for any byte-level
tokenizer) and `max_tokens` is LLM_MAX_OUTPUT_TOKENS, so the cost of one call is bounded.

HTTP 429 means one of two things (error.code): `rate_limit_exceeded` passes, after what the
`retry-after` / `x-ratelimit-reset-*` headers say; `insufficient_quota` is an account without credit,
ours for every lead. An answer without text (`content` null: tool calls, refusals) or without the
summary asked for is an error, never an empty summary.
"""

import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from django.conf import settings

from reports.models import Provider
from reports.pricing import LLM_MAX_INPUT_TOKENS, LLM_MAX_OUTPUT_TOKENS
from reports.providers.base import (
    BaseProvider,
    LeadInfo,
    ProviderError,
    ResultData,
    Usage,
    json_body,
    json_error,
    one_line,
    parse_duration,
    parse_retry_after,
)

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
    key_setting = "LLM_API_KEY"

    def applies(self, *, has_website: bool, has_email: bool) -> bool:
        return True

    def base_url(self) -> str:
        overrides = getattr(settings, "PROVIDER_BASE_URLS", None) or {}
        return (overrides.get(self.name) or settings.LLM_BASE_URL).rstrip("/")

    def leads_own(self, error: ProviderError) -> bool:
        # The summary is the report's core: without it there is no report to build.
        return False

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

    def retry_after(self, response: httpx.Response) -> float | None:
        """`retry-after`, else the reset of the exhausted limit (requests or tokens), else the longer."""
        headers = response.headers
        seconds = parse_retry_after(headers.get("retry-after"))
        if seconds is not None:
            return seconds
        resets = {
            kind: parse_duration(headers.get(f"x-ratelimit-reset-{kind}")) for kind in ("requests", "tokens")
        }
        exhausted = [
            value
            for kind, value in resets.items()
            if value is not None and headers.get(f"x-ratelimit-remaining-{kind}", "").strip() == "0"
        ]
        known = exhausted or [value for value in resets.values() if value is not None]
        return max(known) if known else None

    def classify(self, response: httpx.Response) -> ProviderError | None:
        status = response.status_code
        if status < 400:
            return None
        error = json_error(response)
        code = str(error.get("code") or error.get("type") or "")
        if code == "insufficient_quota" or error.get("type") == "insufficient_quota":
            return self.failure(response, "insufficient_quota", "account out of credit", unavailable=True)
        if status == 429:
            return self.failure(
                response,
                "rate_limited",
                "rate limit reached",
                transient=True,
                retry_after=self.retry_after(response),
            )
        if status == 404 and code == "model_not_found":
            return self.failure(
                response, "model_not_found", f"model {settings.LLM_MODEL!r} not found", unavailable=True
            )
        return super().classify(response)

    def parse(self, response: httpx.Response, lead: LeadInfo) -> tuple[LlmSummary, Usage]:
        body = json_body(response)
        choices = body.get("choices") if isinstance(body, dict) else None
        if not choices or not isinstance(choices[0], dict):
            raise self.error("bad_response", "answer without choices")
        choice = choices[0]
        message = choice.get("message") or {}
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            if message.get("refusal"):
                raise self.error("bad_response", one_line(f"the model refused: {message['refusal']}"))
            finish = choice.get("finish_reason") or "unknown"
            raise self.error("bad_response", f"answer without text (finish_reason {finish})")
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
        summary = answer.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            raise self.error(
                "bad_response", one_line(f"answer without a summary (fields: {', '.join(sorted(answer))})")
            )
        return (
            LlmSummary(
                summary=summary.strip()[:2000],
                top_issues=_strings(answer.get("top_issues")),
                quick_wins=_strings(answer.get("quick_wins")),
                model=str(body.get("model", "")),
            ),
            tokens,
        )

"""What a report says, computed from the providers' data (pure: no ORM, no HTTP).

`report_content` turns the providers' dataclasses into the JSON-ready dict stored in Report.data and
rendered by reports/jinja2/reports/report.html: scores, top issues, quick wins, SEO snapshot, screenshot,
summary, contacts and the data sources with their dates.
"""

import re
from datetime import datetime
from typing import Any

from reports.models import Provider
from reports.providers.base import LeadInfo

CATEGORY_LABELS = {
    "performance": "Performance",
    "accessibility": "Accessibility",
    "seo": "SEO",
    "best_practices": "Best practices",
}
SLOW_RESPONSE_MS = 1500
HEAVY_PAGE_BYTES = 2_000_000
MAX_TOP_ISSUES = 8
MAX_QUICK_WINS = 6


def _website_checks(audit) -> tuple[int, list[dict[str, str]], list[str]]:
    """Health score 0-100 of the homepage basics, the issues found and the fixes that are quick."""
    issues: list[dict[str, str]] = []
    wins: list[str] = []
    score = 100

    def issue(penalty: int, severity: str, title: str, detail: str, win: str | None = None):
        nonlocal score
        score -= penalty
        issues.append({"severity": severity, "title": title, "detail": detail})
        if win:
            wins.append(win)

    if audit.status_code >= 400:
        issue(40, "high", f"Homepage answers HTTP {audit.status_code}", "Visitors may see an error page.")
    if not audit.https:
        issue(
            25,
            "high",
            "No HTTPS",
            "Browsers mark the site as not secure.",
            "Serve the site over HTTPS and redirect HTTP to it.",
        )
    if not audit.title:
        issue(
            15, "high", "Missing page title", "Search results show no useful headline.", "Add a page title."
        )
    if not audit.meta_description:
        issue(
            10,
            "medium",
            "Missing meta description",
            "Search engines pick a random snippet.",
            "Write a one-sentence meta description.",
        )
    if audit.h1_count == 0:
        issue(8, "medium", "No main heading (h1)", "The page has no clear headline.", "Add one h1 heading.")
    elif audit.h1_count > 1:
        issue(3, "low", f"{audit.h1_count} main headings (h1)", "One h1 per page reads best.")
    if not audit.has_viewport:
        issue(
            15,
            "high",
            "Not mobile friendly",
            "No viewport meta tag: phones show a shrunken desktop page.",
            "Add the viewport meta tag.",
        )
    if audit.images_missing_alt:
        issue(
            min(10, audit.images_missing_alt * 2),
            "medium",
            f"{audit.images_missing_alt} of {audit.images_total} images without alt text",
            "Screen readers and image search cannot describe them.",
            "Add alt text to every image.",
        )
    if audit.response_time_ms > SLOW_RESPONSE_MS:
        issue(10, "medium", "Slow server response", f"The homepage took {audit.response_time_ms} ms.")
    if audit.page_bytes > HEAVY_PAGE_BYTES:
        issue(10, "medium", "Heavy homepage", f"The HTML alone weighs {audit.page_bytes // 1024} KiB.")
    return max(0, score), issues, wins


# The provider's codes and HTTP status at the end of a reason: for staff (the lead's warnings), not for
# the prospect who reads the report.
_DETAIL_SUFFIX = re.compile(r"(\s*\([^()]*\))+$")


def _missing_note(label: str, reason: str) -> str:
    """What the report says of a missing section, e.g. "PageSpeed Insights could not load this site":
    the adapters' own "could not ..." sentence without the provider's codes, else a plain sentence
    (other reasons are technical: a resolver's or a provider's message, for staff only)."""
    reason = _DETAIL_SUFFIX.sub("", reason).strip()
    if reason.startswith("could not"):
        return f"{label} {reason}"
    return f"{label} could not check this site"


def grade(score: int | None) -> str:
    if score is None:
        return "-"
    if score >= 90:
        return "A"
    if score >= 75:
        return "B"
    if score >= 50:
        return "C"
    return "D"


def report_content(
    *,
    lead: LeadInfo,
    data: dict[str, Any],
    fetched_at: dict[str, datetime],
    cached: set[str],
    generated_at: datetime,
    provider_mode: str,
    missing: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The report's content. `data` maps provider names to their dataclasses (only those that ran);
    `missing` the providers that could not serve this lead to the reason, marked in the report."""
    from reports.providers import PROVIDERS

    website = data.get(Provider.WEBSITE)
    pagespeed = data.get(Provider.PAGESPEED)
    semrush = data.get(Provider.SEMRUSH)
    screenshot = data.get(Provider.SCREENSHOT)
    hunter = data.get(Provider.HUNTER)
    summary = data.get(Provider.LLM)

    scores: dict[str, int] = {}
    top_issues: list[dict[str, str]] = []
    quick_wins: list[str] = []
    if pagespeed is not None:
        scores.update({key: pagespeed.scores[key] for key in CATEGORY_LABELS if key in pagespeed.scores})
    health = None
    if website is not None:
        health, issues, wins = _website_checks(website)
        top_issues.extend(issues)
        quick_wins.extend(wins)
    if pagespeed is not None:
        top_issues.extend(
            {
                "severity": "high" if audit["score"] < 50 else "medium",
                "title": audit["title"],
                "detail": audit["display_value"] or f"Lighthouse score {audit['score']}",
            }
            for audit in pagespeed.failed_audits
        )
    parts = [*scores.values(), *([health] if health is not None else [])]
    overall = round(sum(parts) / len(parts)) if parts else None
    severity_order = {"high": 0, "medium": 1, "low": 2}
    top_issues.sort(key=lambda item: severity_order[item["severity"]])
    if summary is not None:
        for win in summary.quick_wins:
            if win not in quick_wins:
                quick_wins.append(win)

    seo: dict[str, Any] = {}
    if website is not None:
        seo.update(
            title=website.title,
            meta_description=website.meta_description,
            h1=website.h1,
            https=website.https,
            mobile_viewport=website.has_viewport,
            response_time_ms=website.response_time_ms,
            page_kib=round(website.page_bytes / 1024, 1),
            status_code=website.status_code,
        )
    if semrush is not None:
        seo.update(
            search_data_found=semrush.found,
            search_rank=semrush.rank,
            organic_keywords=semrush.organic_keywords,
            organic_traffic=semrush.organic_traffic,
            organic_cost=semrush.organic_cost,
            paid_keywords=semrush.adwords_keywords,
        )

    return {
        "company_name": lead.company_name,
        "website": lead.website,
        "domain": lead.domain,
        "industry": lead.industry,
        "location": ", ".join(part for part in (lead.city, lead.state) if part),
        "generated_at": generated_at.isoformat(),
        "provider_mode": provider_mode,
        "overall_score": overall,
        "grade": grade(overall),
        "website_health": health,
        "scores": scores,
        "metrics": dict(pagespeed.metrics) if pagespeed is not None else {},
        "top_issues": top_issues[:MAX_TOP_ISSUES],
        "llm_top_issues": list(summary.top_issues) if summary is not None else [],
        "quick_wins": quick_wins[:MAX_QUICK_WINS],
        "summary": summary.summary if summary is not None else "",
        "seo": seo,
        "screenshot": screenshot.to_dict() if screenshot is not None else None,
        "emails": list(hunter.emails) if hunter is not None else [],
        "missing_sections": [
            {
                "provider": name,
                "label": PROVIDERS[name].label,
                "note": _missing_note(PROVIDERS[name].label, reason),
            }
            for name, reason in sorted(
                (missing or {}).items(), key=lambda item: list(PROVIDERS).index(item[0])
            )
        ],
        "sources": [
            {
                "provider": name,
                "label": PROVIDERS[name].label,
                "fetched_at": fetched_at[name].isoformat(),
                "cached": name in cached,
            }
            for name in PROVIDERS
            if name in data
        ],
    }

"""SEMrush domain overview (`type=domain_ranks`): semicolon-separated text, errors as `ERROR nn :: ...`."""

from dataclasses import dataclass
from datetime import timedelta

import httpx
from django.conf import settings

from reports.models import Provider
from reports.providers.base import BaseProvider, LeadInfo, ResultData, Usage

EXPORT_COLUMNS = "Db,Dn,Rk,Or,Ot,Oc,Ad,At,Ac"
HEADERS = {
    "Database": "database",
    "Domain": "domain",
    "Rank": "rank",
    "Organic Keywords": "organic_keywords",
    "Organic Traffic": "organic_traffic",
    "Organic Cost": "organic_cost",
    "Adwords Keywords": "adwords_keywords",
    "Adwords Traffic": "adwords_traffic",
    "Adwords Cost": "adwords_cost",
}
NOTHING_FOUND = 50


@dataclass
class SemrushData(ResultData):
    found: bool
    database: str = ""
    rank: int | None = None
    organic_keywords: int = 0
    organic_traffic: int = 0
    organic_cost: float = 0.0
    adwords_keywords: int = 0
    adwords_traffic: int = 0
    adwords_cost: float = 0.0


class SemrushProvider(BaseProvider):
    name = Provider.SEMRUSH.value
    ttl = timedelta(days=30)
    result_type = SemrushData
    default_base_url = "https://api.semrush.com"

    def build_request(self, lead: LeadInfo, context) -> httpx.Request:
        params = {
            "type": "domain_ranks",
            "key": settings.SEMRUSH_API_KEY,
            "export_columns": EXPORT_COLUMNS,
            "domain": lead.domain,
        }
        return httpx.Request("GET", f"{self.base_url()}/", params=params)

    def error_message(self, response: httpx.Response) -> str:
        return response.text.strip()[:200]

    def parse(self, response: httpx.Response, lead: LeadInfo) -> tuple[SemrushData, Usage]:
        text = response.text.strip()
        if text.startswith("ERROR"):
            number_text, _, message = text.removeprefix("ERROR").partition("::")
            number = int(number_text.strip()) if number_text.strip().isdigit() else 0
            if number == NOTHING_FOUND:
                # A domain SEMrush knows nothing about: a valid answer (and a finding for the report).
                return SemrushData(found=False), Usage()
            raise self.error(f"semrush_error_{number}", message.strip() or text)
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            raise self.error("bad_response", "Expected a header line and a data line")
        header = [name.strip() for name in lines[0].split(";")]
        values = [value.strip() for value in lines[1].split(";")]
        if len(header) != len(values) or not set(HEADERS) <= set(header):
            raise self.error("bad_response", "Unexpected columns in the domain overview")
        row = {HEADERS[name]: value for name, value in zip(header, values, strict=True) if name in HEADERS}
        return (
            SemrushData(
                found=True,
                database=row["database"],
                rank=int(row["rank"]) if row["rank"] else None,
                organic_keywords=int(row["organic_keywords"] or 0),
                organic_traffic=int(row["organic_traffic"] or 0),
                organic_cost=float(row["organic_cost"] or 0),
                adwords_keywords=int(row["adwords_keywords"] or 0),
                adwords_traffic=int(row["adwords_traffic"] or 0),
                adwords_cost=float(row["adwords_cost"] or 0),
            ),
            Usage(),
        )

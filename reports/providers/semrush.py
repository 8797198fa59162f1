"""SEMrush domain overview (`type=domain_ranks`): semicolon-separated text, errors as `ERROR nn :: ...`.

Without `database` SEMrush answers one row per regional database (alphabetically, `ar` first), and it
bills per line of the answer, so the request names one database (SEMRUSH_DATABASE) and the row is read
by its `Database` column, every value by its header. `ERROR 50 :: NOTHING FOUND` is an answer (the
domain has no search data). Errors arrive as text, with HTTP 200 or an error status; the ones about the
key, the API units balance or the subscription are ours for every lead.
"""

import csv
from dataclasses import dataclass
from datetime import timedelta

import httpx
from django.conf import settings

from reports.models import Provider
from reports.providers.base import BaseProvider, LeadInfo, ProviderError, ResultData, Usage, one_line

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
# ERROR 120-135: wrong or malformed key, API disabled, API units balance zero (132), database access
# denied, total limit exceeded, report type disabled: the account, not the lead.
ACCOUNT_ERRORS = range(120, 136)
# ERROR 131 LIMIT EXCEEDED: too many requests at once; it passes.
RATE_ERRORS = {131}


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


def _error_number(text: str) -> tuple[int, str] | None:
    """(number, message) of an `ERROR <n> :: <message>` answer, None for data."""
    text = text.strip()
    if not text.startswith("ERROR"):
        return None
    number_text, _, message = text.removeprefix("ERROR").partition("::")
    number = int(number_text.strip()) if number_text.strip().isdigit() else 0
    return number, one_line(message.strip() or text)


class SemrushProvider(BaseProvider):
    name = Provider.SEMRUSH.value
    ttl = timedelta(days=30)
    result_type = SemrushData
    default_base_url = "https://api.semrush.com"
    key_setting = "SEMRUSH_API_KEY"

    def build_request(self, lead: LeadInfo, context) -> httpx.Request:
        params = {
            "type": "domain_ranks",
            "key": settings.SEMRUSH_API_KEY,
            "export_columns": EXPORT_COLUMNS,
            "domain": lead.domain,
            "database": settings.SEMRUSH_DATABASE,
        }
        return httpx.Request("GET", f"{self.base_url()}/", params=params)

    def error_message(self, response: httpx.Response) -> str:
        return one_line(response.text)

    def classify(self, response: httpx.Response) -> ProviderError | None:
        error = _error_number(response.text)
        if error is None:
            return super().classify(response)
        number, message = error
        if number == NOTHING_FOUND:
            return None
        code = f"semrush_error_{number}"
        if number in RATE_ERRORS:
            return self.error(code, message, transient=True, http_status=response.status_code)
        if number in ACCOUNT_ERRORS:
            return self.error(code, message, unavailable=True, http_status=response.status_code)
        return self.error(code, message, http_status=response.status_code)

    def parse(self, response: httpx.Response, lead: LeadInfo) -> tuple[SemrushData, Usage]:
        if _error_number(response.text) is not None:
            # A domain SEMrush knows nothing about: a valid answer (and a finding for the report),
            # billed as one line.
            return SemrushData(found=False), Usage()
        rows = [row for row in csv.reader(response.text.splitlines(), delimiter=";") if any(row)]
        if len(rows) < 2:
            raise self.error("bad_response", "expected a header line and a data line")
        header = [name.strip() for name in rows[0]]
        if not set(HEADERS) - {"Database"} <= set(header):
            raise self.error("bad_response", "unexpected columns in the domain overview")
        records = []
        for values in rows[1:]:
            if len(values) != len(header):
                raise self.error("bad_response", "a line of the domain overview has the wrong columns")
            records.append(
                {
                    HEADERS[name]: value.strip()
                    for name, value in zip(header, values, strict=True)
                    if name in HEADERS
                }
            )
        wanted = settings.SEMRUSH_DATABASE
        # `domain_rank` answers carry no Database column: their one row is the database asked for.
        row = next((record for record in records if record.get("database", wanted) == wanted), None)
        usage = Usage(units=len(records))
        if row is None:
            return SemrushData(found=False, database=wanted), usage
        return (
            SemrushData(
                found=True,
                database=row.get("database", wanted),
                rank=int(row["rank"]) if row["rank"] else None,
                organic_keywords=int(row["organic_keywords"] or 0),
                organic_traffic=int(row["organic_traffic"] or 0),
                organic_cost=float(row["organic_cost"] or 0),
                adwords_keywords=int(row["adwords_keywords"] or 0),
                adwords_traffic=int(row["adwords_traffic"] or 0),
                adwords_cost=float(row["adwords_cost"] or 0),
            ),
            usage,
        )

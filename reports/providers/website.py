"""The in-house website audit: fetch the homepage and check the basics a visitor and a crawler see."""

from dataclasses import dataclass
from datetime import timedelta
from html.parser import HTMLParser

import httpx

from reports.models import Provider
from reports.providers.base import BaseProvider, LeadInfo, ResultData, Usage

MAX_PAGE_BYTES = 5_000_000


@dataclass
class WebsiteAudit(ResultData):
    url: str
    final_url: str
    status_code: int
    https: bool
    response_time_ms: int
    page_bytes: int
    title: str
    meta_description: str
    h1: str
    h1_count: int
    has_viewport: bool
    images_total: int
    images_missing_alt: int
    lang: str = ""


class _PageParser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.meta_description = ""
        self.h1: list[str] = []
        self.has_viewport = False
        self.images_total = 0
        self.images_missing_alt = 0
        self.lang = ""
        self._in_title = False
        self._in_h1 = False
        self._h1_text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = {name.lower(): (value or "") for name, value in attrs}
        if tag == "html":
            self.lang = attributes.get("lang", "")
        elif tag == "title" and not self.title:
            self._in_title = True
        elif tag == "meta":
            name = attributes.get("name", "").lower()
            if name == "description" and not self.meta_description:
                self.meta_description = attributes.get("content", "").strip()
            elif name == "viewport":
                self.has_viewport = True
        elif tag == "h1":
            self._in_h1 = True
            self._h1_text = []
        elif tag == "img":
            self.images_total += 1
            if not attributes.get("alt", "").strip():
                self.images_missing_alt += 1

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        elif tag == "h1" and self._in_h1:
            self._in_h1 = False
            self.h1.append(" ".join("".join(self._h1_text).split()))

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        if self._in_h1:
            self._h1_text.append(data)


class WebsiteProvider(BaseProvider):
    name = Provider.WEBSITE.value
    ttl = timedelta(days=1)
    result_type = WebsiteAudit
    follow_redirects = True

    def build_request(self, lead: LeadInfo, context) -> httpx.Request:
        url = lead.website if "://" in lead.website else f"http://{lead.website}"
        return httpx.Request(
            "GET",
            url,
            headers={"User-Agent": "LeadgenAudit/1.0 (+website audit)", "Accept": "text/html,*/*;q=0.5"},
        )

    def parse(self, response: httpx.Response, lead: LeadInfo) -> tuple[WebsiteAudit, Usage]:
        body = response.content[:MAX_PAGE_BYTES]
        parser = _PageParser()
        parser.feed(body.decode(response.encoding or "utf-8", errors="replace"))
        parser.close()
        elapsed = response.extensions.get("leadgen_elapsed_ms")
        audit = WebsiteAudit(
            url=str(response.request.url if not response.history else response.history[0].request.url),
            final_url=str(response.url),
            status_code=response.status_code,
            https=response.url.scheme == "https",
            response_time_ms=int(elapsed) if elapsed is not None else 0,
            page_bytes=len(response.content),
            title=" ".join(parser.title.split())[:300],
            meta_description=parser.meta_description[:500],
            h1=parser.h1[0][:300] if parser.h1 else "",
            h1_count=len(parser.h1),
            has_viewport=parser.has_viewport,
            images_total=parser.images_total,
            images_missing_alt=parser.images_missing_alt,
            lang=parser.lang[:20],
        )
        return audit, Usage()

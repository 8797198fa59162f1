"""The in-house website audit: fetch the homepage and check the basics a visitor and a crawler see.

The homepage is a URL the lead supplies, so it is fetched under the egress policy (leadgen/egress.py):
every hop of a redirect chain, followed here by hand, is checked before it is sent, and in live mode
the connection goes to an address vetted when it is made. The body is streamed into the parser and
never kept: at most MAX_PAGE_BYTES are read after decompression (a gzip bomb stops there), the facts
come from the first PARSE_BYTES, the call's deadline bounds the whole fetch, and only the parsed facts
below are stored. Error bodies are not read.
"""

import codecs
import unicodedata
import zlib
from dataclasses import dataclass
from datetime import timedelta
from html.parser import HTMLParser

import httpx

from leadgen.egress import BLOCKED_ADDRESS, MAX_REDIRECTS, EgressRefused, url_check
from reports.models import Provider
from reports.providers.base import BaseProvider, LeadInfo, ProviderError, ResultData, Usage

# Bytes of the page read and counted, after decompression (and at most as many of the compressed
# stream); the facts come from the first PARSE_BYTES of them (parsing is the costly part).
MAX_PAGE_BYTES = 3_000_000
PARSE_BYTES = 1_000_000
PAGE_EXTENSION = "leadgen_page"


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
    # The page was larger than MAX_PAGE_BYTES (page_bytes says MAX_PAGE_BYTES then).
    page_truncated: bool = False


def clean_text(text: str, limit: int) -> str:
    """Page text fit to be stored and shown: no control or format characters (NUL, bidi overrides,
    zero-width), whitespace collapsed, at most `limit` characters."""
    if not (text.isascii() and text.isprintable()):  # printable ASCII has none: the common case
        text = "".join(
            char for char in text if char in "\t\n\r" or unicodedata.category(char) not in ("Cc", "Cf")
        )
    return " ".join(text.split())[:limit]


class _Inflater:
    """Bounded decompression of one Content-Encoding: never more output than the room left."""

    def __init__(self, encoding: str):
        self.encoding = encoding
        if encoding in ("", "identity"):
            self._zlib = None
        elif encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding == "deflate":
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS)
        else:
            raise ValueError(encoding)
        self._started = False

    def feed(self, data: bytes, room: int) -> tuple[bytes, bool]:
        """Up to `room` bytes of output for `data`, and whether there is more than that."""
        if room <= 0:
            return b"", bool(data)
        if self._zlib is None:
            return data[:room], len(data) > room
        try:
            out = self._zlib.decompress(data, room + 1)
        except zlib.error:
            if self.encoding != "deflate" or self._started:
                raise
            # "deflate" without its zlib header, as some servers send it.
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            out = self._zlib.decompress(data, room + 1)
        self._started = True
        return out[:room], len(out) > room or bool(self._zlib.unconsumed_tail)


@dataclass
class _Page:
    parser: "_PageParser"
    size: int
    truncated: bool


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


async def _aiter(chunks):
    for chunk in chunks:
        yield chunk


class WebsiteProvider(BaseProvider):
    name = Provider.WEBSITE.value
    ttl = timedelta(days=1)
    result_type = WebsiteAudit
    fetches_lead_urls = True

    @staticmethod
    def url_of(lead: LeadInfo) -> str:
        website = lead.website.strip()
        return website if "://" in website else f"http://{website}"

    def precheck(self, lead: LeadInfo) -> ProviderError | None:
        try:
            url_check(self.url_of(lead))
        except EgressRefused as exc:
            return self.error(BLOCKED_ADDRESS, exc.message)
        return super().precheck(lead)

    def build_request(self, lead: LeadInfo, context) -> httpx.Request:
        return httpx.Request(
            "GET",
            self.url_of(lead),
            headers={
                "User-Agent": "LeadgenAudit/1.0 (+website audit)",
                "Accept": "text/html,*/*;q=0.5",
                # Only what _Inflater decodes with a bound.
                "Accept-Encoding": "gzip, deflate",
            },
        )

    async def fetch(self, client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
        """The homepage, redirects followed by hand with the egress check at every hop, the body
        streamed into the parser (up to MAX_PAGE_BYTES) and never kept. Error bodies are not read."""
        history: list[httpx.Response] = []
        # The cookies of this audit's own redirect chain (a site may set one and expect it on the next
        # hop); the client keeps none from one lead to the next.
        cookies = httpx.Cookies()
        while True:
            url_check(request.url)
            response = await client.send(request, stream=True, follow_redirects=False)
            if response.next_request is None:
                break
            await response.aclose()
            history.append(response)
            if len(history) > MAX_REDIRECTS:
                raise self.error("too_many_redirects", f"more than {MAX_REDIRECTS} redirects")
            request = response.next_request
            if "set-cookie" in response.headers:
                cookies.extract_cookies(response)
            if cookies.jar:
                cookies.set_cookie_header(request)
        response.history = history
        try:
            if response.status_code < 400:
                response.extensions[PAGE_EXTENSION] = await self._read_page(response)
        finally:
            await response.aclose()
        return response

    async def _read_page(self, response: httpx.Response) -> _Page:
        if response.is_stream_consumed:
            # An answer built in memory (the sandbox, a test transport): its content is decoded already.
            encoding, chunks = "", _aiter([response.content])
        else:
            encoding, chunks = (
                response.headers.get("Content-Encoding", "").strip().lower(),
                response.aiter_raw(),
            )
        try:
            inflater = _Inflater(encoding)
        except ValueError:
            raise self.failure(
                response, "bad_encoding", f"unsupported content encoding {encoding[:40]!r}"
            ) from None
        try:
            decoder = codecs.getincrementaldecoder(response.charset_encoding or "utf-8")(errors="replace")
        except LookupError:
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        parser = _PageParser()
        size = raw = 0
        truncated = False
        async for chunk in chunks:
            raw += len(chunk)
            try:
                data, more = inflater.feed(chunk, MAX_PAGE_BYTES - size)
            except zlib.error:
                raise self.failure(
                    response, "bad_encoding", f"the page's {encoding} encoding is corrupt"
                ) from None
            if size < PARSE_BYTES:
                parser.feed(decoder.decode(data[: PARSE_BYTES - size]))
            size += len(data)
            if more or raw > MAX_PAGE_BYTES:
                truncated = True
                break
        parser.feed(decoder.decode(b"", final=True))
        parser.close()
        return _Page(parser=parser, size=size, truncated=truncated)

    def error_message(self, response: httpx.Response) -> str:
        # The site's own error page is never read: its status says enough, and an internal error body
        # must not reach the error shown on the live page, the CSV and the API.
        return ""

    def parse(self, response: httpx.Response, lead: LeadInfo) -> tuple[WebsiteAudit, Usage]:
        page: _Page = response.extensions[PAGE_EXTENSION]
        parser = page.parser
        elapsed = response.extensions.get("leadgen_elapsed_ms")
        first = response.history[0].request.url if response.history else response.request.url
        audit = WebsiteAudit(
            url=clean_text(str(first), 500),
            final_url=clean_text(str(response.url), 500),
            status_code=response.status_code,
            https=response.url.scheme == "https",
            response_time_ms=int(elapsed) if elapsed is not None else 0,
            page_bytes=page.size,
            title=clean_text(parser.title, 300),
            meta_description=clean_text(parser.meta_description, 500),
            h1=clean_text(parser.h1[0], 300) if parser.h1 else "",
            h1_count=len(parser.h1),
            has_viewport=parser.has_viewport,
            images_total=parser.images_total,
            images_missing_alt=parser.images_missing_alt,
            lang=clean_text(parser.lang, 20),
            page_truncated=page.truncated,
        )
        return audit, Usage()

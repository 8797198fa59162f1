"""What WeasyPrint may load while it renders a report's PDF: nothing beyond the HTML itself.

The report HTML is self-contained (inline CSS, the screenshot as a data URI), so the fetcher serves
`data:` URLs and refuses every other URL: `file://` (a local file read into the PDF, or embedded in it
by `<link rel=attachment>`), `http(s)://` (a request to wherever the stored HTML points) and the rest.
A refused resource is left out of the PDF with a warning in WeasyPrint's log.
"""

from weasyprint.urls import URLFetcher


def pdf_url_fetcher() -> URLFetcher:
    return URLFetcher(allowed_protocols=("data",), allow_redirects=False, timeout=1)

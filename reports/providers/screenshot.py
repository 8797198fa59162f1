"""ScreenshotOne `take`: the homepage as a JPEG (image bytes in the response), kept in MEDIA storage.

ScreenshotOne answers its client errors with HTTP 400 and `{"is_successful": false, "error_code",
"error_message"}`; the code, not the status, says what happened. It is sent its own `timeout` below our
deadline, so a slow site ends in its answer rather than in our timeout.
"""

import hashlib
import io
from dataclasses import dataclass
from datetime import timedelta

import httpx
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image, UnidentifiedImageError

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

VIEWPORT_WIDTH = 1280
VIEWPORT_HEIGHT = 800
MAX_IMAGE_BYTES = 5_000_000
# ScreenshotOne's own `timeout` parameter: 60 s by default, at most 90.
MAX_API_TIMEOUT = 90
MIN_API_TIMEOUT = 5
# Retrying after a while helps.
TRANSIENT_CODES = {
    "concurrency_limit_reached": "concurrency limit reached",
    "internal_application_error": "internal error",
    "too_many_requests": "rate limit reached",
}
# Ours for every lead: the plan or the key.
ACCOUNT_CODES = {
    "screenshots_limit_reached": "plan screenshot limit reached",
    "access_key_required": "access key missing",
    "access_key_invalid": "access key rejected",
    "signature_is_required": "request signature missing",
    "signature_is_not_valid": "request signature rejected",
}
# The lead's site: retrying as it is does not help.
SITE_CODES = {"network_error", "host_returned_error", "name_not_resolved", "invalid_url"}


@dataclass
class ScreenshotData(ResultData):
    image_path: str
    content_type: str
    bytes: int
    width: int
    height: int


class ScreenshotProvider(BaseProvider):
    name = Provider.SCREENSHOT.value
    ttl = timedelta(days=7)
    result_type = ScreenshotData
    default_base_url = "https://api.screenshotone.com"
    key_setting = "SCREENSHOTONE_ACCESS_KEY"

    def api_timeout(self) -> int:
        """The `timeout` ScreenshotOne is sent: two thirds of our deadline (60 of 90 s by default)."""
        return int(max(MIN_API_TIMEOUT, min(MAX_API_TIMEOUT, self.deadline() * 2 / 3)))

    def build_request(self, lead: LeadInfo, context) -> httpx.Request:
        params = {
            "access_key": settings.SCREENSHOTONE_ACCESS_KEY,
            "url": lead.website,
            "format": "jpg",
            "viewport_width": VIEWPORT_WIDTH,
            "viewport_height": VIEWPORT_HEIGHT,
            "image_quality": 70,
            "block_cookie_banners": "true",
            "timeout": self.api_timeout(),
        }
        return httpx.Request("GET", f"{self.base_url()}/take", params=params)

    def error_message(self, response: httpx.Response) -> str:
        try:
            body = json_body(response)
        except ValueError:
            return one_line(response.text)
        if isinstance(body, dict):
            return one_line(str(body.get("error_message") or body.get("error_code") or ""))
        return ""

    def classify(self, response: httpx.Response) -> ProviderError | None:
        if response.status_code < 400:
            return None
        try:
            code = str(json_body(response).get("error_code") or "")
        except (ValueError, AttributeError):
            code = ""
        if code in TRANSIENT_CODES:
            return self.failure(
                response, code, TRANSIENT_CODES[code], transient=True, retry_after=self.retry_after(response)
            )
        if code in ACCOUNT_CODES:
            return self.failure(response, code, ACCOUNT_CODES[code], unavailable=True)
        if code in SITE_CODES:
            why = self.error_message(response) or code
            return self.failure(response, code, one_line(f"could not load this site: {why}", 120))
        return super().classify(response)

    def parse(self, response: httpx.Response, lead: LeadInfo) -> tuple[ScreenshotData, Usage]:
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if not content_type.startswith("image/"):
            raise self.error("bad_response", f"Expected an image, got {content_type or 'no content type'}")
        content = response.content
        if not content or len(content) > MAX_IMAGE_BYTES:
            raise self.error("bad_response", f"Image of {len(content)} bytes")
        try:
            with Image.open(io.BytesIO(content)) as image:
                width, height = image.size
        except (UnidentifiedImageError, OSError) as exc:
            raise self.error("bad_response", f"Not a readable image: {exc}") from exc
        extension = "png" if content_type == "image/png" else "jpg"
        # Content-addressed, so the same picture is stored once however often it is fetched.
        name = f"reports/screenshots/{hashlib.sha256(content).hexdigest()[:24]}.{extension}"
        if not default_storage.exists(name):
            name = default_storage.save(name, ContentFile(content))
        return (
            ScreenshotData(
                image_path=name, content_type=content_type, bytes=len(content), width=width, height=height
            ),
            Usage(),
        )

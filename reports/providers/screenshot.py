"""ScreenshotOne `take`: the homepage as a JPEG (image bytes in the response), kept in MEDIA storage."""

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
from reports.providers.base import BaseProvider, LeadInfo, ResultData, Usage

VIEWPORT_WIDTH = 1280
VIEWPORT_HEIGHT = 800
MAX_IMAGE_BYTES = 5_000_000


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

    def build_request(self, lead: LeadInfo, context) -> httpx.Request:
        params = {
            "access_key": settings.SCREENSHOTONE_ACCESS_KEY,
            "url": lead.website,
            "format": "jpg",
            "viewport_width": VIEWPORT_WIDTH,
            "viewport_height": VIEWPORT_HEIGHT,
            "image_quality": 70,
            "block_cookie_banners": "true",
        }
        return httpx.Request("GET", f"{self.base_url()}/take", params=params)

    def error_message(self, response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            return response.text[:200]
        if isinstance(body, dict):
            return str(body.get("error_message") or body.get("error_code") or body)[:200]
        return response.text[:200]

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

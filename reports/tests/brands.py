"""Brand profiles for tests: a real PNG logo, distinctive colour and text."""

import io

from django.core.files.base import ContentFile
from PIL import Image

from reports.models import BrandProfile
from reports.services import brand_profile_save


def png_bytes(size=(240, 80), colour=(194, 24, 91)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def make_brand(
    *, name: str = "Northwind", is_default: bool = False, logo: bool = True, **fields
) -> BrandProfile:
    values = {
        "agency_name": f"{name} Digital",
        "accent_colour": "#c2185b",
        "contact_line": f"Jane Doe · jane@{name.lower()}.example · +1 555 0100",
        "cta_label": "Book a free call",
        "cta_url": f"https://{name.lower()}.example/call",
        "footer": f"{name} Digital Ltd, 1 Main Street, Springfield",
        **fields,
    }
    profile = BrandProfile(name=name, is_default=is_default, **values)
    if logo:
        profile.logo.save(f"{name.lower()}.png", ContentFile(png_bytes()), save=False)
    return brand_profile_save(profile=profile)

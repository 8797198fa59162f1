"""Share-link tokens and URLs (pure: no ORM).

A token is a ShareLink's random key signed with SECRET_KEY (`<key>.<signature>`, URL-safe). The signature
is checked before any lookup, so a guessed or altered token costs no query; rotating SECRET_KEY (with
the old key in SECRET_KEY_FALLBACKS while links should keep working) is how every link is withdrawn.
"""

import secrets

from django.core import signing
from django.http import HttpRequest
from django.urls import reverse

SALT = "reports.share-link"
SEP = "."
KEY_BYTES = 18
DEFAULT_EXPIRES_IN_DAYS = 30
MAX_EXPIRES_IN_DAYS = 365
# A token is far shorter than this; anything longer is refused before checking its signature.
MAX_TOKEN_LENGTH = 200


def _signer() -> signing.Signer:
    return signing.Signer(salt=SALT, sep=SEP)


def share_key_new() -> str:
    return secrets.token_urlsafe(KEY_BYTES)


def share_token(key: str) -> str:
    return _signer().sign(key)


def share_key_from_token(token: str) -> str | None:
    """The key a token carries, or None when its signature does not hold."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        return _signer().unsign(token)
    except signing.BadSignature:
        return None


def share_urls(key: str, *, request: HttpRequest | None = None) -> dict[str, str]:
    """The link's HTML and PDF addresses, absolute when a request tells the host."""
    token = share_token(key)
    paths = {
        "url": reverse("reports:shared", args=[token]),
        "pdf_url": reverse("reports:shared-pdf", args=[token]),
    }
    if request is None:
        return paths
    return {name: request.build_absolute_uri(path) for name, path in paths.items()}

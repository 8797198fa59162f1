"""The secret key of a local run: random, made once per checkout, kept in a git-ignored file.

Only used with DEBUG on, so no key that the code or the repository holds can sign anything in
production. Every process of one checkout (daphne, qcluster, manage.py) reads the same file, so what one
signs (sessions, django-q2 task payloads) the others accept.
"""

import contextlib
import os
import secrets
import tempfile
from pathlib import Path


def load_or_create(path: Path) -> str:
    """The key stored at `path`, created first if there is none (atomically: concurrent first runs agree)."""
    with contextlib.suppress(FileNotFoundError):
        key = path.read_text().strip()
        if key:
            return key
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(50) + "\n")
        with contextlib.suppress(FileExistsError):  # another process made it first: theirs is the key
            os.link(temporary, path)
    finally:
        os.unlink(temporary)
    return path.read_text().strip()

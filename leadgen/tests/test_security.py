"""Secure defaults: debug off unless asked for, no secret key in the code, a clean deploy check with the
README's production environment, and debug pages that hide the passwords inside URLs."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from django.urls import path

from leadgen import dev_secret_key

BASE_DIR = Path(__file__).resolve().parents[2]
PROVIDER_KEYS = (
    "PAGESPEED_API_KEY",
    "HUNTER_API_KEY",
    "SEMRUSH_API_KEY",
    "SCREENSHOTONE_ACCESS_KEY",
    "LLM_API_KEY",
)
CONFIGURATION = {
    "DEBUG",
    "SECRET_KEY",
    "DJANGO_SETTINGS_MODULE",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "PROVIDER_MODE",
    *PROVIDER_KEYS,
}


def manage(*args: str, **env_overrides: str) -> subprocess.CompletedProcess:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in CONFIGURATION and not key.startswith(("SECURE_", "COV_"))
    }
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def readme_production_environment() -> dict[str, str]:
    """The variables of README "Production" ("Environment for all of them"), placeholders filled in."""
    readme = (BASE_DIR / "README.md").read_text()
    section = readme.split("\n## Production\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("Environment for all of them:", 1)[1].split("```", 2)[1]
    variables = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(\S*)", block, flags=re.M))
    variables["SECRET_KEY"] = secrets.token_urlsafe(50)
    return {name: re.sub(r"<[^>]*>", "x", value) for name, value in variables.items()}


def test_nothing_set_means_debug_off_and_no_start_without_a_secret_key():
    result = manage("check")

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "SECRET_KEY is required when DEBUG is off" in lines[0]


def test_a_local_run_signs_with_a_key_of_the_checkout_that_no_tracked_file_holds():
    show_key = ("shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY)")
    first = manage(*show_key, DEBUG="1")
    second = manage(*show_key, DEBUG="1")

    assert first.returncode == 0, first.stderr
    key = first.stdout.strip().splitlines()[-1]
    assert len(key) >= 50
    # Every process of the checkout (web, workers) signs with the same key.
    assert second.stdout.strip().splitlines()[-1] == key
    tracked = subprocess.run(
        ["git", "grep", "-l", "-F", key], cwd=BASE_DIR, capture_output=True, text=True, check=False
    )
    assert tracked.stdout == ""
    assert (BASE_DIR / ".dev-secret-key").stat().st_mode & 0o077 == 0  # readable by its owner only


def test_the_checkout_key_is_made_once_and_kept(tmp_path):
    path = tmp_path / ".dev-secret-key"

    key = dev_secret_key.load_or_create(path)

    assert len(key) >= 50
    assert dev_secret_key.load_or_create(path) == key
    assert path.stat().st_mode & 0o077 == 0
    assert [p.name for p in tmp_path.iterdir()] == [".dev-secret-key"]  # no temporary file left
    assert dev_secret_key.load_or_create(tmp_path / "other") != key


def test_the_readme_production_environment_passes_the_deploy_check_without_a_warning():
    environment = readme_production_environment()
    assert environment["DEBUG"] == "0"
    assert {"SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_PROXY_SSL_HEADER"} <= set(environment)
    if environment.get("PROVIDER_MODE") == "live":  # "plus the provider keys"
        environment.update(dict.fromkeys(PROVIDER_KEYS, "key"))

    result = manage("check", "--deploy", "--fail-level", "WARNING", **environment)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_a_proxy_ssl_header_that_is_not_name_and_value_stops_the_start():
    result = manage("check", DEBUG="1", SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto")

    assert result.returncode == 1
    assert "SECURE_PROXY_SSL_HEADER must be Header-Name=value" in result.stderr


def test_the_proxy_header_is_read_into_the_form_django_expects():
    environment = readme_production_environment()
    result = manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.SECURE_PROXY_SSL_HEADER)",
        **environment,
    )

    assert result.stdout.strip().splitlines()[-1] == "('HTTP_X_FORWARDED_PROTO', 'https')", result.stderr


# ---------------------------------------------------------------------------------------------------------
# Debug pages.

REDIS_PASSWORD = secrets.token_hex(8)  # made at run time: the page also shows this source
DATABASE_PASSWORD = secrets.token_hex(8)


def failing_view(request):
    broker = request.GET.get("url", "") or f"redis://:{REDIS_PASSWORD}@redis.internal:6379/0"
    raise RuntimeError(f"could not reach the broker ({len(broker)} characters of URL)")


urlpatterns = [path("fail/", failing_view)]


@pytest.mark.django_db
def test_the_debug_500_page_masks_the_passwords_in_urls(settings):
    settings.DEBUG = True
    settings.ROOT_URLCONF = __name__
    settings.REDIS_URL = f"redis://:{REDIS_PASSWORD}@redis.internal:6379/0"
    settings.DATABASE_URL = f"postgres://leadgen:{DATABASE_PASSWORD}@db.internal:5432/leadgen"
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "redis": settings.REDIS_URL}
    client = Client(raise_request_exception=False)

    response = client.get("/fail/")

    assert response.status_code == 500
    page = response.content.decode()
    assert "could not reach the broker" in page  # the debug page, with settings and local variables
    assert "redis.internal:6379" in page and "db.internal:5432" in page
    assert REDIS_PASSWORD not in page
    assert DATABASE_PASSWORD not in page


# ---------------------------------------------------------------------------------------------------------
# The API's schema and docs.


@pytest.mark.django_db
def test_the_schema_and_the_docs_need_a_signed_in_user(client, django_user_model):
    assert client.get("/api/schema/").status_code == 401
    docs = client.get("/api/docs/")
    assert docs.status_code == 302
    assert docs["Location"].startswith("/admin/login/")

    client.force_login(django_user_model.objects.create_user("reader", password=None))

    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200

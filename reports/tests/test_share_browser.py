"""A prospect opens a share link in a real browser, logged out: the branded report renders under its
strict Content-Security-Policy (the embedded logo and screenshot load, nothing is blocked)."""

import pytest
from django.db import connections

from batches.tests.test_browser import CHROMIUM_ARGS
from reports.services import report_generate, share_link_create
from reports.sharing import share_urls
from reports.tests.brands import make_brand

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def shared_urls(lead_factory):
    # Before the browser starts: the report service runs an event loop of its own on this thread.
    report = report_generate(lead=lead_factory(company_name="Bright Smile Dental"), brand=make_brand()).report
    return share_urls(share_link_create(report=report, user=None).key)


@pytest.fixture
def chromium(monkeypatch, shared_urls):
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()
        connections.close_all()


def test_the_shared_report_renders_logged_out_with_its_logo_and_nothing_blocked(
    live_server, shared_urls, chromium
):
    urls = shared_urls

    page = chromium.new_context().new_page()
    page.set_default_timeout(20_000)
    blocked = []
    page.on("console", lambda message: blocked.append(message.text) if message.type == "error" else None)
    response = page.goto(live_server.url + urls["url"])

    assert response.status == 200
    assert response.headers["x-robots-tag"] == "noindex, nofollow, noarchive"
    assert page.title() == "Website audit: Bright Smile Dental by Northwind Digital"
    logo = page.get_by_role("img", name="Northwind Digital")
    assert logo.evaluate("image => image.complete && image.naturalWidth") == 240
    shot = page.get_by_role("img", name="Screenshot of the homepage of Bright Smile Dental")
    assert shot.evaluate("image => image.naturalWidth") > 0
    assert page.get_by_role("link", name="Book a free call").get_attribute("href") == (
        "https://northwind.example/call"
    )
    assert page.locator("form, script, #header, #user-tools").count() == 0
    assert blocked == []

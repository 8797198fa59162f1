"""Share links: a report opens for its prospect without login until the link expires or is revoked;
the page is the report alone (nothing internal), kept out of search engines and caches."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from reports.models import ShareLink
from reports.services import report_generate, share_link_create, share_link_revoke
from reports.sharing import share_token, share_urls
from reports.tests.brands import make_brand

pytestmark = pytest.mark.django_db

NOT_FOUND_TEXT = b"This link does not open a report."


@pytest.fixture
def report(lead_factory):
    return report_generate(lead=lead_factory(company_name="Bright Smile Dental"), brand=make_brand()).report


@pytest.fixture
def link(report):
    return share_link_create(report=report, user=None)


def api_client(django_user_model, *codenames):
    user = django_user_model.objects.create_user(username=f"u{'-'.join(codenames) or 'none'}")
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def assert_private(response):
    assert response["X-Robots-Tag"] == "noindex, nofollow, noarchive"
    assert response["Cache-Control"] == "no-store, private"
    assert response["Referrer-Policy"] == "no-referrer"


def test_a_link_opens_the_report_and_its_pdf_logged_out(client, link, report):
    urls = share_urls(link.key)
    response = client.get(urls["url"])
    assert response.status_code == 200
    html = response.content.decode()
    assert "Bright Smile Dental" in html and "Northwind Digital" in html
    assert '<meta name="robots" content="noindex, nofollow, noarchive">' in html
    assert "default-src 'none'" in response["Content-Security-Policy"]
    assert_private(response)

    response = client.get(urls["pdf_url"])
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert 'filename="bright-smile-dental-website-audit.pdf"' in response["Content-Disposition"]
    assert b"".join(response.streaming_content).startswith(b"%PDF")
    assert_private(response)


def test_the_staff_report_urls_still_need_a_login(client, link, report):
    assert client.get(reverse("reports:detail", args=[report.pk])).status_code == 302


@pytest.mark.parametrize("kind", ["expired", "revoked", "altered", "unknown", "garbage"])
def test_a_dead_link_is_a_404_that_says_nothing_about_why(client, link, kind):
    token = share_token(link.key)
    if kind == "expired":
        ShareLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif kind == "revoked":
        share_link_revoke(link=link, user=None)
    elif kind == "altered":
        token = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    elif kind == "unknown":
        token = share_token("no-such-key")
    else:
        token = "x" * 500
    for url in (reverse("reports:shared", args=[token]), reverse("reports:shared-pdf", args=[token])):
        response = client.get(url)
        assert response.status_code == 404
        assert response.content.count(NOT_FOUND_TEXT) == 1
        for word in (b"expire", b"revoke", b"signature", b"Traceback", b"Bright Smile"):
            assert word not in response.content
        assert_private(response)


def test_a_bad_signature_is_refused_without_a_query(client, link, django_assert_num_queries):
    token = share_token(link.key)[:-1] + "x"
    with django_assert_num_queries(0):
        assert client.get(reverse("reports:shared", args=[token])).status_code == 404


def test_revoking_takes_effect_at_once(client, link):
    url = share_urls(link.key)["url"]
    assert client.get(url).status_code == 200
    share_link_revoke(link=link, user=None)
    assert client.get(url).status_code == 404


def test_api_creates_lists_and_revokes_links(django_user_model, report):
    sharer = api_client(django_user_model, "add_sharelink", "view_sharelink", "change_sharelink")
    url = f"/api/reports/{report.pk}/share/"

    response = sharer.post(url, {}, format="json")
    assert response.status_code == 201
    body = response.json()
    link = ShareLink.objects.get()
    assert body["token"] == share_token(link.key)
    assert body["url"] == f"http://testserver/reports/shared/{body['token']}/"
    assert body["pdf_url"] == f"http://testserver/reports/shared/{body['token']}.pdf"
    assert body["active"] is True and body["revoked_at"] is None
    assert abs(link.expires_at - (link.created_at + timedelta(days=30))) < timedelta(seconds=1)

    response = sharer.post(url, {"expires_in_days": 7}, format="json")
    assert response.status_code == 201
    week = ShareLink.objects.exclude(pk=link.pk).get()
    assert response.json()["token"] == share_token(week.key)
    assert abs(week.expires_at - (week.created_at + timedelta(days=7))) < timedelta(seconds=1)

    for bad in (0, 366, "soon", -1):
        response = sharer.post(url, {"expires_in_days": bad}, format="json")
        assert response.status_code == 400
        assert "expires_in_days" in response.json()
    assert ShareLink.objects.count() == 2

    listed = sharer.get(url).json()
    assert [item["token"] for item in listed] == [share_token(week.key), body["token"]]

    response = sharer.delete(f"{url}{body['token']}/")
    assert response.status_code == 204
    assert Client().get(body["url"]).status_code == 404
    assert Client().get(listed[0]["url"]).status_code == 200
    assert [item["active"] for item in sharer.get(url).json()] == [True, False]

    assert sharer.delete(f"{url}{share_token('nope')}/").status_code == 404
    assert sharer.post("/api/reports/999999/share/", {}, format="json").status_code == 404
    assert sharer.post("/api/reports/abc/share/", {}, format="json").status_code == 404


def test_api_share_links_need_their_permissions(django_user_model, report, link):
    url = f"/api/reports/{report.pk}/share/"
    assert APIClient().post(url, {}, format="json").status_code == 401
    viewer = api_client(django_user_model, "view_sharelink")
    assert viewer.get(url).status_code == 200
    assert viewer.post(url, {}, format="json").status_code == 403
    assert viewer.delete(f"{url}{share_token(link.key)}/").status_code == 403
    assert api_client(django_user_model).get(url).status_code == 403
    assert ShareLink.objects.count() == 1 and ShareLink.objects.get().revoked_at is None


def test_the_report_admin_lists_its_links_and_the_link_admin_revokes(admin_client, report, link):
    other = share_link_create(report=report, user=None)
    share_link_revoke(link=other, user=None)
    page = admin_client.get(reverse("admin:reports_report_change", args=[report.pk])).content.decode()
    assert share_urls(link.key)["url"] in page and share_urls(other.key)["url"] in page
    assert "active" in page and "revoked" in page

    response = admin_client.post(
        reverse("admin:reports_sharelink_changelist"),
        {"action": "revoke_links", "_selected_action": [link.pk]},
    )
    assert response.status_code == 302
    link.refresh_from_db()
    assert link.revoked_at is not None
    assert Client().get(share_urls(link.key)["url"]).status_code == 404


def test_the_report_admin_action_shares_the_selected_reports_once(admin_client, report, lead_factory):
    second = report_generate(lead=lead_factory()).report
    data = {"action": "share_reports", "_selected_action": [report.pk, second.pk]}
    changelist = reverse("admin:reports_report_changelist")
    assert admin_client.post(changelist, data).status_code == 302
    assert admin_client.post(changelist, data).status_code == 302
    assert sorted(ShareLink.objects.values_list("report_id", flat=True)) == sorted([report.pk, second.pk])

"""What the admin lets staff see and do beyond the batches: webhook secrets, API tokens, schedules."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django_q.models import Failure, OrmQ, Schedule
from rest_framework.authtoken.models import Token

from batches.models import WebhookEndpoint

pytestmark = pytest.mark.django_db

SECRET = "whsec-very-secret-value-7Qz9"


def staff_client(django_user_model, username: str, *perms: str) -> Client:
    user = django_user_model.objects.create_user(username=username, password=None, is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        permission = Permission.objects.get(content_type__app_label=app_label, codename=codename)
        user.user_permissions.add(permission)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def endpoint():
    return WebhookEndpoint.objects.create(name="crm", url="https://crm.example.com/hooks", secret=SECRET)


def test_a_webhook_secret_is_write_only_for_those_who_may_change_it(admin_client, endpoint):
    change = reverse("admin:batches_webhookendpoint_change", args=[endpoint.pk])

    page = admin_client.get(change).content.decode()

    assert SECRET not in page
    assert "…7Qz9" in page
    form = {"name": "crm", "url": "https://crm.example.com/hooks", "is_active": "on", "secret": ""}
    assert admin_client.post(change, form).status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.secret == SECRET  # left empty: kept
    assert admin_client.post(change, {**form, "secret": "rotated-secret-AB12"}).status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.secret == "rotated-secret-AB12"


def test_a_new_webhook_needs_a_secret(admin_client):
    add = reverse("admin:batches_webhookendpoint_add")
    form = {"name": "crm", "url": "https://crm.example.com/hooks", "is_active": "on", "secret": ""}

    response = admin_client.post(add, form)

    assert response.status_code == 200
    assert "Set a secret" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()
    assert admin_client.post(add, {**form, "secret": SECRET}).status_code == 302
    assert WebhookEndpoint.objects.get().secret == SECRET


def test_view_only_staff_see_the_last_four_characters_of_a_webhook_secret(django_user_model, endpoint):
    client = staff_client(django_user_model, "auditor", "batches.view_webhookendpoint")

    response = client.get(reverse("admin:batches_webhookendpoint_change", args=[endpoint.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert SECRET not in page
    assert "…7Qz9" in page


def test_view_only_staff_cannot_read_api_tokens(django_user_model, admin_user):
    key = Token.objects.create(user=admin_user).key
    client = staff_client(django_user_model, "auditor", "authtoken.view_tokenproxy")

    listing = client.get(reverse("admin:authtoken_tokenproxy_changelist"))

    assert listing.status_code == 200
    assert key not in listing.content.decode()
    assert f"…{key[-4:]}" in listing.content.decode()
    for page in ("change", "history"):
        url = reverse(f"admin:authtoken_tokenproxy_{page}", args=[admin_user.pk])
        response = client.get(url)
        assert response.status_code == 403, page
        assert key not in response.content.decode()


@pytest.mark.parametrize("perms", [("add_schedule",), ("view_schedule", "add_schedule", "change_schedule")])
def test_only_superusers_may_schedule_a_callable(django_user_model, admin_client, perms):
    client = staff_client(django_user_model, "scheduler", *(f"django_q.{perm}" for perm in perms))
    add = reverse("admin:django_q_schedule_add")
    form = {
        "name": "anything",
        "func": "os.system",
        "args": "'touch /tmp/owned'",
        "schedule_type": Schedule.ONCE,
        "repeats": "-1",
        "next_run_0": "2030-01-01",
        "next_run_1": "00:00:00",
    }
    before = Schedule.objects.count()

    assert client.get(add).status_code == 403
    assert client.post(add, form).status_code == 403
    assert client.get(reverse("admin:django_q_schedule_changelist")).status_code == 403
    assert Schedule.objects.count() == before
    assert admin_client.get(add).status_code == 200
    assert admin_client.get(reverse("admin:django_q_schedule_changelist")).status_code == 200


def test_only_superusers_may_resubmit_a_stored_task(django_user_model, admin_client):
    failed = Failure.objects.create(
        id="f" * 32, name="failed-task", func="os.system", args=("touch /tmp/owned",), kwargs={},
        started="2030-01-01T00:00:00Z", stopped="2030-01-01T00:00:01Z", success=False,
    )  # fmt: skip
    changelist = reverse("admin:django_q_failure_changelist")
    client = staff_client(django_user_model, "auditor", "django_q.view_failure", "django_q.change_failure")
    post = {"action": "resubmit_task", "_selected_action": [failed.pk], "index": "0"}

    assert client.get(changelist).status_code == 200
    assert "resubmit_task" not in client.get(changelist).content.decode()
    client.post(changelist, post)

    assert OrmQ.objects.count() == 0
    assert Failure.objects.filter(pk=failed.pk).exists()
    assert "resubmit_task" in admin_client.get(changelist).content.decode()

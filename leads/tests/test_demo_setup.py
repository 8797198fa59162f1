import re
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from leads.models import Lead
from leads.tests.factories import LeadFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]


def demo_setup(*args) -> str:
    out = StringIO()
    call_command("demo_setup", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_creates_the_admin_with_the_configured_password_and_500_leads(settings):
    settings.DEMO_ADMIN_PASSWORD = "demo-pass-1"

    output = demo_setup()

    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff
    assert admin.email == "admin@example.com"
    assert admin.check_password("demo-pass-1")
    assert Lead.objects.count() == 500
    assert "Log in at http://127.0.0.1:8000/admin/" in output
    assert "  username: admin\n" in output
    assert "  password: demo-pass-1\n" in output


def test_is_idempotent_and_keeps_printing_a_known_password(settings):
    settings.DEMO_ADMIN_PASSWORD = "demo-pass-1"
    demo_setup()

    output = demo_setup("--url", "http://127.0.0.1:8011/admin/")

    assert get_user_model().objects.count() == 1
    assert Lead.objects.count() == 500
    assert "Created" not in output
    assert "Log in at http://127.0.0.1:8011/admin/" in output
    assert "  password: demo-pass-1\n" in output


def test_generated_password_is_printed_once(settings):
    settings.DEMO_ADMIN_PASSWORD = ""

    first = demo_setup()
    second = demo_setup()

    password = re.search(r"  password: (\S+)\n", first).group(1)
    assert len(password) >= 16
    assert get_user_model().objects.get(username="admin").check_password(password)
    assert "shown only this once" in first
    assert password not in second
    assert "  password: (shown when the user was created" in second


def test_a_different_configured_password_does_not_change_the_existing_admin(settings):
    settings.DEMO_ADMIN_PASSWORD = "first"
    demo_setup()
    settings.DEMO_ADMIN_PASSWORD = "second"

    output = demo_setup()

    assert get_user_model().objects.get(username="admin").check_password("first")
    assert "second" not in output
    assert "does not match" in output


def test_does_not_seed_when_leads_exist(settings):
    settings.DEMO_ADMIN_PASSWORD = "x"
    LeadFactory.create_batch(3)

    output = demo_setup()

    assert Lead.objects.count() == 3
    assert "demo leads" not in output

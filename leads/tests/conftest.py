import pytest
from django.contrib.auth.models import Permission


@pytest.fixture
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff_viewer(django_user_model, fast_passwords):
    """A staff user allowed to view leads (and nothing else)."""
    user = django_user_model.objects.create_user(username="viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_lead", content_type__app_label="leads"))
    return user


@pytest.fixture
def six_leads(db):
    """Six leads covering every filter's boundaries; see the table in each test for what matches."""
    from datetime import timedelta

    from django.utils import timezone

    from leads.models import Lead
    from leads.tests.factories import LeadFactory

    now = timezone.now()
    rows = {
        # name: score, industry, state, status, source, has website, has email, reported days ago
        "Alpha": (95, Lead.Industry.DENTIST, "Texas", "new", "yelp", True, True, None),
        "Bravo": (80, Lead.Industry.PLUMBER, "Ohio", "contacted", "referral", False, True, 10),
        "Charlie": (79, Lead.Industry.DENTIST, "Texas", "qualified", "google_maps", True, False, 29),
        "Delta": (60, Lead.Industry.SALON, "Ohio", "new", "yelp", False, False, 31),
        "Echo": (59, Lead.Industry.DENTIST, "California", "customer", "referral", True, True, 200),
        "Foxtrot": (0, Lead.Industry.SOFTWARE, "Texas", "new", "yelp", True, False, None),
    }
    leads = {}
    for name, (score, industry, state, status, source, website, email, days) in rows.items():
        slug = name.lower()
        leads[name] = LeadFactory(
            company_name=f"{name} Company",
            score=score,
            industry=industry,
            state=state,
            status=status,
            source=source,
            website=f"https://www.{slug}-site.example.com/" if website else "",
            email=f"owner@{slug}-mail.example.org" if email else "",
            last_reported_at=None if days is None else now - timedelta(days=days),
        )
    return leads

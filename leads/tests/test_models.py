import pytest

from leads.models import domain_from_website
from leads.tests.factories import LeadFactory


@pytest.mark.parametrize(
    ("website", "domain"),
    [
        ("https://www.Example.com/path?q=1", "example.com"),
        ("http://shop.example.co.uk:8080", "shop.example.co.uk"),
        ("www.example.org", "example.org"),
        ("http://-bad-host-.example", "-bad-host-.example"),
        ("", ""),
    ],
)
def test_domain_from_website(website, domain):
    assert domain_from_website(website) == domain


@pytest.mark.django_db
def test_save_derives_the_domain_also_for_partial_updates():
    lead = LeadFactory(company_name="Acme Dental", website="https://www.acme.example.com")
    assert (str(lead), lead.domain) == ("Acme Dental", "acme.example.com")

    lead.website = "http://other.example.net/"
    lead.save(update_fields=["website"])
    lead.refresh_from_db()

    assert lead.domain == "other.example.net"

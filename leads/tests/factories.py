import factory
from factory.django import DjangoModelFactory

from leads.models import Lead, domain_from_website


class LeadFactory(DjangoModelFactory):
    """A typical lead with a website (hence a domain), an email at that domain and a B-tier score.

    `domain` is derived from `website` by Lead.save(); pass `website=""` for a lead without a site.
    """

    class Meta:
        model = Lead

    company_name = factory.Sequence(lambda n: f"Company {n} Dental")
    website = factory.Sequence(lambda n: f"https://www.company{n}.example.com")
    email = factory.LazyAttribute(
        lambda lead: f"info@{domain_from_website(lead.website)}" if lead.website else "office@example.org"
    )
    phone = "(555) 010-0000"
    contact_name = factory.Faker("name")
    industry = Lead.Industry.DENTIST
    city = "Springfield"
    state = "Illinois"
    country = "US"
    employee_count = 12
    score = 65
    source = "google_maps"
    status = Lead.Status.NEW
    last_reported_at = None

"""Realistic, deterministic demo leads (no database access here; `leads.services.lead_seed` saves them).

The same seed always gives the same leads (apart from timestamps, which are relative to now). Faker is
slow per call, so it fills small pools of names and places once per run, and a seeded `random.Random`
combines them; 100,000 leads take a few seconds.

Websites follow one convention that the sandbox providers rely on:
- about 15% of leads have no website (and no domain);
- about 0.75% have an unreachable site: the host ends in `.invalid` (RFC 2606), e.g.
  `http://harbor-dental-17.invalid`;
- about 0.75% have a malformed site: the host fails hostname validation because a label starts and ends
  with a hyphen, e.g. `http://-harbor-dental-17-.example`;
- about 25% of leads have no email.
"""

import random
import re
from collections.abc import Iterator
from datetime import datetime, timedelta

from faker import Faker

from leads.models import Lead, domain_from_website

NO_WEBSITE_RATE = 0.15
NO_EMAIL_RATE = 0.25
UNREACHABLE_RATE = 0.0075
MALFORMED_RATE = 0.0075

SOURCES = ["google_maps", "yelp", "referral", "website_form", "trade_show", "linkedin", "purchased_list"]
SOURCE_WEIGHTS = [30, 20, 10, 15, 5, 12, 8]
STATUS_WEIGHTS = {
    Lead.Status.NEW: 55,
    Lead.Status.CONTACTED: 20,
    Lead.Status.QUALIFIED: 12,
    Lead.Status.CUSTOMER: 5,
    Lead.Status.DISQUALIFIED: 8,
}
TLDS = ["com"] * 16 + ["net", "co", "biz", "us"]
FREE_MAIL = ["gmail.com", "yahoo.com", "outlook.com", "aol.com", "icloud.com"]
ROLE_MAILBOXES = ["info", "contact", "office", "hello", "admin", "sales"]
PREFIXES = [
    "Summit", "Pioneer", "Blue Ridge", "Evergreen", "Harbor", "Lakeside", "Keystone", "Liberty", "Golden",
    "Silver Oak", "Northstar", "Cornerstone", "Riverside", "Maple", "Cedar", "Heritage", "Prime", "Apex",
    "Bright", "Union", "Redwood", "Granite", "Coastal", "Valley", "Metro", "Sunrise", "Trinity", "Eagle",
]  # fmt: skip
INDUSTRY_WORDS = {
    Lead.Industry.DENTIST: ["Dental", "Family Dentistry", "Smiles", "Dental Care", "Orthodontics"],
    Lead.Industry.LAW_FIRM: ["Law Group", "& Associates", "Legal", "Law Offices", "Attorneys at Law"],
    Lead.Industry.RESTAURANT: ["Grill", "Kitchen", "Bistro", "Diner", "Pizzeria", "Taqueria", "Cafe"],
    Lead.Industry.PLUMBER: ["Plumbing", "Plumbing & Drain", "Rooter", "Pipe Works", "Plumbing Co."],
    Lead.Industry.REAL_ESTATE: ["Realty", "Properties", "Real Estate", "Homes", "Realty Group"],
    Lead.Industry.ACCOUNTING: ["CPA", "Accounting", "Tax & Accounting", "Bookkeeping", "Advisors"],
    Lead.Industry.FITNESS: ["Fitness", "CrossFit", "Gym", "Yoga Studio", "Athletic Club"],
    Lead.Industry.MEDICAL: ["Medical Center", "Clinic", "Family Medicine", "Urgent Care", "Health"],
    Lead.Industry.AUTO_REPAIR: ["Auto Repair", "Automotive", "Collision", "Auto Care", "Tire & Service"],
    Lead.Industry.SALON: ["Salon", "Hair Studio", "Spa", "Beauty Bar", "Barbershop"],
    Lead.Industry.ROOFING: ["Roofing", "Roofing & Siding", "Roof Pros", "Exteriors", "Roofing Co."],
    Lead.Industry.SOFTWARE: ["Software", "Labs", "Technologies", "Digital", "Systems"],
}
INDUSTRY_SIZES = {
    Lead.Industry.SOFTWARE: (5, 400),
    Lead.Industry.MEDICAL: (5, 250),
    Lead.Industry.LAW_FIRM: (2, 120),
    Lead.Industry.REAL_ESTATE: (2, 80),
}
DEFAULT_SIZE = (1, 40)


class _Pools:
    """Values drawn once from a seeded Faker."""

    def __init__(self, seed: int):
        fake = Faker("en_US")
        fake.seed_instance(seed)
        self.first_names = [fake.first_name() for _ in range(300)]
        self.last_names = [fake.last_name() for _ in range(500)]
        self.places = [(fake.city(), fake.state()) for _ in range(600)]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].strip("-")


def demo_leads(*, count: int, seed: int, now: datetime) -> Iterator[Lead]:
    """`count` unsaved leads with `domain` and `created_at` already set (created within the past year)."""
    rng = random.Random(seed)
    pools = _Pools(seed)
    industries = list(INDUSTRY_WORDS)
    statuses, status_weights = list(STATUS_WEIGHTS), list(STATUS_WEIGHTS.values())
    domains: set[str] = set()

    for n in range(count):
        industry = rng.choice(industries)
        first, last = rng.choice(pools.first_names), rng.choice(pools.last_names)
        city, state = rng.choice(pools.places)
        word = rng.choice(INDUSTRY_WORDS[industry])
        pattern = rng.random()
        if pattern < 0.4:
            company = f"{last} {word}"
        elif pattern < 0.7:
            company = f"{rng.choice(PREFIXES)} {word}"
        elif pattern < 0.9:
            company = f"{city} {word}"
        else:
            company = f"{last} & {rng.choice(pools.last_names)} {word}"

        website = ""
        kind = rng.random()
        if kind >= NO_WEBSITE_RATE:
            slug = _slug(company)
            if kind < NO_WEBSITE_RATE + UNREACHABLE_RATE:
                website = f"http://{slug}-{n}.invalid"
            elif kind < NO_WEBSITE_RATE + UNREACHABLE_RATE + MALFORMED_RATE:
                website = f"http://-{slug}-{n}-.example"
            else:
                host = f"{slug}.{rng.choice(TLDS)}"
                if host in domains:
                    host = f"{slug}{n}.{rng.choice(TLDS)}"
                domains.add(host)
                scheme = "https" if rng.random() < 0.8 else "http"
                www = "www." if rng.random() < 0.6 else ""
                website = f"{scheme}://{www}{host}"
        domain = domain_from_website(website)

        email = ""
        if rng.random() >= NO_EMAIL_RATE:
            if domain and rng.random() < 0.8:
                mailbox = rng.choice([*ROLE_MAILBOXES, first.lower(), f"{first[0]}{last}".lower()])
                email = f"{_slug(mailbox).replace('-', '')}@{domain}"
            else:
                email = f"{_slug(first)}.{_slug(last)}{rng.randint(1, 99)}@{rng.choice(FREE_MAIL)}"

        low, high = INDUSTRY_SIZES.get(industry, DEFAULT_SIZE)
        employees = None if rng.random() < 0.05 else int(min(high, low + rng.expovariate(3 / (high - low))))

        age = timedelta(seconds=rng.uniform(0, 365 * 24 * 3600))
        # About one lead in five has been reported on, at some time after it was created.
        last_reported_at = now - age * rng.random() if rng.random() < 0.2 else None

        yield Lead(
            company_name=company,
            website=website,
            domain=domain,
            email=email,
            phone=f"({rng.randint(201, 989)}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}",
            contact_name="" if rng.random() < 0.1 else f"{first} {last}",
            industry=industry,
            city=city,
            state=state,
            country="US",
            employee_count=employees,
            score=max(0, min(100, round(rng.gauss(58, 18)))),
            source=rng.choices(SOURCES, SOURCE_WEIGHTS)[0],
            status=rng.choices(statuses, status_weights)[0],
            last_reported_at=last_reported_at,
            created_at=now - age,
        )

from django.core.management.base import BaseCommand, CommandError

from leads.models import Lead
from reports.selectors import brand_default
from reports.services import report_generate


class Command(BaseCommand):
    help = (
        "Generate a website-audit report for one lead (with the default brand profile) and print where it "
        "is and what it cost."
    )

    def add_arguments(self, parser):
        parser.add_argument("--lead", type=int, required=True, help="Lead id")

    def handle(self, *args, lead: int, **options):
        try:
            lead_obj = Lead.objects.get(pk=lead)
        except Lead.DoesNotExist as exc:
            raise CommandError(f"No lead with id {lead}.") from exc
        outcome = report_generate(lead=lead_obj, brand=brand_default())
        breakdown = ", ".join(f"{name} ${cost}" for name, cost in outcome.cost_breakdown.items())
        if outcome.report is None:
            error = outcome.error
            kind = "transient" if error.transient else "permanent"
            raise CommandError(
                f"No report for lead {lead}: {error.provider} failed ({kind}, {error.code}): "
                f"{error.message}. Cost ${outcome.cost_usd} ({breakdown or 'nothing paid'})."
            )
        report = outcome.report
        self.stdout.write(f"Report {report.pk} for lead {lead}: {report.get_absolute_url()}")
        self.stdout.write(f"PDF: {report.get_absolute_url().rstrip('/')}.pdf")
        self.stdout.write(f"Cost: ${outcome.cost_usd} ({breakdown})")

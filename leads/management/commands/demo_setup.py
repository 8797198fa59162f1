import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from leads.models import Lead

DEMO_USERNAME = "admin"
DEMO_EMAIL = "admin@example.com"
DEMO_LEADS = 500
LOGIN_URL = "http://127.0.0.1:8000/admin/"


class Command(BaseCommand):
    help = (
        "Prepare a local demo: the superuser `admin` (password from DEMO_ADMIN_PASSWORD, else generated "
        "and printed once) and 500 demo leads if there are none. Safe to run again."
    )

    def add_arguments(self, parser):
        parser.add_argument("--url", default=LOGIN_URL, help=f"Login URL to print (default {LOGIN_URL}).")

    def handle(self, *args, url: str, **options):
        password = self._ensure_admin()
        if not Lead.objects.exists():
            call_command("seed_leads", count=DEMO_LEADS, verbosity=0)
            self.stdout.write(f"Created {DEMO_LEADS} demo leads.")

        self.stdout.write(f"Log in at {url}")
        self.stdout.write(f"  username: {DEMO_USERNAME}")
        self.stdout.write(f"  password: {password}" if password else "  password: " + self._unknown_reason())

    def _ensure_admin(self) -> str:
        """The admin's password when it is known here, else an empty string."""
        User = get_user_model()
        configured = settings.DEMO_ADMIN_PASSWORD
        user = User.objects.filter(username=DEMO_USERNAME).first()
        if user is None:
            password = configured or secrets.token_urlsafe(12)
            User.objects.create_superuser(username=DEMO_USERNAME, email=DEMO_EMAIL, password=password)
            self.stdout.write(f"Created the demo superuser {DEMO_USERNAME!r}.")
            if not configured:
                self.stdout.write(self.style.WARNING("The generated password is shown only this once."))
            return password
        if configured and user.check_password(configured):
            return configured
        return ""

    def _unknown_reason(self) -> str:
        if settings.DEMO_ADMIN_PASSWORD:
            return "(DEMO_ADMIN_PASSWORD does not match the existing user's password; left unchanged)"
        return (
            "(shown when the user was created; set DEMO_ADMIN_PASSWORD or run manage.py changepassword admin)"
        )

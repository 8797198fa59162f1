"""The lead resource for django-import-export: how one file row becomes a new, updated or unchanged lead.

Rows are matched to leads on the domain of their website, or on their email when they have no
website. Websites go through the lead admin's own form (its form field, `clean_website` if it has one,
and the model's validators), so a file accepts exactly the websites the lead form accepts.
"""

from functools import partial

from django.contrib import admin
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db.models.functions import Lower
from django.forms import modelform_factory
from import_export import fields, resources, widgets

from leads.models import Lead, domain_from_website

ROW_NUMBER = "__row__"
IMPORT_SOURCE = "import"
# How many new and updated rows the dry run keeps to show, per kind.
SAMPLE_ROWS = 20


class KeepWhenEmpty(fields.Field):
    """An empty cell leaves the lead's value as it is: a file never erases what a lead has."""

    def save(self, instance, row, is_m2m=False, **kwargs):
        if row.get(self.column_name, "") == "":
            return
        super().save(instance, row, is_m2m, **kwargs)


class WholeNumberWidget(widgets.Widget):
    def __init__(self, low: int, high: int | None = None):
        super().__init__()
        self.low, self.high = low, high

    def clean(self, value, row=None, **kwargs):
        bounds = f"from {self.low} to {self.high}" if self.high is not None else f"of at least {self.low}"
        refused = ValueError(f"“{value}” is not a whole number {bounds}.")
        try:
            number = float(str(value).replace(",", "").replace(" ", ""))
        except ValueError:
            raise refused from None
        if not number.is_integer() or number < self.low or (self.high is not None and number > self.high):
            raise refused
        return int(number)


class IndustryWidget(widgets.Widget):
    """An industry by its value (`law_firm`) or its label (`Law firm`), in any case."""

    def clean(self, value, row=None, **kwargs):
        wanted = _plain(value)
        for choice, label in Lead.Industry.choices:
            if wanted in (_plain(choice), _plain(label)):
                return choice
        known = ", ".join(label for _, label in Lead.Industry.choices)
        raise ValueError(f"Unknown industry “{value}”; use one of: {known}.")


class CountryWidget(widgets.Widget):
    def clean(self, value, row=None, **kwargs):
        code = str(value).strip().upper()
        if len(code) != 2 or not code.isalpha():
            raise ValueError(f"“{value}” is not a two-letter country code (such as US).")
        return code


def _shown(value) -> str:
    return "" if value is None else str(value)


def _plain(text) -> str:
    return "".join(character for character in str(text).lower() if character.isalnum())


def _text(name: str) -> KeepWhenEmpty:
    return KeepWhenEmpty(attribute=name, column_name=name, widget=widgets.CharWidget())


def website_form_class():
    """The lead admin's form, reduced to the website: what the lead form accepts, and nothing else."""
    lead_admin = admin.site.get_model_admin(Lead)
    form = modelform_factory(
        Lead,
        form=lead_admin.form,
        fields=["website"],
        formfield_callback=partial(lead_admin.formfield_for_dbfield, request=None),
    )

    class WebsiteForm(form):
        def _post_clean(self):
            # The model's validation runs on the whole lead right after (LeadResource.validate_instance);
            # run here as well it would also check the table's constraints, a query for every row.
            pass

    return WebsiteForm


def match_key(*, website: str, email: str) -> str | None:
    """What a row is matched on: the domain of its website, else its email (case-insensitive)."""
    if domain := domain_from_website(website):
        return f"domain:{domain}"
    if email:
        return f"email:{email.lower()}"
    return None


class LeadResource(resources.ModelResource):
    """Imports chunks of rows whose columns are already named after lead fields (see import_files).

    `write=False` is the dry run: every row is matched, cleaned and validated, nothing is saved.
    `seen` maps the match key of each row already accepted in this file to its row number, so a
    second row for the same lead is reported rather than merged or duplicated.
    """

    company_name = _text("company_name")
    website = _text("website")
    email = _text("email")
    phone = _text("phone")
    contact_name = _text("contact_name")
    city = _text("city")
    state = _text("state")
    country = KeepWhenEmpty(attribute="country", column_name="country", widget=CountryWidget())
    industry = KeepWhenEmpty(attribute="industry", column_name="industry", widget=IndustryWidget())
    employee_count = KeepWhenEmpty(
        attribute="employee_count", column_name="employee_count", widget=WholeNumberWidget(0)
    )
    score = KeepWhenEmpty(attribute="score", column_name="score", widget=WholeNumberWidget(0, 100))
    source = _text("source")

    class Meta:
        model = Lead
        fields = [
            "company_name",
            "website",
            "email",
            "phone",
            "contact_name",
            "city",
            "state",
            "country",
            "industry",
            "employee_count",
            "score",
            "source",
        ]
        skip_unchanged = True
        report_skipped = False
        # No diff (a deep copy of every lead): skip_row compares the values noted in after_init_instance.
        skip_diff = True
        clean_model_instances = True
        use_transactions = False

    def __init__(self, *, write: bool, column_labels: dict[str, str], website_form=None):
        super().__init__()
        self.write = write
        self.column_labels = column_labels
        self.website_form = website_form or website_form_class()
        self.seen: dict[str, int] = {}
        self._prepared: dict[int, tuple[str, str | None, ValidationError | None]] = {}
        self._matches: dict[str, Lead] = {}
        self._file_fields: list[str] = []
        self._creates: list[Lead] = []
        self._before: dict | None = None
        self._changes: list[list[str]] = []
        self.samples: dict[str, list] = {"new": [], "updated": []}

    def clean_website(self, value: str) -> str:
        """The website as the lead form stores it (`acme.com` -> `https://acme.com`), or ValidationError."""
        if not value:
            return ""
        form = self.website_form(data={"website": value})
        if not form.is_valid():
            raise ValidationError({"website": form.errors["website"]})
        return form.cleaned_data["website"]

    def prepare(self, row: dict) -> tuple[str, str | None, ValidationError | None]:
        """(cleaned website, match key, error) of a row, before it is matched."""
        try:
            website = self.clean_website(row.get("website", ""))
        except ValidationError as error:
            return "", None, error
        key = match_key(website=website, email=row.get("email", ""))
        if key is None:
            error = ValidationError(
                "A lead needs a website or an email, so that a later import can match it."
            )
            return website, None, error
        return website, key, None

    def before_import(self, dataset, **kwargs):
        self._prepared = {}
        self._file_fields = [name for name in dataset.headers if name in self.fields]
        domains, emails = set(), set()
        for row in dataset.dict:
            prepared = self.prepare(row)
            self._prepared[row[ROW_NUMBER]] = prepared
            key = prepared[1]
            if key and key.startswith("domain:"):
                domains.add(key.removeprefix("domain:"))
            elif key:
                emails.add(key.removeprefix("email:"))
        # The oldest lead wins when several already share a domain or an email.
        matches: dict[str, Lead] = {}
        for lead in Lead.objects.filter(domain__in=domains).order_by("-pk"):
            matches[f"domain:{lead.domain}"] = lead
        by_email = Lead.objects.annotate(email_lower=Lower("email")).filter(email_lower__in=emails)
        for lead in by_email.order_by("-pk"):
            matches[f"email:{lead.email_lower}"] = lead
        self._matches = matches

    def before_import_row(self, row, **kwargs):
        website, key, error = self._prepared[row[ROW_NUMBER]]
        if error is not None:
            raise error
        if key in self.seen:
            what = "domain" if key.startswith("domain:") else "email"
            value = key.split(":", 1)[1]
            raise ValidationError(
                f"Same {what} as row {self.seen[key]} ({value}): one lead, keep one row for it."
            )
        if "website" in row:
            row["website"] = website

    def after_init_instance(self, instance, new, row, **kwargs):
        self._before = None if new else {name: getattr(instance, name) for name in self._file_fields}

    def skip_row(self, instance, original, row, import_validation_errors=None):
        """Unchanged: an existing lead whose every column in the file already holds the row's value."""
        if self._before is None or import_validation_errors:
            return False
        self._changes = [
            [self.column_labels.get(name, name), _shown(value), _shown(getattr(instance, name))]
            for name, value in self._before.items()
            if getattr(instance, name) != value
        ]
        return not self._changes

    def get_instance(self, instance_loader, row):
        return self._matches.get(self._prepared[row[ROW_NUMBER]][1])

    def validate_instance(self, instance, import_validation_errors=None, validate_unique=True):
        errors = dict(import_validation_errors or {})
        try:
            # Uniqueness is the matching's job; the score's range is checked by its widget.
            instance.full_clean(exclude=errors.keys(), validate_unique=False, validate_constraints=False)
        except ValidationError as error:
            errors = error.update_error_dict(errors)
        if errors:
            raise ValidationError(errors)

    def before_save_instance(self, instance, row, **kwargs):
        if instance.pk is None and not instance.source:
            instance.source = IMPORT_SOURCE

    def do_instance_save(self, instance, is_create):
        if is_create:
            # Inserted together when the chunk ends (after_import): one statement per chunk.
            instance.domain = domain_from_website(instance.website)
            self._creates.append(instance)
        else:
            # Only the file's columns: a worker may be stamping last_reported_at on the same lead.
            instance.save(update_fields=[*self._file_fields, "updated_at"])

    def save_instance(self, instance, is_create, row, **kwargs):
        if self.write:
            super().save_instance(instance, is_create, row, **kwargs)

    def after_import(self, dataset, result, **kwargs):
        """Insert the chunk's new leads in one statement.

        Not ModelResource's: it resets the id sequence to max(id) here, for files that carry ids. Ours
        never do, and a reset racing another session's inserts would hand out ids already taken.
        """
        creates, self._creates = self._creates, []
        if creates:
            Lead.objects.bulk_create(creates)

    def after_import_row(self, row, row_result, **kwargs):
        if row_result.import_type in ("new", "update", "skip"):
            self.seen[self._prepared[row[ROW_NUMBER]][1]] = row[ROW_NUMBER]
        if row_result.import_type == "new" and len(self.samples["new"]) < SAMPLE_ROWS:
            website = self._prepared[row[ROW_NUMBER]][0]
            self.samples["new"].append(
                {"row": row[ROW_NUMBER], "company": row_result.object_repr, "website": website}
            )
        if row_result.import_type == "update" and len(self.samples["updated"]) < SAMPLE_ROWS:
            self.samples["updated"].append(
                {
                    "row": row[ROW_NUMBER],
                    "lead": row_result.object_id,
                    "company": row_result.object_repr,
                    "changes": self._changes,
                }
            )

    def remember(self, row: dict) -> None:
        """Count a row accepted by an earlier slice of the same phase as seen (a resumed phase)."""
        key = self.prepare(row)[1]
        if key is not None:
            self.seen.setdefault(key, row[ROW_NUMBER])

    def reason(self, error: ValidationError) -> str:
        """One line naming the file's columns: `url: Enter a valid URL.; score: “120” is not ...`."""
        if not hasattr(error, "error_dict"):
            return " ".join(error.messages)
        parts = []
        for field, messages in error.message_dict.items():
            text = " ".join(messages)
            if field == NON_FIELD_ERRORS:
                parts.append(text)
            else:
                parts.append(f"{self.column_labels.get(field, field)}: {text}")
        return "; ".join(parts)

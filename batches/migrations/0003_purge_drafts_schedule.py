"""The hourly purge of stale draft batches, as a django-q2 schedule (created idempotently)."""

from django.db import migrations

SCHEDULE_NAME = "batches.purge_stale_drafts"


def create_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={"func": "batches.tasks.batch_purge_stale_drafts_task", "schedule_type": "H", "repeats": -1},
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("batches", "0002_recovery_schedule")]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]

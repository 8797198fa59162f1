"""The periodic recovery of batches whose workers died, as a django-q2 schedule (created idempotently)."""

from django.conf import settings
from django.db import migrations

SCHEDULE_NAME = "batches.recover_batches"


def create_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "batches.tasks.batch_recover_task",
            "schedule_type": "I",
            "minutes": settings.RECOVERY_INTERVAL_MINUTES,
            "repeats": -1,
        },
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("batches", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]

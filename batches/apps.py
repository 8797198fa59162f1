from django.apps import AppConfig


class BatchesConfig(AppConfig):
    name = "batches"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from leadgen import dbpool

        # The runners live in django-q2's forked worker processes.
        dbpool.register()

from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class ReportsConfig(AppConfig):
    name = "reports"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from reports import checks  # noqa: F401  (registers the system checks)
        from reports.models import ProviderPrice
        from reports.selectors import price_table_forget

        post_save.connect(price_table_forget, sender=ProviderPrice, dispatch_uid="price-memo-save")
        post_delete.connect(price_table_forget, sender=ProviderPrice, dispatch_uid="price-memo-delete")

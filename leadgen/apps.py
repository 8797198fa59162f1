from django.contrib.admin.apps import AdminConfig


class LeadgenAdminConfig(AdminConfig):
    """Django's admin on the project's site (leadgen.admin_site.AdminSite)."""

    default_site = "leadgen.admin_site.AdminSite"

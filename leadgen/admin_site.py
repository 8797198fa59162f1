"""The project's admin site: Django's, with every search bounded before a changelist builds its query."""

from functools import wraps

from django.contrib import admin
from django.contrib.admin.views.main import SEARCH_VAR
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.template.response import TemplateResponse

from leadgen.filters import search_terms

# The search box of every changelist, and the term of the autocomplete widgets.
AUTOCOMPLETE_VAR = "term"


class AdminSite(admin.AdminSite):
    def admin_view(self, view, cacheable=False):
        """Every admin page: a search beyond `leadgen.filters.search_terms` is a 400 with the reason,
        answered before any query (Django would add a condition per word, however many)."""

        @wraps(view)
        def bounded(request, *args, **kwargs):
            for param in (SEARCH_VAR, AUTOCOMPLETE_VAR):
                try:
                    search_terms(request.GET.get(param, ""))
                except ValidationError as error:
                    return self.search_refused(request, param, error.messages[0])
            return view(request, *args, **kwargs)

        return super().admin_view(bounded, cacheable)

    def search_refused(self, request, param: str, message: str):
        if param == AUTOCOMPLETE_VAR:
            return JsonResponse({"error": message}, status=400)
        context = {**self.each_context(request), "title": "Search refused", "message": message}
        return TemplateResponse(request, "admin/search_refused.html", context, status=400)

"""The project-wide API error format, checked through a real DRF view using the project's handler."""

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework.permissions import AllowAny
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from leadgen.errors import ConflictError, IdempotencyConflict, ServiceError


def raising_view(exc: Exception):
    class RaisingApi(APIView):
        authentication_classes = []
        permission_classes = [AllowAny]

        def post(self, request):
            raise exc

    return RaisingApi.as_view()


def call(exc: Exception):
    response = raising_view(exc)(APIRequestFactory().post("/x/", {}, format="json"))
    response.render()
    return response


@pytest.mark.parametrize(
    ("exc", "status", "body"),
    [
        (ServiceError("Nothing selected."), 400, {"detail": "Nothing selected."}),
        (
            ServiceError(fields={"budget_usd": ["Must be positive."], "lead_ids": ["Unknown: 7."]}),
            400,
            {"budget_usd": ["Must be positive."], "lead_ids": ["Unknown: 7."]},
        ),
        (
            ServiceError("Over budget.", fields={"budget_usd": ["Too low."]}),
            400,
            {"budget_usd": ["Too low."], "detail": "Over budget."},
        ),
        (
            ConflictError("The batch has already finished."),
            409,
            {"detail": "The batch has already finished."},
        ),
        (IdempotencyConflict("Key reused."), 422, {"detail": "Key reused."}),
        (Http404("gone"), 404, {"detail": "Not found."}),
        (PermissionDenied(), 403, {"detail": "You do not have permission to perform this action."}),
    ],
)
def test_errors_are_translated_once_for_every_endpoint(exc, status, body):
    response = call(exc)

    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.data == body


def test_other_exceptions_are_not_swallowed():
    with pytest.raises(ZeroDivisionError):
        call(ZeroDivisionError())

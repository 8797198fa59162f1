"""The project-wide API error format."""

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions
from rest_framework.views import exception_handler as drf_exception_handler

from leadgen.errors import ConflictError, IdempotencyConflict, ServiceError


def exception_handler(exc, context):
    """Translate the project's service errors once, for every endpoint.

    Body shape: `{"detail": "..."}` or `{"field": ["message", ...], ...}` for field errors. Status: 409 for
    ConflictError, 422 for IdempotencyConflict, 400 for any other ServiceError, 413 for a body over
    DATA_UPLOAD_MAX_MEMORY_SIZE (instead of Django's HTML 400).
    """
    if isinstance(exc, ServiceError):
        status = 400
        if isinstance(exc, ConflictError):
            status = 409
        elif isinstance(exc, IdempotencyConflict):
            status = 422
        exc = exceptions.APIException(detail=exc.as_detail())
        exc.status_code = status
    elif isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        exc = exceptions.APIException(detail=f"The request body is larger than the limit of {limit} bytes.")
        exc.status_code = 413
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    return drf_exception_handler(exc, context)

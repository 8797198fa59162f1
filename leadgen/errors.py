"""The one error type that services raise; admin, API and commands each translate it once."""


class ServiceError(Exception):
    """Bad input or a refused operation. `fields` maps field names to messages when input was bad."""

    def __init__(self, message: str = "", *, fields: dict[str, list[str]] | None = None):
        self.message = message
        self.fields = fields or {}
        super().__init__(message or "; ".join(f"{k}: {' '.join(v)}" for k, v in self.fields.items()))

    def as_detail(self) -> dict | str:
        if self.fields:
            return {**self.fields, **({"detail": self.message} if self.message else {})}
        return self.message


class ConflictError(ServiceError):
    """The object is in a state that does not allow the operation (HTTP 409)."""


class IdempotencyConflict(ServiceError):
    """An idempotency key reused with a different request (HTTP 422)."""

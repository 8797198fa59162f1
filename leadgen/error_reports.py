"""What error reports and debug pages may show of the settings and of a traceback's variables."""

import re

from django.views.debug import SafeExceptionReporterFilter

# The password of a URL's user info: `scheme://user:password@host` (DATABASE_URL, REDIS_URL, EMAIL_URL
# and every setting built from them, such as CACHES and CHANNEL_LAYERS).
URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/@:\s]*:)[^@\s]*(?=@)", re.I)


class CredentialsHidingFilter(SafeExceptionReporterFilter):
    """Django's filter (settings whose names look secret), plus the passwords inside URLs anywhere.

    Django hides `DATABASES["default"]["PASSWORD"]` by its key, but not the same password inside
    `DATABASE_URL`, `REDIS_URL` or a cache's `LOCATION`: those show with it masked here, on debug pages
    and in the error emails alike.
    """

    def cleanse_setting(self, key, value):
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, str):
            return URL_PASSWORD.sub(rf"\g<head>{self.cleansed_substitute}", cleansed)
        return cleansed

    def get_traceback_frame_variables(self, request, tb_frame):
        return [
            (name, self.cleanse_setting("", value) if isinstance(value, str | dict | list | tuple) else value)
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]

"""The environment the test suite runs in, set before pytest-django loads the settings.

The settings refuse to start without SECRET_KEY when DEBUG is off, as it is in the tests; the suite
gets a random key of its own (unless one is set), which the processes the tests start inherit.
Loaded with `-p leadgen.pytest_plugin` (pytest.ini).
"""

import os
import secrets

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config, parser, args):
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    return (yield)

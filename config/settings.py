"""Rebound settings. Every environment variable is read once, here, through config.env."""
from datetime import timedelta
from email.utils import getaddresses
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF

from config.env import env_bool, env_float, env_int, env_list, env_map, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("REBOUND_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "rebound-local-only-insecure-key-change-me-in-production")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# Behind HTTPS (a proxy that terminates TLS and sets X-Forwarded-Proto): DJANGO_SECURE=true
# turns on secure cookies, HSTS and the redirect to HTTPS; each can be tuned on its own.
SECURE = env_bool("DJANGO_SECURE", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if SECURE else None
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", SECURE)
SESSION_COOKIE_SECURE = env_bool("DJANGO_SESSION_COOKIE_SECURE", SECURE)
CSRF_COOKIE_SECURE = env_bool("DJANGO_CSRF_COOKIE_SECURE", SECURE)
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31_536_000 if SECURE else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", SECURE)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", SECURE)
# The probes answer over plain HTTP inside the network, whatever the redirect says.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "django_q",
    "health_check",
    "axes",
    "operations",
    "inference",
    "imports",
    "interviews",
    "executions",
    "batches",
    "webhooks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "operations.middleware.DatabaseUnavailableMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into its lockout page.
    "axes.middleware.AxesMiddleware",
]

# Content-Security-Policy: scripts, styles, images and fonts from the site itself only; no
# inline script or style, no eval. Pages show text that users and their exports wrote, so a
# script that ever slipped past escaping would still not run. htmx is configured for it in
# base.html (no injected indicator styles, no eval).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        # Swagger UI draws its icons from data: URIs.
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
                "operations.context_processors.notifications",
            ],
        },
    },
]

# Databases. The embedded default is SQLite in WAL mode; IMMEDIATE transactions take the write
# lock up front, so two writers queue on the busy timeout instead of failing with
# "database is locked" when a read lock is upgraded mid-transaction.
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
    }
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "rebound.sqlite3",
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Broker: django-q2's ORM broker on the default database, or Redis when REDIS_URL is set.
REDIS_URL = env_str("REDIS_URL")
Q_TIMEOUT = env_int("REBOUND_TASK_TIMEOUT", 3600, minimum=1)
Q_CLUSTER = {
    "name": env_str("REBOUND_QUEUE", "rebound"),
    "workers": env_int("REBOUND_WORKERS", 2, minimum=1),
    "timeout": Q_TIMEOUT,
    # The engine owns retries: django-q2 must acknowledge every delivery once and never re-run it
    # on its own (its redelivery after `retry` seconds is what the lease recovery replaces).
    "retry": env_int("REBOUND_TASK_RETRY", Q_TIMEOUT + 60, minimum=1),
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "poll": 0.05,
    "save_limit": env_int("REBOUND_Q_SAVE_LIMIT", 200, minimum=-1),
    "label": "Delivery (django-q2)",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# The cache holds the throttles' counts, so every web process must see the same one: Redis
# when there is one, otherwise files on this host's disk.
CACHES = {
    "default": (
        {"BACKEND": "config.cache.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
              "LOCATION": str(VAR_DIR / "cache")}
    )
}

# Storage: uploads go through Django's storage API. The default is a private folder that is
# never served (no MEDIA_URL route exists); REBOUND_S3_BUCKET puts them in S3-compatible object
# storage instead (django-storages), so every host reads the same uploads.
S3 = {
    "BUCKET": env_str("REBOUND_S3_BUCKET"),
    "ENDPOINT": env_str("REBOUND_S3_ENDPOINT"),  # empty: AWS itself
    "ACCESS_KEY": env_str("REBOUND_S3_ACCESS_KEY"),
    "SECRET_KEY": env_str("REBOUND_S3_SECRET_KEY"),
    "REGION": env_str("REBOUND_S3_REGION", "us-east-1"),
}
STORAGES = {
    "default": (
        {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
            "bucket_name": S3["BUCKET"], "endpoint_url": S3["ENDPOINT"] or None,
            "access_key": S3["ACCESS_KEY"] or None, "secret_key": S3["SECRET_KEY"] or None,
            "region_name": S3["REGION"], "default_acl": None, "file_overwrite": False,
            "addressing_style": "path", "signature_version": "s3v4"}}
        if S3["BUCKET"] else
        {"BACKEND": "django.core.files.storage.FileSystemStorage",
         "OPTIONS": {"location": env_str("REBOUND_STORAGE_DIR", str(VAR_DIR / "uploads"))}}
    ),
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
# Sign-ins that cannot be guessed (django-axes): after REBOUND_LOGIN_FAILURES wrong passwords
# for one account from one client address, that account is locked at that address for
# REBOUND_LOGIN_COOLOFF minutes. The key is the pair, so nobody elsewhere can lock a user out,
# and failures during a lockout do not extend it. A client address that tries tokens that do
# not exist is limited the same way (its key has no username). Staff unlock in the admin.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("REBOUND_LOGIN_FAILURES", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("REBOUND_LOGIN_COOLOFF", 15.0, minimum=0.1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "operations.lockout.respond"
AXES_VERBOSE = False
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first, so an anonymous API call gets 401 with WWW-Authenticate, not 403.
        "operations.api.authentication.LimitedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "operations.api.pagination.StrictLimitOffsetPagination",
    # JSON bodies only (the upload takes multipart): what the schema documents is all that is
    # read.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "operations.api.problems.problem_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Rebound API",
    "DESCRIPTION": "Background work that comes back: operations, attempts and retries.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Two status vocabularies: an operation's, and what a job's cell shows its user.
    "ENUM_NAME_OVERRIDES": {
        "OperationStatusEnum": "operations.models.Status",
        "CellStatusEnum": "executions.grid.STATUSES",
    },
}

# The engine.
REBOUND = {
    "LEASE_SECONDS": env_float("REBOUND_LEASE_SECONDS", 30.0, minimum=1.0),
    "MAX_MANUAL_RETRIES": env_int("REBOUND_MAX_MANUAL_RETRIES", 3, minimum=0),
    "REDELIVER_AFTER_SECONDS": env_float("REBOUND_REDELIVER_AFTER", 30.0, minimum=1.0),
    "DISPATCH_TICK_SECONDS": env_float("REBOUND_DISPATCH_TICK", 0.05, minimum=0.01),
    "RETRY_AFTER_CAP_SECONDS": env_float("REBOUND_RETRY_AFTER_CAP", 300.0, minimum=1.0),
    "RETRY_THROTTLE": env_str("REBOUND_RETRY_THROTTLE", "30/min"),
    # At most one email digest per owner, and one staff alert per kind, in this many seconds.
    "NOTIFY_EVERY_SECONDS": env_float("REBOUND_NOTIFY_EVERY", 600.0, minimum=1.0),
    # Children of a bulk retry start at most this many per second.
    "BULK_RETRY_RATE": env_float("REBOUND_BULK_RETRY_RATE", 5.0, minimum=0.01),
    # Gates (operations/gates.py): the cool-down before the first probe of an open gate, and
    # its cap while probes keep failing; how many waiting operations a gate that closed
    # releases in its first second (doubling every second); how long work may wait for a
    # dependency before it fails with dependency_down.
    # Finished operations (with their attempts, and the jobs and batches whose work all
    # finished) older than this are pruned; the figures (rollups) are kept.
    "KEEP_DAYS": env_float("REBOUND_KEEP_DAYS", 30.0, minimum=0.01),
    "GATES": env_bool("REBOUND_GATES", True),  # off: each failure is retried on its own
    "GATE_COOLDOWN_SECONDS": env_float("REBOUND_GATE_COOLDOWN", 5.0, minimum=0.1),
    "GATE_COOLDOWN_MAX_SECONDS": env_float("REBOUND_GATE_COOLDOWN_MAX", 30.0, minimum=0.1),
    "GATE_SLOW_START": env_float("REBOUND_GATE_SLOW_START", 2.0, minimum=0.1),
    "WAIT_LIMIT_SECONDS": env_float("REBOUND_WAIT_LIMIT", 86400.0, minimum=1.0),
    # Bearer token that may read /metrics (staff sessions always may); empty: staff only.
    "METRICS_TOKEN": env_str("REBOUND_METRICS_TOKEN", ""),
    # Cells of one job in flight at once, so one job cannot take every worker.
    "JOB_CONCURRENCY": env_int("REBOUND_JOB_CONCURRENCY", 4, minimum=1),
    # After an operation, a worker claims and runs whatever else is pending for up to this long
    # before taking the next delivery (0: one delivery, one operation).
    "DRAIN_SECONDS": env_float("REBOUND_DRAIN_SECONDS", 2.0, minimum=0.0),
    # This host's name in leases and heartbeats (the host name when empty); several hosts
    # must have different ones.
    "HOST_ID": env_str("REBOUND_HOST_ID", ""),
    # A host silent this long is dead: another host's dispatcher recovers what it held.
    "HOST_DEAD_AFTER_SECONDS": env_float("REBOUND_HOST_DEAD_AFTER", 5.0, minimum=1.0),
    # /readyz wants a dispatcher heartbeat at most this old.
    "READY_DISPATCHER_SECONDS": env_float("REBOUND_READY_DISPATCHER_SECONDS", 5.0, minimum=1.0),
    # The port `manage.py run` serves the web app on.
    "WEB_PORT": env_int("PORT", 8000, minimum=1),
}

# Mail: the console by default (emails are printed); SMTP by setting EMAIL_BACKEND and the
# EMAIL_* variables. ADMINS ("Name <a@b>, ...") get the staff alerts.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Rebound <rebound@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
ADMINS = [getaddresses([entry])[0] for entry in env_list("ADMINS", [])]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"line": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "line"}},
    "root": {"handlers": ["console"], "level": env_str("REBOUND_LOG_LEVEL", "INFO")},
    "loggers": {"django-q": {"level": "WARNING"}},
}

# The AI provider: any OpenAI-compatible chat-completions API. The default is the local
# inference service that `manage.py run` starts.
INFERENCE = {
    "BASE_URL": env_str("REBOUND_INFERENCE_URL", "http://127.0.0.1:8001/v1"),
    "API_KEY": env_str("REBOUND_INFERENCE_KEY", "local-dev-key"),
    "MODEL": env_str("REBOUND_INFERENCE_MODEL", "rebound-local-1"),
    "CONNECT_TIMEOUT": env_float("REBOUND_INFERENCE_CONNECT_TIMEOUT", 3.0, minimum=0.1),
    "READ_TIMEOUT": env_float("REBOUND_INFERENCE_READ_TIMEOUT", 20.0, minimum=0.1),
    "DEADLINE": env_float("REBOUND_INFERENCE_DEADLINE", 25.0, minimum=0.1),
    "MAX_RESPONSE_BYTES": env_int("REBOUND_INFERENCE_MAX_BYTES", 1_000_000, minimum=1024),
    # The regions the inference router serves (X-Region); jobs and sessions choose from these.
    "REGIONS": env_list("REBOUND_INFERENCE_REGIONS",
                        ["us-east", "eu-west", "asia-pacific", "demo-flaky", "demo-outage"]),
}

# Webhooks: where deliveries may go, and how long a failing endpoint is retried.
WEBHOOKS = {
    # The only private networks (CIDR) a webhook URL may reach, e.g. "127.0.0.1/32" for a
    # receiver on this machine; plain http:// is accepted only to these. Empty: public only.
    "ALLOWED_NETWORKS": env_list("REBOUND_WEBHOOK_ALLOWED_NETWORKS", []),
    # Names resolved from this list ("name=address,…") instead of DNS; when it is set (even
    # empty), no other name resolves. For closed networks, and tests that must ask no DNS.
    "HOSTS": env_map("REBOUND_WEBHOOK_HOSTS"),
    # false: only the allowed networks are reachable, no public address (a closed network;
    # the tests, which must never send a packet beyond this machine).
    "PUBLIC": env_bool("REBOUND_WEBHOOK_PUBLIC", True),
    "TIMEOUT": env_float("REBOUND_WEBHOOK_TIMEOUT", 10.0, minimum=0.1),
    # The first retry after a failed delivery (later ones are 3x longer each, up to 8 h).
    "FIRST_RETRY_SECONDS": env_float("REBOUND_WEBHOOK_FIRST_RETRY", 60.0, minimum=0.01),
    # An endpoint that fails this long is turned off and its owner told.
    "GIVE_UP_SECONDS": env_float("REBOUND_WEBHOOK_GIVE_UP", 3 * 86400.0, minimum=1.0),
    "MAX_RESPONSE_CHARS": 1000,  # of a response body, kept with the delivery
}

# Imports: limits on uploaded exports (bytes unless named otherwise).
IMPORTS = {
    "MAX_UPLOAD_BYTES": env_int("REBOUND_UPLOAD_MAX_BYTES", 1024 * 1024 * 1024, minimum=1024),
    "MAX_INFLATED_BYTES": env_int("REBOUND_EXPORT_MAX_INFLATED", 4 * 1024**3, minimum=1024),
    "MAX_RATIO": env_int("REBOUND_EXPORT_MAX_RATIO", 200, minimum=2),
    "MAX_MEMBERS": env_int("REBOUND_EXPORT_MAX_MEMBERS", 10_000, minimum=1),
    "MAX_CONVERSATION_BYTES": env_int("REBOUND_CONVERSATION_MAX_BYTES", 32 * 1024 * 1024,
                                      minimum=1024),
    "CHECKPOINT_SECONDS": env_float("REBOUND_CHECKPOINT_SECONDS", 2.0, minimum=0.0),
    # Per-user rate of uploads, on the page and through the API alike.
    "UPLOAD_THROTTLE": env_str("REBOUND_UPLOAD_THROTTLE", "20/hour"),
}
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024  # larger uploads spool to a temporary file
# A batch of 500 essays of 20,000 characters is about 10 MB of JSON (up to 40 MB in UTF-8);
# larger bodies (other than file uploads, which stream) are refused.
DATA_UPLOAD_MAX_MEMORY_SIZE = 48 * 1024 * 1024

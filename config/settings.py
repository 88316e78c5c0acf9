"""Settings, read from the environment (see README "Configuration").

Only values that differ between machines come from the environment; each is parsed by a typed
reader from ``config.env`` that raises ``ImproperlyConfigured`` on a bad value. No secret has a
default unless ``DEBUG`` is on.
"""

from __future__ import annotations

from pathlib import Path

from croniter import croniter  # type: ignore[import-untyped]
from django.core.exceptions import ImproperlyConfigured

from config.database import resolve_database
from config.env import (
    env_bool,
    env_float,
    env_int,
    env_list,
    env_networks,
    env_secret,
    env_str,
)
from config.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("DATA_DIR", str(BASE_DIR / ".data")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_secret("SECRET_KEY", debug=DEBUG, debug_default="dev-only-insecure-secret-key")
# HMAC key for API key hashes. Separate from SECRET_KEY so rotating one does not void the other.
API_KEY_HMAC_SECRET = env_secret(
    "API_KEY_HMAC_SECRET", debug=DEBUG, debug_default="dev-only-insecure-api-key-secret"
)

ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", ["localhost", ".localhost", "127.0.0.1", "testserver"] if DEBUG else []
)
# Hosts that serve the public schema: the platform admin, and the API where the credential
# names the tenant. Any other host must be a tenant's Domain.
PUBLIC_HOSTS = env_list("PUBLIC_HOSTS", ["localhost", "127.0.0.1", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Reverse proxies (IPs or CIDR networks) whose X-Forwarded-For is believed. Empty: the header is
# ignored and the peer address (REMOTE_ADDR) is the client, since anyone can send the header.
TRUSTED_PROXIES = env_networks("TRUSTED_PROXIES", [])

# ---- applications: django-tenants splits them between the public and the tenant schemas ----
SHARED_APPS = [
    # Before django_tenants so that our create_tenant command wins over the library's.
    "tenants",
    "django_tenants",
    "daphne",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    # The job queue's tables live in the public schema only: listed in TENANT_APPS too, each
    # tenant would get its own queue that no worker reads.
    "procrastinate.contrib.django",
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "tenants.audit",
    "agents",
    "workflow_bridge",
]
INSTALLED_APPS = list(SHARED_APPS) + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "tenants.Tenant"
TENANT_DOMAIN_MODEL = "tenants.Domain"
PUBLIC_SCHEMA_NAME = "public"
ROOT_URLCONF = "config.urls_tenant"
PUBLIC_SCHEMA_URLCONF = "config.urls_public"
TENANT_URLCONF = "config.urls_tenant"

MIDDLEWARE = [
    # Times and counts every request; answers /metrics (config/metrics.py).
    "config.metrics.MetricsMiddleware",
    "config.middleware.RequestIdMiddleware",
    # 503 + Retry-After while the database is unreachable (see config/errors.py).
    "config.middleware.DatabaseOutageMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (admin, API docs) straight from the app, before tenant resolution: daphne
    # serves none itself, and they are the same for every tenant.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "tenants.middleware.TenantResolutionMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Remembers the request for audit entries written by model signals (tenants.audit.hooks).
    "tenants.audit.context.AuditRequestMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

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
]

WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

# ---- database ----
DATABASE = resolve_database(
    base_dir=BASE_DIR, default_name=env_str("DATABASE_NAME", "circuit_breaker")
)
DATABASES = {
    "default": {
        "ENGINE": "django_tenants.postgresql_backend",
        **DATABASE.settings,
        # Under ASGI every request runs on a thread of its own, so per-thread persistent
        # connections pile up (one new session per request, never reused). A process-wide
        # psycopg pool hands connections to whichever thread asks; Django then requires
        # CONN_MAX_AGE = 0. django-tenants sets search_path again on every checkout.
        "CONN_MAX_AGE": 0,
    }
}
DATABASE_POOL_MAX_SIZE = env_int("DATABASE_POOL_MAX_SIZE", 20, minimum=1)
# How long a request waits for a pooled connection before it gets a 503 (with Retry-After).
# During an outage every request that touches the database waits this long: keep it short.
DATABASE_POOL_TIMEOUT_SECONDS = env_float("DATABASE_POOL_TIMEOUT_SECONDS", 5.0, minimum=0.1)
# A connection attempt to an unreachable host (packets dropped, no refusal) would otherwise
# hang for minutes of TCP retries; libpq counts whole seconds (minimum 2).
DATABASE_CONNECT_TIMEOUT_SECONDS = env_int("DATABASE_CONNECT_TIMEOUT_SECONDS", 5, minimum=2)
DATABASES["default"]["OPTIONS"] = {
    "connect_timeout": DATABASE_CONNECT_TIMEOUT_SECONDS,
    **DATABASES["default"].get("OPTIONS", {}),  # a connect_timeout in DATABASE_URL wins
}
# After a restart every idle pooled connection is dead. The pool's own check on checkout
# (CONN_HEALTH_CHECKS) sleeps 1 s, 2 s, 4 s ... between dead connections, so the first
# requests after a restart waited for the whole pool timeout and failed anyway (measured: two
# 503s after 5 s each with 10 idle connections). Instead the first request that meets a dead
# connection fails at once (503) and has every idle connection tested and the dead ones
# replaced (config.database.discard_broken_connections).
if env_bool("DATABASE_POOL", True):
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": 1,
        "max_size": DATABASE_POOL_MAX_SIZE,
        "timeout": DATABASE_POOL_TIMEOUT_SECONDS,
        # psycopg_pool retries a failed connection with a doubling delay (1, 2, 4, 8 ... s)
        # until this many seconds, and a waiting request never starts another attempt
        # meanwhile: after a 30 s outage the pool could stay empty ~30 s more. Giving up
        # early lets the next request start a fresh attempt at once.
        "reconnect_timeout": DATABASE_POOL_TIMEOUT_SECONDS,
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Retry-After (seconds) on the 503 answered while the database is unreachable.
DATABASE_RETRY_AFTER_SECONDS = env_int("DATABASE_RETRY_AFTER_SECONDS", 5, minimum=1)
# /readyz waits at most this long for the database before it says "not ready" (keep it below
# the probe timeout of your load balancer or orchestrator).
READYZ_TIMEOUT_SECONDS = env_float("READYZ_TIMEOUT_SECONDS", 1.0, minimum=0.1)
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
# Issue `SET search_path` once per schema switch, not before every query (django-tenants resets
# it on every set_tenant/schema_context, rollback and reconnect).
TENANT_LIMIT_SET_CALLS = True
# New tenants' schemas are copied from this schema, which migrate_schemas keeps at the current
# migrations (tenants.schema_template); empty: every new schema is migrated (slower).
TENANT_TEMPLATE_SCHEMA = env_str("TENANT_TEMPLATE_SCHEMA", "tenant_template")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(DATA_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise expects it; collectstatic fills it
# Serve from the apps' static folders when `collectstatic` has not been run (development and
# tests); a release runs collectstatic and WhiteNoise serves STATIC_ROOT with caching headers.
WHITENOISE_USE_FINDERS = True

# ---- security ----
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Bodies above this are refused with 413 before they are parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAX_REQUEST_BYTES", 1_048_576, minimum=1024)

# ---- credentials ----
JWT_ISSUER = env_str("JWT_ISSUER", "circuit-breaker-agents")
JWT_AUDIENCE = env_str("JWT_AUDIENCE", "circuit-breaker-agents-api")
JWT_TTL_SECONDS = env_int("JWT_TTL_SECONDS", 900, minimum=30)
JWT_MAX_TTL_SECONDS = env_int("JWT_MAX_TTL_SECONDS", 3600, minimum=30)
# "kid=/path/to/ed25519.pem,kid2=/path/old.pem": the first key signs, all verify (rotation).
# In DEBUG, unset means a key generated once under DATA_DIR/jwt.
JWT_SIGNING_KEYS = env_str("JWT_SIGNING_KEYS", "")
if not JWT_SIGNING_KEYS and not DEBUG:
    raise ImproperlyConfigured("JWT_SIGNING_KEYS must be set when DEBUG is off")
# Only write last_used_at when the stored value is older than this: one UPDATE a minute per
# key, not one per request.
API_KEY_LAST_USED_RESOLUTION_SECONDS = env_int(
    "API_KEY_LAST_USED_RESOLUTION_SECONDS", 60, minimum=0
)
# Refused credentials that only *name* a tenant (wrong secret for a known key prefix, a token's
# unverified claim, garbage on a tenant's host) are written to that tenant's audit log at most
# this often per minute and process; the rest are counted in the next entry ("suppressed").
# Failures whose secret checked out (a revoked key, say) are always written.
AUDIT_AUTH_FAILURES_PER_MINUTE = env_int("AUDIT_AUTH_FAILURES_PER_MINUTE", 30, minimum=1)

# ---- agents and providers ----
# "kid=<Fernet key>,old=<older key>": encrypts provider secrets at rest; the first key seals,
# all open. Kept apart from SECRET_KEY and the database. Rotate with `manage.py reencrypt_secrets`.
FIELD_ENCRYPTION_KEYS = env_secret(
    "FIELD_ENCRYPTION_KEYS",
    debug=DEBUG,
    debug_default="dev=ZGV2LW9ubHktaW5zZWN1cmUtZmllbGQta2V5LTMyYnk=",
)
# Hosts, IPs or networks that provider base URLs and HTTP tools may reach although they are
# private (e.g. "localhost,127.0.0.1" for a local Ollama). Empty: only public addresses.
PROVIDER_ALLOWED_PRIVATE = env_list("PROVIDER_ALLOWED_PRIVATE", [])
# Bounds on what an agent or an execution request may ask for.
AGENT_MAX_TOKENS_LIMIT = env_int("AGENT_MAX_TOKENS_LIMIT", 32_000, minimum=1)
AGENT_MAX_TIMEOUT_SECONDS = env_int("AGENT_MAX_TIMEOUT_SECONDS", 900, minimum=1)
AGENT_MAX_TOOL_STEPS = env_int("AGENT_MAX_TOOL_STEPS", 25, minimum=1)

# ---- streaming and idempotency ----
# A comment line is sent on an idle SSE stream this often, so proxies keep it open.
SSE_HEARTBEAT_SECONDS = env_float("SSE_HEARTBEAT_SECONDS", 15.0, minimum=0.05)
# ---- MCP (agents/mcp) ----
# The authorization servers named in /.well-known/oauth-protected-resource. Empty: this
# platform itself (its API keys, and the tenant JWTs of POST /auth/token, are the tokens).
MCP_AUTHORIZATION_SERVERS = env_list("MCP_AUTHORIZATION_SERVERS", [])
# The largest JSON-RPC request body /mcp reads (413 beyond).
MCP_MAX_REQUEST_BYTES = env_int("MCP_MAX_REQUEST_BYTES", 4 * 1_048_576, minimum=1024)
# A 2025-11-25 session's subscriptions are purged this long after they were made (a client that
# went away without DELETE /mcp leaves them behind).
MCP_SESSION_MAX_HOURS = env_int("MCP_SESSION_MAX_HOURS", 168, minimum=1)
# A repeat of an Idempotency-Key request still in progress waits this long, then gets 409.
IDEMPOTENCY_WAIT_SECONDS = env_float("IDEMPOTENCY_WAIT_SECONDS", 10.0, minimum=0)
# How long a key's first response is kept and replayed.
IDEMPOTENCY_TTL_HOURS = env_int("IDEMPOTENCY_TTL_HOURS", 24, minimum=1)
# A run whose result is in hand keeps trying to store it this long while the database is
# unreachable (a restart, a failover) before giving up on it.
EXECUTION_STORE_PATIENCE_SECONDS = env_float("EXECUTION_STORE_PATIENCE_SECONDS", 600.0, minimum=1)
# A stream (SSE, WebSocket) rides out a database blip this long, then ends with a retryable error.
STREAM_DB_PATIENCE_SECONDS = env_float("STREAM_DB_PATIENCE_SECONDS", 10.0, minimum=0)
# How often each process checks that the credentials behind its open WebSockets still hold.
WS_CREDENTIAL_CHECK_SECONDS = env_float("WS_CREDENTIAL_CHECK_SECONDS", 5.0, minimum=0.1)
# An idle agents WebSocket gets a ``heartbeat`` message this often (ASGI cannot send pings):
# the client knows the server is there, and a vanished client's socket errors out.
WS_HEARTBEAT_SECONDS = env_float("WS_HEARTBEAT_SECONDS", 20.0, minimum=0.1)

# ---- workflows ----
# A resource that enters agent places this many times in a row without a manual step stops
# cascading (a cycle of auto activities must not run agents forever).
WORKFLOW_MAX_AGENT_STREAK = env_int("WORKFLOW_MAX_AGENT_STREAK", 20, minimum=1)

# ---- NATS JetStream (workflow events; off unless NATS_URL is set) ----
# "nats://[user:password@]host:4222" (comma-separate a cluster's servers; tls:// for TLS).
# When set, every workflow event is also written to an outbox in its own transaction and
# published by the workers (workflow_bridge/nats.py); unset, nothing is written for NATS.
NATS_URL = env_str("NATS_URL", "")
for _server in filter(None, (item.strip() for item in NATS_URL.split(","))):
    if not _server.startswith(("nats://", "tls://")):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"NATS_URL: {_server!r} must start with nats:// or tls://")
# A connection attempt, and the wait for JetStream's acknowledgement of one message.
NATS_CONNECT_TIMEOUT_SECONDS = env_float("NATS_CONNECT_TIMEOUT_SECONDS", 2.0, minimum=0.1)
NATS_PUBLISH_TIMEOUT_SECONDS = env_float("NATS_PUBLISH_TIMEOUT_SECONDS", 5.0, minimum=0.1)
# After a failure a worker leaves NATS alone for 1 s, then twice as long each time, up to this.
NATS_RETRY_MAX_SECONDS = env_float("NATS_RETRY_MAX_SECONDS", 30.0, minimum=0.1)
# Every this many seconds (a divisor of 60) a periodic job publishes what is still waiting
# (events written while NATS was down, or whose publish job was lost).
NATS_SWEEP_SECONDS = env_int("NATS_SWEEP_SECONDS", 10, minimum=1)
if 60 % NATS_SWEEP_SECONDS:
    raise ImproperlyConfigured("NATS_SWEEP_SECONDS must divide 60 (it is a cron seconds step)")
# Deduplication window of the streams the platform creates (JetStream drops a message whose
# Nats-Msg-Id it has seen within it): longer than any retry after a lost acknowledgement.
NATS_DUPLICATE_WINDOW_SECONDS = env_float("NATS_DUPLICATE_WINDOW_SECONDS", 600.0, minimum=1)
# Published outbox rows are kept this long (what went out, and when), then deleted.
NATS_OUTBOX_RETENTION_HOURS = env_int("NATS_OUTBOX_RETENTION_HOURS", 24, minimum=1)

# ---- REST framework ----
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tenants.authentication.PrincipalAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["tenants.permissions.HasRolePermission"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "config.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Circuit Breaker Agents API",
    "DESCRIPTION": "Run LLM agents: blocking, streamed (SSE) or in the background; resume; cancel.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and ReDoc from the installed sidecar package: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# ---- background jobs (procrastinate, PostgreSQL-based) ----
PROCRASTINATE_AUTODISCOVER_MODULE_NAME = "tasks"

# ==== worker: background executions (`manage.py worker`; see platform/README.md) ====
# Jobs one worker process runs at once (async runs: waiting on LLMs, not on CPU).
WORKER_CONCURRENCY = env_int("WORKER_CONCURRENCY", 10, minimum=1)
# Fallback poll for jobs that become due without a NOTIFY (retries, capped jobs); LISTEN/NOTIFY
# starts new jobs in milliseconds regardless.
WORKER_POLLING_INTERVAL_SECONDS = env_float("WORKER_POLLING_INTERVAL_SECONDS", 0.5, minimum=0.05)
# A worker writes a heartbeat this often; one silent for WORKER_STALLED_AFTER_SECONDS is taken
# for dead and its runs are restarted once, then failed ("worker_lost"). Worst case from a
# SIGKILL to the restart: STALLED_AFTER + SWEEP + POLLING (~26 s with the defaults), counted from
# when any worker is alive.
WORKER_HEARTBEAT_SECONDS = env_float("WORKER_HEARTBEAT_SECONDS", 5.0, minimum=0.1)
WORKER_STALLED_AFTER_SECONDS = env_float("WORKER_STALLED_AFTER_SECONDS", 20.0, minimum=0.5)
if WORKER_STALLED_AFTER_SECONDS < 2 * WORKER_HEARTBEAT_SECONDS:
    # Closer than that, one slow heartbeat would restart a run that is still alive.
    raise ImproperlyConfigured(
        "WORKER_STALLED_AFTER_SECONDS must be at least twice WORKER_HEARTBEAT_SECONDS"
    )
# The sweeper (a periodic job) runs every this many seconds (a divisor of 60).
WORKER_SWEEP_SECONDS = env_int("WORKER_SWEEP_SECONDS", 5, minimum=1)
if 60 % WORKER_SWEEP_SECONDS:
    raise ImproperlyConfigured("WORKER_SWEEP_SECONDS must divide 60 (it is a cron seconds step)")
# How many times a run whose worker died is started again before it fails "worker_lost".
WORKER_LOST_MAX_RESTARTS = env_int("WORKER_LOST_MAX_RESTARTS", 1, minimum=0)
# On SIGTERM, wait this long for in-flight runs (0: until they end; each is bounded by its own
# timeout). Past it the worker exits and its runs are restarted by another worker at once.
WORKER_SHUTDOWN_TIMEOUT_SECONDS = env_float("WORKER_SHUTDOWN_TIMEOUT_SECONDS", 0.0, minimum=0)
# Besides the cancel NOTIFY, a run checks for a cancel request this often (lost notifications).
WORKER_CANCEL_CHECK_SECONDS = env_float("WORKER_CANCEL_CHECK_SECONDS", 2.0, minimum=0.1)
# After a lost database connection the worker retries (fetch, heartbeat, LISTEN) after 0.2 s,
# then twice as long each time, jittered, up to this many seconds; it never gives up.
WORKER_RECONNECT_MAX_SECONDS = env_float("WORKER_RECONNECT_MAX_SECONDS", 5.0, minimum=0.1)
# Finished jobs are kept this long (history for the sweeper and the admin), then deleted.
WORKER_JOB_RETENTION_HOURS = env_int("WORKER_JOB_RETENTION_HOURS", 72, minimum=1)
# Executions of one tenant running at once (all interfaces); 0: no cap. Background jobs over
# the cap wait TENANT_CAP_RETRY_SECONDS and try again, keeping their place.
TENANT_MAX_CONCURRENT_EXECUTIONS = env_int("TENANT_MAX_CONCURRENT_EXECUTIONS", 5, minimum=0)
TENANT_CAP_RETRY_SECONDS = env_float("TENANT_CAP_RETRY_SECONDS", 1.0, minimum=0.1)
# ==== end worker ====

# ==== retention (agents/retention.py; docs/operations/backup.md) ====
# Ended executions older than their plan's retention_days are purged by a periodic job at this
# cron (five fields, or six with seconds last), this many executions per transaction.
RETENTION_CRON = env_str("RETENTION_CRON", "41 * * * *")
if not croniter.is_valid(RETENTION_CRON):
    raise ImproperlyConfigured(f"RETENTION_CRON is not a cron expression: {RETENTION_CRON!r}")
RETENTION_BATCH_SIZE = env_int("RETENTION_BATCH_SIZE", 1000, minimum=1)
# ==== end retention ====

# ---- Channels ----
REDIS_URL = env_str("REDIS_URL", "")
CHANNEL_LAYERS = {
    "default": (
        {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}
        if REDIS_URL
        else {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    )
}

# ---- logging (config/logs.py: structlog renders every line, stdlib loggers' too) ----
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
# "json": one JSON object per line (default; what log pipelines parse). "console": readable
# lines for development (default when DEBUG is on).
LOG_FORMAT = env_str("LOG_FORMAT", "console" if DEBUG else "json")
if LOG_FORMAT not in {"json", "console"}:
    raise ImproperlyConfigured("LOG_FORMAT must be json or console")
# ---- metrics (config/metrics.py) ----
# Where every process of this host writes its samples (prometheus-client multiprocess mode);
# one directory per host or container. Files of processes that are gone are removed at start.
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR", str(DATA_DIR / "prometheus"))
# /metrics answers only to "Authorization: Bearer <METRICS_TOKEN>"; unset, it does not exist.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
# One structured line per HTTP request (config.access): method, path, status, duration.
LOG_REQUESTS = env_bool("LOG_REQUESTS", True)
LOGGING = logging_config(fmt="json" if LOG_FORMAT == "json" else "console", level=LOG_LEVEL)

# ---- Plans, quotas and rate limits (tenants.plans, tenants.ratelimit, agents.core.limits) ----
# How stale a process's copy of a plan may get if it missed the plan_changes notification.
PLAN_CACHE_SECONDS = env_float("PLAN_CACHE_SECONDS", 5.0, minimum=0)
# The same backstop for API key rows cached per process (tenants.key_cache; changes clear them
# everywhere by NOTIFY credential_changes / plan_changes at once).
CREDENTIAL_CACHE_SECONDS = env_float("CREDENTIAL_CACHE_SECONDS", 5.0, minimum=0)
# And for agents and price tables cached per process for runs (agents.core.run_config; used only
# while the process's event hub listens, and NOTIFY run_config_changes clears them at once).
RUN_CONFIG_CACHE_SECONDS = env_float("RUN_CONFIG_CACHE_SECONDS", 5.0, minimum=0)
# Token buckets shared by every process: "postgres" (default) or "redis" (REDIS_URL).
RATE_LIMIT_BACKEND = env_str("RATE_LIMIT_BACKEND", "redis" if REDIS_URL else "postgres")
if RATE_LIMIT_BACKEND not in {"postgres", "redis"}:
    raise ImproperlyConfigured("RATE_LIMIT_BACKEND must be postgres or redis")
if RATE_LIMIT_BACKEND == "redis" and not REDIS_URL:
    raise ImproperlyConfigured("RATE_LIMIT_BACKEND=redis needs REDIS_URL")
# Load shedding: a process already running this many executions refuses new ones with 503 +
# Retry-After instead of queueing them in memory without bound (0: never shed).
MAX_RUNS_PER_PROCESS = env_int("MAX_RUNS_PER_PROCESS", 200, minimum=0)
SHED_RETRY_AFTER_SECONDS = env_int("SHED_RETRY_AFTER_SECONDS", 2, minimum=1)
# Open-stream leases (plans' max_streams_*): renewed by the serving process every third of this.
STREAM_LEASE_SECONDS = env_float("STREAM_LEASE_SECONDS", 60.0, minimum=1.0)

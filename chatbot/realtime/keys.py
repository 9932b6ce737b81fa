"""Every Redis key name Parley writes, in one place. (Celery's, channels_redis's and the Django cache's own keys
are theirs; the cache's are prefixed "parley:" by settings.CACHES.)"""

import hashlib

from django.conf import settings

# --- answers ---------------------------------------------------------------------------------------------------


def answer_stop_channel() -> str:
    """The pub/sub channel stop requests are published on (chatbot.answers.stops). Channels are global to a Redis
    server, not per database: the database number keeps two installations (or test runs) on one server apart."""
    database = settings.REDIS_URL.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return f"parley:{database if database.isdigit() else 0}:stops"


def answer_stop_key(message_id: int) -> str:
    """Set when the visitor pressed Stop on this streaming answer (chatbot.answers.stops)."""
    return f"parley:stop:{message_id}"


def answer_progress_key(message_id: int) -> str:
    """A hash: the heartbeat of the worker writing the answer (chatbot.answers.progress)."""
    return f"parley:answer:{message_id}"


def answer_progress_text_key(message_id: int) -> str:
    """A string: the answer's text so far, appended to as it grows (chatbot.answers.progress)."""
    return f"parley:answer:{message_id}:text"


def answer_finalised_key(message_id: int) -> str:
    """The lock taken by whoever ends a lost answer, so it is ended once (chatbot.answers.watchdog)."""
    return f"parley:answer:{message_id}:finalised"


def circuit_key(endpoint: str, part: str) -> str:
    """The model server circuit breaker's state (chatbot.ops.circuit): part is failures, open_until or probe."""
    digest = hashlib.sha1(endpoint.encode()).hexdigest()[:16]  # noqa: S324 - a key name, not security
    return f"parley:circuit:{digest}:{part}"


# --- chat limits -----------------------------------------------------------------------------------------------


def rate_key(scope: str, identity: str, window: int) -> str:
    """A counter of one identity's events in one window (chatbot.realtime.limits)."""
    return f"parley:rate:{scope}:{identity}:{window}"


def once_key(scope: str, identity: str) -> str:
    """Set while something may not happen again for an identity, e.g. a handoff alert (chatbot.realtime.limits)."""
    return f"parley:once:{scope}:{identity}"


def connections_key(ip: str) -> str:
    """The number of chat sockets open from one address (chatbot.realtime.limits)."""
    return f"parley:conn:{ip}"


# --- insights --------------------------------------------------------------------------------------------------


def insights_lock_key(model_server: str) -> str:
    """Held while an analysis asks a model server (or, for a bot without one, reads its conversations): runs take
    turns on one server, so the visitors' answers share it with one insight request at most (chatbot.insights)."""
    digest = hashlib.sha1(model_server.encode()).hexdigest()[:16]  # noqa: S324 - a key name, not security
    return f"parley:insights:{digest}:lock"


# --- staff presence --------------------------------------------------------------------------------------------

PRESENCE_ADMINS_KEY = "parley:presence:admins"


def presence_bot_key(bot_id: int) -> str:
    """A sorted set of the dashboard sockets that can take over this bot's conversations (chatbot.realtime.presence)."""
    return f"parley:presence:bot:{bot_id}"


# --- Django cache keys (prefixed by the cache) -----------------------------------------------------------------


def question_embedding_cache_key(text: str) -> str:
    """A visitor question's embedding, cached for the quality page and the topics (chatbot.insights.vectors)."""
    return "qemb:" + hashlib.sha256(text.encode()).hexdigest()[:32]

"""Asking the bot's own model for insights: the endpoint, adapter and key its answers use (through the one client,
`inference.client`), a low temperature and short replies, one request at a time, and a token budget per run that
is charged before each request (prompt estimated, room for the reply) and settled with what the server reports."""

import dataclasses
import logging
from dataclasses import dataclass

from django.db import connection

from chatbot.answers.generation import generation_settings
from chatbot.models import Bot
from chatbot.ops.circuit import circuit_state
from inference.analysis import prompt_tokens
from inference.client import (
    GenerationSettings,
    ModelInfo,
    ModelServerError,
    StreamDelta,
    StreamEnd,
    estimate_tokens,
    model_info,
    stream_chat,
)

logger = logging.getLogger(__name__)

TEMPERATURE = 0.2
# A conversation's transcript gets at most this many prompt tokens (its middle is left out beyond).
TRANSCRIPT_TOKENS = 1500


class BudgetExhausted(Exception):
    """The run's token budget cannot pay for the next request."""


class ModelUnavailable(Exception):
    """The model server cannot be used now (down, or failing for visitors: its circuit is open)."""


@dataclass(frozen=True)
class ModelReply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str


class InsightModel:
    """The bot's model, with a token budget for one run."""

    def __init__(self, *, bot: Bot, budget_tokens: int) -> None:
        self.settings: GenerationSettings = dataclasses.replace(
            generation_settings(bot), temperature=TEMPERATURE, stop=(), connect_retries=1
        )
        self.budget_tokens = budget_tokens
        self.tokens_used = 0
        self.model_id = ""
        self._info: ModelInfo | None = None

    @classmethod
    def for_bot(cls, *, bot: Bot, budget_tokens: int) -> "InsightModel | None":
        """None when the bot has no model configured (nor the instance a TGI_URL)."""
        return cls(bot=bot, budget_tokens=budget_tokens) if bot.endpoint else None

    def prompt_room(self, *, max_new_tokens: int) -> int:
        """How many prompt tokens a transcript may take: TRANSCRIPT_TOKENS, or less on a small model."""
        self._ready()
        limit = min(self._info.max_input_tokens, self._info.max_total_tokens - max_new_tokens)
        return max(0, min(TRANSCRIPT_TOKENS, limit))

    def ask(self, messages: list[dict[str, str]], *, max_new_tokens: int) -> ModelReply:
        """The model's whole reply. Raises BudgetExhausted (nothing sent) or ModelUnavailable."""
        estimated = prompt_tokens(messages, count_tokens=estimate_tokens)
        if self.tokens_used + estimated + max_new_tokens > self.budget_tokens:
            raise BudgetExhausted
        self._ready()
        settings = dataclasses.replace(self.settings, max_new_tokens=max_new_tokens)
        # No database connection held while the model writes (the pool has it back until the reply is saved).
        if not connection.in_atomic_block:
            connection.close()
        parts: list[str] = []
        end: StreamEnd | None = None
        try:
            for event in stream_chat(settings, messages):
                if isinstance(event, StreamDelta):
                    parts.append(event.text)
                else:
                    end = event
        except ModelServerError as error:
            self.tokens_used += estimated
            raise ModelUnavailable(str(error)) from error
        text = "".join(parts)
        used_in = end.prompt_tokens if end and end.prompt_tokens is not None else estimated
        used_out = end.completion_tokens if end and end.completion_tokens is not None else estimate_tokens(text)
        self.tokens_used += used_in + used_out
        if end and end.model and end.model != "tgi":
            self.model_id = end.model
        return ModelReply(text=text, prompt_tokens=used_in, completion_tokens=used_out, model=self.model_id)

    def _ready(self) -> None:
        # Never ask a model server that is failing the visitors: their answers need it back first.
        if circuit_state(endpoint=self.settings.endpoint) == "open":
            raise ModelUnavailable("the model server's circuit is open (it failed visitors' answers)")
        if self._info is None:
            try:
                self._info = model_info(self.settings.endpoint, api_key=self.settings.api_key, timeout_s=5.0)
            except ModelServerError as error:
                raise ModelUnavailable(str(error)) from error
            self.model_id = self.model_id or self._info.model_id

"""`POST /api/v1/bots/<slug>/ask`: a question answered through the widget's pipeline, as one JSON reply or, with
`Accept: text/event-stream`, streamed as Server-Sent Events (`ack`, `token`…, `done`)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.http import StreamingHttpResponse
from ninja import Router
from ninja.errors import HttpError

from chatbot.api.answering import ConversationNotFound, ask_conversation, ask_events
from chatbot.api.auth import bot_of
from chatbot.api.schemas import AskIn, AskOut, Error
from chatbot.realtime.async_db import db_async

router = Router(tags=["ask"])

ERROR_STATUS = {"busy": 409, "timeout": 504}
SSE_DOC = {
    "responses": {
        200: {
            "description": "With `Accept: text/event-stream`: Server-Sent Events. `event: ack` (the question's "
            "message_id and the conversation_id), `event: token` for each piece of the answer ({type, message_id, "
            "text}, as the widget gets them), then `event: done` (the AskOut fields), or `event: error` {code, "
            "message}.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    }
}


async def _sse(events: AsyncIterator[tuple[str, dict]]) -> AsyncIterator[str]:
    async with contextlib.aclosing(events):
        async for kind, data in events:
            yield f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@router.post(
    "/bots/{slug}/ask",
    response={200: AskOut, 400: Error, 403: Error, 404: Error, 409: Error, 504: Error},
    openapi_extra=SSE_DOC,
    summary="Ask the bot (the widget's pipeline: retrieval, model, guard, approved answers, strict mode)",
)
async def ask(request, slug: str, body: AskIn):
    bot = await sync_to_async(bot_of)(request, slug, write=True)
    question = body.question.strip()
    if not question:
        raise HttpError(400, "Ask a question.")
    visitor = body.visitor
    try:
        conversation = await db_async(ask_conversation)(
            bot=bot,
            conversation_id=body.conversation_id,
            user_id=visitor.id if visitor else None,
            name=visitor.name if visitor else "",
            email=visitor.email if visitor else "",
        )
    except ConversationNotFound:
        raise HttpError(404, "No such conversation with this bot.") from None
    events = ask_events(conversation=conversation, question=question)
    if "text/event-stream" in request.headers.get("accept", ""):
        response = StreamingHttpResponse(_sse(events), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx and Caddy would otherwise hold the stream back
        return response
    async with contextlib.aclosing(events):
        async for kind, data in events:
            if kind == "error":
                raise HttpError(ERROR_STATUS.get(data["code"], 500), data["message"])
            if kind == "done":
                return {key: data[key] for key in AskOut.model_fields}
    raise HttpError(500, "The answer ended without a result.")

import asyncio
import secrets
import threading

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.core.management.base import BaseCommand, CommandError

from chatbot.answers.pipeline import answer_generate
from chatbot.answers.tasks import answer_message
from chatbot.chat.conversations import conversation_resume_or_start, message_receive
from chatbot.models import Bot, Message
from chatbot.ops.health import worker_health

ANSWER_TIMEOUT_S = 300


class Command(BaseCommand):
    help = "Ask a bot a question: streams the answer (through a worker if one runs, inline otherwise)."

    def add_arguments(self, parser):
        parser.add_argument("--bot", required=True, help="The bot's slug.")
        parser.add_argument("question")
        parser.add_argument("--inline", action="store_true", help="Answer in this process even if a worker runs.")

    def handle(self, *args, bot: str, question: str, inline: bool, **options):
        found = Bot.objects.filter(slug=bot).first()
        if found is None:
            raise CommandError(f"no bot with the slug '{bot}'")
        if not question.strip():
            raise CommandError("the question is empty")
        use_worker = not inline and worker_health(timeout_s=1.0) == "ok"
        conversation = conversation_resume_or_start(bot=found, visitor_id=f"cli-{secrets.token_hex(8)}")
        status, citations = async_to_sync(self._ask)(conversation, question.strip(), use_worker)
        self.stdout.write("")
        if citations:
            self.stdout.write("Sources:")
            for citation in citations:
                self.stdout.write(
                    f"  [{citation['n']}] {citation['title']}" + (f" {citation['url']}" if citation["url"] else "")
                )
        if status == Message.Status.ERROR:
            raise CommandError("the answer failed part-way (see the worker's log)")
        if status == Message.Status.RETRIEVAL_ONLY and not citations:
            raise CommandError("no model answered and no relevant passage was found")

    async def _ask(self, conversation, question: str, use_worker: bool):
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(conversation.group_name, channel)
        _, bot_message = await sync_to_async(message_receive)(
            conversation=conversation, text=question, dispatch_answer=False
        )
        if use_worker:
            await sync_to_async(answer_message.delay)(bot_message.id, question=question)
        else:
            threading.Thread(target=_answer_inline, args=(bot_message.id,), daemon=True).start()
        streamed = False
        try:
            while True:
                event = await asyncio.wait_for(layer.receive(channel), ANSWER_TIMEOUT_S)
                if event["type"] == "chat.token":
                    self.stdout.write(event["text"], ending="")
                    self.stdout.flush()
                    streamed = True
                elif event["type"] == "chat.done":
                    # Answers that did not come from the model (passages only, strict mode's "I don't know")
                    # arrive whole, with no tokens before them.
                    if not streamed:
                        self.stdout.write(event["text"], ending="")
                    return event["status"], event["citations"]
        except TimeoutError:
            raise CommandError(f"no answer within {ANSWER_TIMEOUT_S} s") from None
        finally:
            await layer.group_discard(conversation.group_name, channel)


def _answer_inline(message_id: int) -> None:
    from django.db import connection

    try:
        answer_generate(message_id=message_id)
    finally:
        connection.close()

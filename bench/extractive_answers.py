"""Extractive answers on Parley's own documentation (the demo bot's knowledge): how often the piece that answers is
shown, with examples.

Ingests README.md and docs/*.md into a knowledge base of its own (deleted at the end), then for each question
below: hybrid search for 8 passages, `passages_choose`, `answer_extract` (up to 3 pieces from the first 4
passages), and checks whether an expected phrase is in the first piece, in any piece, and in the passages at all.
Prints every answer as the visitor would read it, with its citations.

    PARLEY_DATA_DIR=/tmp/parley-eval .venv/bin/python -m bench.extractive_answers
    PARLEY_DATA_DIR=/tmp/parley-eval .venv/bin/python -m bench.extractive_answers --quiet   # figures only
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (question, phrases of which one answers it), written from the docs as they are on 2026-12-02.
QUESTIONS = [
    ("How do I put the chat widget on my website?", ["widget.js", "Put it anywhere in the page"]),
    ("Where in the page should the snippet go?", ["usually just before"]),
    ("How big is the widget loader?", ["the loader is about 3.5 KB", "3.5 KB gzipped"]),
    ("What does the widget store in the visitor's browser?", ["one signed visitor token"]),
    ("How do I stop the embedded servers?", ["stops the embedded servers"]),
    ("Which setting points Parley at my model server?", ["`TGI_URL`"]),
    ("Which websites may embed a bot's chat?", ["allowed origins"]),
    ("How are leads sent to our CRM?", ["a webhook to `Bot.crm_webhook_url`", "signed webhook"]),
    ("What happens to leads when the CRM is down?", ["gets every lead once it is back"]),
    ("How do I create a new bot?", ["manage.py createbot"]),
    ("How do I open the chat from my own button?", ["Parley.open()"]),
    ("Which languages does the widget speak?", ["`en`, `fr`, `de`"]),
    ("How long are leads kept?", ["default 365"]),
    ("Can I run Parley with Docker?", ["docker compose up"]),
    ("How do I give the bot our brand's voice?", ["LoRA adapter"]),
    ("Does Parley set cookies on my site?", ["Parley sets no cookies for the chat", "Nothing is stored on your site"]),
    ("How do I add a staff account?", ["createstaff"]),
    ("Can an agent see the leads?", ["only with *can view leads*"]),
    ("What happens when a visitor asks to talk to a person?", ["The request is recorded", "Talk to a person"]),
    ("Where do I see the questions the bot could not answer?", ["unanswered questions of the last 30 days"]),
    ("What does the dashboard show for each bot answer?", ["passages retrieved with their"]),
    ("Which page is the staff dashboard?", ["`/dashboard/`"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quiet", action="store_true", help="print the figures only")
    arguments = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")
    from chatbot.ops.embedded import configure_environment

    configure_environment()
    import django

    django.setup()
    from knowledge.embeddings import get_embedder
    from knowledge.extractive import answer_extract, answer_piece_cite, chunk_citation
    from knowledge.models import Source
    from knowledge.passages import passages_choose
    from knowledge.retrieval import chunk_search
    from knowledge.services import knowledge_base_create, source_add_file, source_delete, source_ingest

    def normal(text: str) -> str:
        return re.sub(r"\s+", " ", text).lower()

    knowledge_base = knowledge_base_create(name="Parley docs (bench)")
    try:
        for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
            source = source_add_file(
                knowledge_base=knowledge_base, filename=path.name, data=path.read_bytes(), title=path.name
            )
            source_ingest(source=source)
        embedder = get_embedder(None)
        embedder.embed_query_soon("warm up").result()
        started = time.perf_counter()
        embedder.embed_query_soon("How big is the widget loader?").result()
        forward_ms = (time.perf_counter() - started) * 1000

        first = anywhere = retrieved = 0
        latencies = []
        for question, expected in QUESTIONS:
            embedded = embedder.embed_query_soon(question).result()
            search = chunk_search(
                knowledge_base_id=knowledge_base.id,
                query=question,
                k=8,
                embedding=embedded.vector,
                query_tokens=embedded.tokens,
            )
            sent = passages_choose(chunks=search.chunks).sent
            started = time.perf_counter()
            pieces = answer_extract(question=question, question_vector=embedded.vector, chunks=sent)
            latencies.append((time.perf_counter() - started) * 1000)

            def answers(text: str, expected=expected) -> bool:
                return any(normal(phrase) in normal(text) for phrase in expected)

            retrieved += any(answers(chunk.text) for chunk in sent[:4])
            first += bool(pieces) and answers(pieces[0].text)
            anywhere += any(answers(piece.text) for piece in pieces)
            if not arguments.quiet:
                mark = (
                    "✓"
                    if pieces and answers(pieces[0].text)
                    else ("~" if any(answers(p.text) for p in pieces) else "✗")
                )
                print(f"\n### {mark} {question}  (relevant: {search.relevant}, {len(sent)} passages sent)\n")
                print("From our documentation:\n" if pieces else "(nothing)")
                for n, piece in enumerate(pieces, start=1):
                    print(answer_piece_cite(piece=piece, marker=f"[{n}]") + "\n")
                for n, piece in enumerate(pieces, start=1):
                    citation = chunk_citation(chunk=sent[piece.chunk_index])
                    where = (
                        f" <{citation.url}>" if citation.url else (f" (#{citation.anchor})" if citation.anchor else "")
                    )
                    print(f"[{n}] {citation.title}{where}")
        n = len(QUESTIONS)
        print(
            f"\n{n} questions: answer in the first 4 passages sent {retrieved}/{n}; in the first piece {first}/{n};"
            f" in any of the pieces {anywhere}/{n}. answer_extract p50 {statistics.median(latencies):.0f} ms,"
            f" max {max(latencies):.0f} ms (one question's forward pass here: {forward_ms:.0f} ms)"
        )
    finally:
        for source in Source.objects.filter(knowledge_base=knowledge_base):
            source_delete(source=source)
        knowledge_base.delete()


if __name__ == "__main__":
    main()

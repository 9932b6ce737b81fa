"""Extractive answers with the real model and database: whole sentences, table rows under their header, list items
and code blocks, from a guide indexed in small chunks so that chunks start and end inside them."""

import re

import pytest

from knowledge.embeddings import get_embedder
from knowledge.extractive import AnswerPiece, answer_extract, answer_piece_cite, chunk_citation, heading_anchor
from knowledge.models import Chunk, Source
from knowledge.query_batching import QueryBatcher
from knowledge.retrieval import RetrievedChunk, chunk_search
from knowledge.services import knowledge_base_create, source_add_file, source_delete, source_ingest

pytestmark = pytest.mark.django_db

GUIDE = """# Kettlebot

Kettlebot answers questions about kettles on a shop's website.

## Installation

Kettlebot runs on any machine with Python 3.11 and two gigabytes of memory. Download the release archive, unpack it
in a folder of your choice and run the installer from that folder. The installer creates a virtual environment in
the folder, copies the bundled wheels of every dependency into it, writes a default configuration file next to it,
downloads nothing from the internet and finishes in about a minute on a laptop. It never touches the system Python.
When it is done, start the server with the command below and open the address it prints in a browser. The first
start takes longer because the search index is built then; later starts take two seconds.

```sh
./kettlebot serve --port 8080
```

## Configuration

Everything is read from the environment.

| Variable | Default | Meaning |
|---|---|---|
| `KETTLE_DB` | a file under `./data` | where conversations and documents are stored |
| `KETTLE_CACHE` | `redis://localhost:6379` | the Redis server used as a cache and a message queue |
| `KETTLE_MODEL_URL` | unset | the model server that writes answers; without it answers are quotations |
| `KETTLE_LANGUAGE` | `en` | the language of the interface: `en`, `fr` or `de` |
| `KETTLE_PORT` | `8080` | the port the web server listens on |

## Support

- Email support@kettlebot.test and we answer within two working days.
- Paying customers can call the hotline on weekdays between 9:00 and 17:00.
- Security problems go to security@kettlebot.test, encrypted with our public key.
"""


@pytest.fixture(scope="module")
def guide(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        # Small chunks, so that sentences, tables and lists are cut across chunks.
        knowledge_base = knowledge_base_create(name="Kettlebot docs", chunk_tokens=40, overlap_tokens=8)
        source_ingest(
            source=source_add_file(knowledge_base=knowledge_base, filename="kettlebot.md", data=GUIDE.encode())
        )
    yield knowledge_base
    with django_db_blocker.unblock():
        for source in Source.objects.filter(knowledge_base=knowledge_base):
            source_delete(source=source)
        knowledge_base.delete()


def extract(knowledge_base, question: str, **options):
    embedded = get_embedder(None).embed_query_soon(question).result()
    result = chunk_search(knowledge_base_id=knowledge_base.id, query=question, k=4, embedding=embedded.vector)
    pieces = answer_extract(question=question, question_vector=embedded.vector, chunks=result.chunks, **options)
    return result.chunks, pieces


def sentences_of(text: str) -> set[str]:
    return {" ".join(sentence.split()) for sentence in re.split(r"(?<=[.!?])\s+", text)}


def test_it_answers_with_whole_sentences_even_when_the_chunk_starts_inside_one(guide):
    chunks, pieces = extract(guide, "How long does the installer take?")

    installation_chunks = Chunk.objects.filter(knowledge_base=guide, heading_path=["Installation"])
    assert any(chunk.text[0].islower() for chunk in installation_chunks)  # chunks start inside sentences
    best = pieces[0]
    assert best.kind == "sentence"
    assert "finishes in about a minute on a laptop" in best.text
    installation = " ".join(GUIDE.split("## Installation")[1].split("```")[0].split())
    assert sentences_of(best.text.replace(" … ", " ")) <= sentences_of(installation)
    assert chunks[best.chunk_index].heading_path == ["Installation"]


def test_a_table_row_comes_with_the_table_header(guide):
    chunks, pieces = extract(guide, "Which variable sets the Redis server?")

    table = next(piece for piece in pieces if piece.kind == "table")
    lines = table.text.split("\n")
    assert lines[:2] == ["| Variable | Default | Meaning |", "|---|---|---|"]
    assert (
        "| `KETTLE_CACHE` | `redis://localhost:6379` | the Redis server used as a cache and a message queue |" in lines
    )
    assert chunks[table.chunk_index].heading_path == ["Configuration"]


def test_list_items_and_code_blocks_stay_whole_and_an_announced_block_follows_its_sentence(guide):
    _, support = extract(guide, "Can I phone someone for help?")
    _, start = extract(guide, "What command starts the server?")

    hotline = next(piece for piece in support if "hotline" in piece.text)
    assert hotline.kind == "list"
    assert "- Paying customers can call the hotline on weekdays between 9:00 and 17:00." in hotline.text.split("\n")
    assert set(hotline.text.split("\n")) <= set(GUIDE.split("\n"))  # whole items, of the guide's list
    # The sentence that announces the command brings it.
    command = next(piece for piece in start if "```" in piece.text)
    assert command.text.endswith(
        "the command below and open the address it prints in a browser.\n\n```sh\n./kettlebot serve --port 8080\n```"
    )


def test_it_gives_at_most_the_pieces_asked_for_best_first(guide):
    _, pieces = extract(guide, "How do I install Kettlebot?", max_pieces=2)

    assert 1 <= len(pieces) <= 2
    assert [piece.score for piece in pieces] == sorted((piece.score for piece in pieces), reverse=True)
    assert answer_extract(question="anything", question_vector=[0.0] * 384, chunks=[]) == []


def test_a_citation_names_the_document_and_section_and_links_the_section_s_anchor():
    chunk = RetrievedChunk(
        chunk_id=1,
        document_id=1,
        text="Everything is read from the environment.",
        heading_path=["Setup", "Configuration"],
        title="Parley",
        url="https://docs.example.com/parley/#top",
        score=1.0,
        similarity=0.5,
        vector_rank=1,
        text_rank=None,
    )

    citation = chunk_citation(chunk=chunk)

    assert citation.title == "Parley › Setup › Configuration"
    assert citation.url == "https://docs.example.com/parley/#configuration"
    assert chunk_citation(chunk=RetrievedChunk(**{**chunk.__dict__, "url": ""})).url == ""
    assert chunk_citation(chunk=RetrievedChunk(**{**chunk.__dict__, "heading_path": []})).url == (
        "https://docs.example.com/parley/#top"
    )


def test_a_citation_marker_goes_where_markdown_keeps_it_readable():
    def cite(kind: str, text: str) -> str:
        return answer_piece_cite(piece=AnswerPiece(text=text, kind=kind, chunk_index=0, score=0.5), marker="[2]")

    assert cite("sentence", "It takes a minute.") == "It takes a minute. [2]"
    assert cite("list", "- one\n- two") == "- one\n- two [2]"
    assert cite("table", "| a |\n|---|\n| 1 |") == "| a |\n|---|\n| 1 |\n\n[2]"
    assert cite("code", "```sh\nrun\n```") == "```sh\nrun\n```\n\n[2]"
    assert cite("sentence", "Start it with:\n\n```sh\nrun\n```") == "Start it with:\n\n```sh\nrun\n```\n\n[2]"


@pytest.mark.parametrize(
    "heading, anchor",
    [
        ("Configuration", "configuration"),
        ("What make run serves", "what-make-run-serves"),
        ("The staff websocket: /ws/dashboard/", "the-staff-websocket-wsdashboard"),
        (
            "Prompt injection: two layers, 34 attacks (tests/security/attacks.py)",
            "prompt-injection-two-layers-34-attacks-testssecurityattackspy",
        ),
        ("3. Train (on a GPU machine)", "3-train-on-a-gpu-machine"),
        ("Leads and brand voice", "leads-and-brand-voice"),
        ("Données & réglages", "données--réglages"),
        ("test_it_works", "test_it_works"),
    ],
)
def test_section_anchors_are_github_s(heading, anchor):
    assert heading_anchor(heading=heading) == anchor


def test_texts_submitted_together_are_embedded_in_one_batch():
    calls = []

    def embed_batch(texts):
        calls.append(list(texts))
        return [len(text) for text in texts]

    batcher = QueryBatcher(embed_batch)
    futures = batcher.submit_many(["one", "three", "seventeen"])

    assert [future.result(timeout=5) for future in futures] == [3, 5, 9]
    assert calls == [["one", "three", "seventeen"]]

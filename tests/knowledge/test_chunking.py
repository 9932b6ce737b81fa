import itertools
from pathlib import Path

import pytest

from knowledge.chunking import HEADING_SEPARATOR, chunk_document
from knowledge.embeddings import EMBEDDING_MAX_TOKENS, local_token_counter
from knowledge.parsing import ParsedDocument, Section, parse_document
from tests.knowledge.documents import make_docx, make_pdf

EVAL_CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "eval" / "corpus"


@pytest.fixture(scope="module")
def tokenizer():
    return local_token_counter()


def sentence(number: int) -> str:
    return f"Sentence number {number} explains one more detail of the refund process."


def test_it_never_embeds_more_than_the_model_reads_on_real_documents(tokenizer):
    documents = [
        parse_document(data=path.read_bytes(), filename=path.name) for path in sorted(EVAL_CORPUS.glob("*.md"))
    ]
    documents.append(
        parse_document(data=make_pdf([[sentence(i) for i in range(40)] for _ in range(3)]), filename="long.pdf")
    )
    documents.append(
        parse_document(
            data=make_docx([("Title", "Policy"), ("Heading 1", "Refunds"), ("", " ".join(map(sentence, range(200))))]),
            filename="policy.docx",
        )
    )
    assert len(documents) > 40

    for chunk_tokens, overlap_tokens in [(100, 0), (200, 30), (256, 60), (1000, 100)]:
        for document in documents:
            for chunk in chunk_document(
                document, tokenizer=tokenizer, chunk_tokens=chunk_tokens, overlap_tokens=overlap_tokens
            ):
                assert tokenizer.count_tokens(chunk.embedding_text) <= EMBEDDING_MAX_TOKENS
                assert chunk.token_count <= chunk_tokens


def test_it_fits_pathological_text_within_the_limit(tokenizer):
    endless_heading = "Very long heading " * 100
    document = ParsedDocument(
        title="Title " * 80,
        format="text",
        sections=[
            Section(heading_path=(endless_heading, "Middle", "Last heading"), text="word " * 2000),
            Section(heading_path=(), text="x" * 20_000),  # one "word" with no break at all
            Section(heading_path=(), text="東京都の天気は晴れです。" * 400),
            Section(heading_path=(), text="🙂" * 3000),
        ],
    )

    chunks = chunk_document(document, tokenizer=tokenizer, chunk_tokens=256, overlap_tokens=30)

    assert len(chunks) > 10
    assert all(tokenizer.count_tokens(chunk.embedding_text) <= EMBEDDING_MAX_TOKENS for chunk in chunks)
    assert all(chunk.text.strip() for chunk in chunks)


def test_it_prefixes_the_embedded_text_with_title_and_headings(tokenizer):
    document = ParsedDocument(
        title="Travel policy",
        format="docx",
        sections=[Section(heading_path=("Booking", "Trains"), text="Second class for trips under four hours.")],
    )

    [chunk] = chunk_document(document, tokenizer=tokenizer, chunk_tokens=200, overlap_tokens=30)

    assert chunk.text == "Second class for trips under four hours."
    assert chunk.heading_path == ("Booking", "Trains")
    trail = HEADING_SEPARATOR.join(["Travel policy", "Booking", "Trains"])
    assert chunk.embedding_text == f"{trail}\n\nSecond class for trips under four hours."
    assert HEADING_SEPARATOR == " \u203a "
    assert chunk.token_count == len(tokenizer.token_offsets(chunk.text))


def test_it_never_mixes_sections_in_one_chunk(tokenizer):
    document = ParsedDocument(
        title="FAQ",
        format="markdown",
        sections=[
            Section(heading_path=("Shipping",), text="We ship in two days."),
            Section(heading_path=("Returns",), text="Returns are free."),
        ],
    )

    chunks = chunk_document(document, tokenizer=tokenizer, chunk_tokens=200, overlap_tokens=30)

    assert [(chunk.position, chunk.heading_path, chunk.text) for chunk in chunks] == [
        (0, ("Shipping",), "We ship in two days."),
        (1, ("Returns",), "Returns are free."),
    ]


def test_it_ends_chunks_at_paragraph_breaks_when_they_fit(tokenizer):
    paragraphs = [" ".join(sentence(10 * p + i) for i in range(5)) for p in range(3)]  # ~75 tokens each
    document = ParsedDocument(
        title="Refunds", format="text", sections=[Section(heading_path=(), text="\n\n".join(paragraphs))]
    )

    chunks = chunk_document(document, tokenizer=tokenizer, chunk_tokens=120, overlap_tokens=0)

    assert [chunk.text for chunk in chunks] == paragraphs


def test_it_cuts_long_paragraphs_at_sentence_ends_and_overlaps_them(tokenizer):
    text = " ".join(sentence(i) for i in range(30))
    document = ParsedDocument(title="Refunds", format="text", sections=[Section(heading_path=(), text=text)])

    chunks = chunk_document(document, tokenizer=tokenizer, chunk_tokens=100, overlap_tokens=30)

    assert len(chunks) > 3
    for chunk in chunks[:-1]:
        assert chunk.text.endswith("process.")
    for previous, following in itertools.pairwise(chunks):
        # The next chunk starts with the last sentence(s) of the previous one.
        assert following.text.startswith("Sentence number")
        first_sentence = following.text.split(" process.")[0] + " process."
        assert first_sentence in previous.text[-200:]
        assert first_sentence != previous.text[: len(first_sentence)]


def test_it_returns_chunks_that_are_exact_slices_of_the_section(tokenizer):
    text = "Line one of the notice.\n    Indented detail, kept as written.\n\n" + "Tail words go on. " * 80
    document = ParsedDocument(title="Notice", format="text", sections=[Section(heading_path=(), text=text)])

    chunks = chunk_document(document, tokenizer=tokenizer, chunk_tokens=60, overlap_tokens=10)

    assert all(chunk.text in text for chunk in chunks)
    assert chunks[0].text.startswith("Line one of the notice.\n    Indented detail")
    assert chunks[-1].text.endswith("Tail words go on.")


def test_it_rejects_nonsense_settings(tokenizer):
    document = ParsedDocument(title="t", format="text", sections=[Section(heading_path=(), text="x")])

    with pytest.raises(ValueError, match="chunk_tokens"):
        chunk_document(document, tokenizer=tokenizer, chunk_tokens=0, overlap_tokens=0)

import zlib

import pytest

from knowledge.parsing import DocumentParseError, ParseLimits, Section, parse_document
from tests.knowledge.documents import (
    encrypted_pdf,
    make_docx,
    make_pdf,
    make_pdf_with_stream,
    with_pdf_metadata,
    zip_bomb_docx,
)


def parse_error(**kwargs: object) -> DocumentParseError:
    with pytest.raises(DocumentParseError) as caught:
        parse_document(**kwargs)  # type: ignore[arg-type]
    return caught.value


# --- PDF ---


def test_it_reads_pdf_text_page_by_page():
    pdf = make_pdf([["Employee handbook", "Holidays: 25 days a year."], ["Expenses are paid monthly."]])

    document = parse_document(data=pdf, filename="handbook.pdf")

    assert document.format == "pdf"
    assert document.sections == [
        Section(heading_path=("Page 1",), text="Employee handbook\nHolidays: 25 days a year."),
        Section(heading_path=("Page 2",), text="Expenses are paid monthly."),
    ]


def test_it_titles_a_pdf_from_its_metadata_before_its_first_line():
    pdf = make_pdf([["Employee handbook", "Holidays: 25 days a year."]])

    assert parse_document(data=pdf, filename="h.pdf").title == "Employee handbook"
    assert parse_document(data=with_pdf_metadata(pdf, title="Acme Handbook 2026"), filename="h.pdf").title == (
        "Acme Handbook 2026"
    )


def test_it_reads_a_pdf_with_compressed_content_streams():
    pdf = make_pdf([["Compressed but readable."]], compress=True)

    assert parse_document(data=pdf, filename="c.pdf").sections[0].text == "Compressed but readable."


def test_it_refuses_a_password_protected_pdf():
    pdf = encrypted_pdf(make_pdf([["Secret salaries"]]), password="hunter2")

    error = parse_error(data=pdf, filename="salaries.pdf")

    assert error.reason == "encrypted"
    assert "password-protected" in str(error)


def test_it_reports_a_truncated_pdf_as_damaged():
    pdf = make_pdf([["Some text"], ["More text"]])

    error = parse_error(data=pdf[: len(pdf) // 2], filename="broken.pdf")

    assert error.reason == "corrupt"
    assert "broken.pdf" in str(error)


def test_it_refuses_a_pdf_whose_stream_inflates_hugely():
    bomb_stream = zlib.compress(b"BT /F1 12 Tf (" + b"A" * (8 * 1024 * 1024) + b") Tj ET", 9)
    pdf = make_pdf_with_stream(bomb_stream)
    assert len(pdf) < 20_000

    error = parse_error(data=pdf, filename="bomb.pdf", limits=ParseLimits(max_pdf_stream_bytes=1024 * 1024))

    assert error.reason == "too_large"


def test_it_refuses_a_pdf_with_too_many_pages():
    pdf = make_pdf_with_stream(zlib.compress(b"BT /F1 12 Tf (page) Tj ET"), page_count=30)

    error = parse_error(data=pdf, filename="long.pdf", limits=ParseLimits(max_pdf_pages=25))

    assert error.reason == "too_large"
    assert "30 pages" in str(error)


def test_it_refuses_a_pdf_that_yields_too_much_text():
    pdf = make_pdf_with_stream(zlib.compress(b"BT /F1 12 Tf (" + b"word " * 2000 + b") Tj ET"), page_count=20)

    error = parse_error(data=pdf, filename="dump.pdf", limits=ParseLimits(max_text_chars=50_000))

    assert error.reason == "too_large"


def test_it_says_a_pdf_without_text_needs_ocr():
    error = parse_error(data=make_pdf([[]]), filename="scan.pdf")

    assert error.reason == "empty"
    assert "OCR" in str(error)


# --- DOCX ---


def test_it_reads_docx_headings_as_a_heading_path():
    data = make_docx(
        [
            ("Title", "Travel policy"),
            ("", "Applies to all staff."),
            ("Heading 1", "Booking"),
            ("", "Book through the portal."),
            ("Heading 2", "Trains"),
            ("", "Second class for trips under four hours."),
            ("Heading 1", "Expenses"),
            ("", "Keep every receipt."),
        ]
    )

    document = parse_document(data=data, filename="travel.docx")

    assert document.title == "Travel policy"
    assert document.sections == [
        Section(heading_path=(), text="Applies to all staff."),
        Section(heading_path=("Booking",), text="Book through the portal."),
        Section(heading_path=("Booking", "Trains"), text="Second class for trips under four hours."),
        Section(heading_path=("Expenses",), text="Keep every receipt."),
    ]


def test_it_keeps_docx_tables_as_text_rows():
    data = make_docx([("Heading 1", "Prices"), ("", "Our plans:")], table=[["Plan", "Price"], ["Pro", "20 EUR"]])

    document = parse_document(data=data, filename="prices.docx")

    assert document.sections[-1].text == "Our plans:\n\nPlan | Price\nPro | 20 EUR"


def test_it_refuses_a_zip_bomb_docx_before_opening_it():
    bomb = zip_bomb_docx(inflated_bytes=50 * 1024 * 1024)
    assert len(bomb) < 200_000

    error = parse_error(data=bomb, filename="innocent.docx")

    assert error.reason == "too_large"
    assert "unpacked" in str(error)


def test_it_reports_a_damaged_docx():
    data = make_docx([("", "Hello")])

    error = parse_error(data=data[:-300], filename="damaged.docx")

    assert error.reason == "corrupt"


# --- HTML ---


def test_it_keeps_the_main_text_title_and_headings_of_a_web_page():
    html = """<!doctype html><html><head><title>Refund policy | Acme</title>
    <script>window.tracking = "SCRIPT-IN-HEAD";</script><style>body { color: red }</style></head><body>
    <nav><ul><li><a href="/">Home</a></li><li><a href="/shop">Shop everything now</a></li></ul></nav>
    <main><article>
      <h1>Refund policy</h1>
      <p>We refund any order within 30 days of delivery when the item is unused and in its box.</p>
      <h2>How to ask for a refund</h2>
      <p>Write to support with your order number; we answer within two working days.</p>
      <script>document.write("SCRIPT-IN-BODY")</script>
      <h3>Damaged items</h3>
      <p>Send a photo of the damage and we replace the item at no cost to you.</p>
    </article></main>
    <footer><p>Copyright 2026 Acme Ltd. All rights reserved. Privacy. Terms. Cookie settings.</p></footer>
    </body></html>"""

    document = parse_document(data=html.encode(), filename="refunds", content_type="text/html; charset=utf-8")

    all_text = "\n".join(section.text for section in document.sections)
    assert document.format == "html"
    assert "Refund policy" in document.title
    assert [section.heading_path for section in document.sections] == [
        (),
        ("How to ask for a refund",),
        ("How to ask for a refund", "Damaged items"),
    ]
    assert "within 30 days" in all_text
    assert "SCRIPT-IN" not in all_text
    assert "Copyright" not in all_text
    assert "Shop everything" not in all_text


def test_it_never_takes_script_text_from_a_page_full_of_scripts():
    scripts = "".join(f"<script>var payload{i} = 'EVIL-{i}';</script>" for i in range(2000))
    text = "<p>All systems are running normally today, no incidents.</p>"
    html = f"<html><head><title>Status</title></head><body>{scripts}{text}{scripts}</body></html>"

    document = parse_document(data=html.encode(), filename="status.html")

    assert "EVIL" not in "".join(section.text for section in document.sections)
    assert "All systems are running normally" in document.sections[0].text


def test_a_figure_does_not_flatten_a_web_page_and_its_caption_stays_as_text():
    html = """<html><head><title>Setup</title></head><body><article><h1>Setup</h1>
    <p>Run <code>make run</code>, then point <code>TGI_URL</code> at your model server.</p>
    <figure><img src="phone.png" alt="The widget on a phone"><figcaption>The widget, full screen</figcaption></figure>
    <p>Put the snippet inside the <code>&lt;body&gt;</code> element of every page that shows the widget.</p>
    </article></body></html>"""

    [section] = parse_document(data=html.encode(), filename="setup.html").sections

    assert section.text == (
        "Run `make run`, then point `TGI_URL` at your model server.\n\n"
        "The widget, full screen\n\n"
        "Put the snippet inside the `<body>` element of every page that shows the widget."
    )


# --- Markdown, text ---


def test_it_drops_markdown_illustrations_and_keeps_inline_image_text_without_the_bang():
    markdown = b"""# Parley

![The widget on a desktop page](docs/screenshots/widget-desktop.png)
![The widget on a phone](docs/screenshots/widget-phone.png)

Status: ![build passing](https://ci.example/badge.svg) on every commit.
"""

    [section] = parse_document(data=markdown, filename="README.md").sections

    assert section.text == "Status: build passing on every commit."


def test_it_keeps_tags_inside_code_spans_and_spaces_around_removed_tags():
    markdown = b"""# Widget

The loader draws inside a `<body>` element; requests need `Authorization: Bearer <token>`.
Press <kbd>Esc</kbd> to close, set <code>TGI_URL</code> to a server.<br>Then reload.

| Setting | Meaning |
|---|---|
| `data-lang` | <b>en</b>, fr or de<br>(the page's `<html lang>`) |
"""

    [section] = parse_document(data=markdown, filename="widget.md").sections

    assert section.text == (
        "The loader draws inside a `<body>` element; requests need `Authorization: Bearer <token>`.\n"
        "Press Esc to close, set `TGI_URL` to a server. Then reload.\n\n"
        "| Setting | Meaning |\n|---|---|\n| `data-lang` | en, fr or de (the page's `<html lang>`) |"
    )


def test_it_reads_markdown_headings_and_keeps_code_as_text():
    markdown = """# Deploying Parley

Intro paragraph.

## Docker

Run it with compose:

```sh
# not a heading, a shell comment
docker compose up
```

<script>alert("no")</script>

### Volumes

Mount /data.

## Upgrading

Pull the new image.
"""

    document = parse_document(data=markdown.encode(), filename="deploy.md")

    assert document.title == "Deploying Parley"
    assert [section.heading_path for section in document.sections] == [
        (),
        ("Docker",),
        ("Docker", "Volumes"),
        ("Upgrading",),
    ]
    assert "# not a heading, a shell comment" in document.sections[1].text
    assert "alert" not in "".join(section.text for section in document.sections)


def test_it_keeps_names_in_markdown_headings_as_written():
    markdown = b"""# shutil

## Functions

### make_archive

Create an archive file.

### `__init__` and **bold** _words_ with a [link](https://example.com) &amp; <b>tag</b>

Text.
"""

    document = parse_document(data=markdown, filename="shutil.md")

    # Underscores inside a name are not emphasis: the function's name stays searchable in the heading path.
    assert [section.heading_path for section in document.sections] == [
        ("Functions", "make_archive"),
        ("Functions", "__init__ and bold words with a link & tag"),
    ]


def test_it_keeps_several_top_level_markdown_headings_as_sections():
    document = parse_document(data=b"# One\n\nfirst\n\n# Two\n\nsecond\n", filename="notes_on_things.md")

    assert document.title == "notes on things"
    assert [section.heading_path for section in document.sections] == [("One",), ("Two",)]


def test_it_reads_plain_text_with_its_first_line_as_title():
    document = parse_document(data=b"Opening hours\n\nMonday to Friday, 9-17.\n", filename="hours.txt")

    assert document.title == "Opening hours"
    assert document.sections[0].text == "Opening hours\n\nMonday to Friday, 9-17."


def test_it_decodes_text_that_is_not_utf8():
    document = parse_document(data="Café crème à 3 €".encode("cp1252"), filename="menu.txt")

    assert "Café crème" in document.sections[0].text


# --- CSV ---


def test_it_turns_each_csv_row_into_a_section_with_column_names():
    data = b"Product;Price;Notes\nKettle;25;Boils in 2 minutes\nToaster;30;\n"

    document = parse_document(data=data, filename="products.csv")

    assert document.title == "products"
    assert document.sections == [
        Section(heading_path=("Kettle",), text="Product: Kettle\nPrice: 25\nNotes: Boils in 2 minutes"),
        Section(heading_path=("Toaster",), text="Product: Toaster\nPrice: 30"),
    ]


def test_an_faq_csv_row_is_titled_by_its_question():
    data = b"question,answer\nDo you ship to Norway?,Yes: five working days.\n" + b"x" * 130 + b",long\n"

    document = parse_document(data=data, filename="faq.csv")

    assert [section.heading_path for section in document.sections] == [("Do you ship to Norway?",), ("Row 2",)]


def test_it_refuses_a_csv_with_too_many_rows():
    data = ("id,name\n" + "".join(f"{i},item {i}\n" for i in range(101))).encode()

    error = parse_error(data=data, filename="big.csv", limits=ParseLimits(max_csv_rows=100))

    assert error.reason == "too_large"
    assert "100 rows" in str(error)


def test_it_refuses_a_csv_with_a_giant_field():
    data = ("id,blob\n1," + "x" * 5000 + "\n").encode()

    error = parse_error(data=data, filename="blob.csv", limits=ParseLimits(max_csv_field_chars=1000))

    assert error.reason == "too_large"


# --- any type ---


def test_it_refuses_files_over_the_byte_limit():
    error = parse_error(data=b"x" * 2000, filename="big.txt", limits=ParseLimits(max_bytes=1000))

    assert error.reason == "too_large"
    assert "big.txt" in str(error)


def test_it_refuses_empty_documents():
    assert parse_error(data=b"   \n\n ", filename="blank.txt").reason == "empty"
    assert parse_error(data=b"# Only a heading\n", filename="blank.md").reason == "empty"


def test_it_refuses_unsupported_types_by_name_and_by_content():
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(100)

    assert parse_error(data=png, filename="photo.png").reason == "unsupported"
    assert parse_error(data=png, filename="notes").reason == "unsupported"
    assert parse_error(data=b"MZ\x90\x00" + bytes(50), filename="setup.exe").reason == "unsupported"


def test_it_trusts_file_signatures_over_names():
    pdf = make_pdf([["Actually a PDF"]])

    assert parse_document(data=pdf, filename="renamed.txt").format == "pdf"
    assert parse_error(data=b"just text", filename="fake.pdf").reason == "corrupt"


def test_it_recognises_html_without_an_extension():
    html = (
        b"<!DOCTYPE html><html><head><title>Hi</title></head><body><p>"
        + b"Hello there, friend. " * 20
        + b"</p></body></html>"
    )

    assert parse_document(data=html, filename="page").format == "html"

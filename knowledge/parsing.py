"""Turn uploaded or fetched bytes into titled, sectioned plain text.

Everything here is pure: bytes in, a `ParsedDocument` out, or a `DocumentParseError` whose message can be shown
to the person who uploaded the file. Titles and headings are kept because answers cite them.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Literal

import pypdf
from markdown_it import MarkdownIt

from knowledge.markup import clean_inline_markdown, inline_text, only_images, strip_tags, without_images

if TYPE_CHECKING:
    from docx.table import Table

DocumentFormat = Literal["pdf", "docx", "html", "markdown", "text", "csv"]
ParseFailure = Literal["corrupt", "encrypted", "empty", "too_large", "unsupported"]


class DocumentParseError(Exception):
    """A document could not be turned into text; `str(error)` is a message fit for the uploader."""

    def __init__(self, message: str, *, reason: ParseFailure) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Section:
    heading_path: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class ParsedDocument:
    title: str
    format: DocumentFormat
    sections: list[Section]


@dataclass(frozen=True)
class ParseLimits:
    max_bytes: int = 50 * 1024 * 1024
    # Text a single document may yield; beyond this it is more likely an attack or a data dump than knowledge.
    max_text_chars: int = 10_000_000
    max_pdf_pages: int = 2_000
    # Per decompressed PDF stream (pypdf's own default is 75 MB).
    max_pdf_stream_bytes: int = 20 * 1024 * 1024
    max_docx_uncompressed_bytes: int = 200 * 1024 * 1024
    max_docx_compression_ratio: int = 100
    max_docx_entries: int = 5_000
    max_csv_rows: int = 100_000
    max_csv_field_chars: int = 100_000


DEFAULT_PARSE_LIMITS = ParseLimits()

_EXTENSION_FORMATS: dict[str, DocumentFormat] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".rst": "text",
    ".csv": "csv",
    ".tsv": "csv",
}
_CONTENT_TYPE_FORMATS: dict[str, DocumentFormat] = {
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/plain": "text",
    "text/csv": "csv",
    "text/tab-separated-values": "csv",
}
_SUPPORTED_FOR_HUMANS = "PDF, Word (.docx), HTML, Markdown, plain text or CSV"


def parse_document(
    *,
    data: bytes,
    filename: str,
    content_type: str | None = None,
    limits: ParseLimits = DEFAULT_PARSE_LIMITS,
) -> ParsedDocument:
    """Parse `data` into a titled list of sections, choosing the parser by content, extension and content type.

    Raises `DocumentParseError` for anything that cannot or should not be parsed.
    """
    if len(data) > limits.max_bytes:
        raise DocumentParseError(
            f"“{filename}” is {_human_size(len(data))}; the limit is {_human_size(limits.max_bytes)}.",
            reason="too_large",
        )
    if not data.strip():
        raise DocumentParseError(f"“{filename}” is empty.", reason="empty")

    document_format = detect_format(data=data, filename=filename, content_type=content_type)
    fallback_title = _title_from_filename(filename)
    if document_format == "pdf":
        document = _parse_pdf(data, fallback_title=fallback_title, limits=limits, filename=filename)
    elif document_format == "docx":
        document = _parse_docx(data, fallback_title=fallback_title, limits=limits, filename=filename)
    elif document_format == "csv":
        document = _parse_csv(
            _decode_text(data, filename=filename), fallback_title=fallback_title, limits=limits, filename=filename
        )
    elif document_format == "html":
        document = _parse_html(_decode_text(data, filename=filename), fallback_title=fallback_title)
    elif document_format == "markdown":
        document = _parse_markdown(_decode_text(data, filename=filename), fallback_title=fallback_title)
    else:
        document = _parse_plain_text(_decode_text(data, filename=filename), fallback_title=fallback_title)

    sections = [
        Section(heading_path=section.heading_path, text=_normalise_whitespace(section.text))
        for section in document.sections
    ]
    sections = [section for section in sections if section.text]
    if not sections:
        raise DocumentParseError(
            f"No text could be found in “{filename}”. Scanned PDFs and images need OCR first.", reason="empty"
        )
    total_chars = sum(len(section.text) for section in sections)
    if total_chars > limits.max_text_chars:
        raise DocumentParseError(
            f"“{filename}” contains more than {limits.max_text_chars:,} characters of text; split it into "
            "smaller documents.",
            reason="too_large",
        )
    return ParsedDocument(title=document.title.strip() or fallback_title, format=document_format, sections=sections)


def detect_format(*, data: bytes, filename: str, content_type: str | None = None) -> DocumentFormat:
    """Choose a parser. Binary signatures win over names because a renamed file keeps its bytes."""
    extension = PurePosixPath(filename.lower()).suffix
    declared = _EXTENSION_FORMATS.get(extension)
    if declared is None and content_type:
        declared = _CONTENT_TYPE_FORMATS.get(content_type.split(";")[0].strip().lower())

    if data.startswith(b"%PDF-"):
        return "pdf"
    if data.startswith(b"PK\x03\x04"):
        looks_like_word = b"word/" in data[:65536]
        if declared == "docx" or (declared is None and looks_like_word):
            return "docx"
        raise DocumentParseError(
            f"“{filename}” is a zip archive, which is not supported. Upload {_SUPPORTED_FOR_HUMANS}.",
            reason="unsupported",
        )
    if declared in ("pdf", "docx"):
        raise DocumentParseError(
            f"“{filename}” is not a valid {declared.upper()} file (it may be damaged or mislabelled).",
            reason="corrupt",
        )
    if b"\x00" in data[:8192] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DocumentParseError(
            f"“{filename}” looks like a binary file. Upload {_SUPPORTED_FOR_HUMANS}.", reason="unsupported"
        )
    if declared is not None:
        return declared
    if extension and extension not in ("", ".htm", ".html"):
        raise DocumentParseError(
            f"Files of type “{extension}” are not supported. Upload {_SUPPORTED_FOR_HUMANS}.",
            reason="unsupported",
        )
    head = data[:2048].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        return "html"
    return "text"


# --- PDF ---------------------------------------------------------------------------------------------------


def _parse_pdf(data: bytes, *, fallback_title: str, limits: ParseLimits, filename: str) -> ParsedDocument:
    # pypdf checks these budgets while it decompresses, so a stream that inflates hugely stops early.
    with pypdf.apply_configuration(
        zlib_maximum_output_length=limits.max_pdf_stream_bytes,
        lzw_maximum_output_length=limits.max_pdf_stream_bytes,
        run_length_maximum_output_length=limits.max_pdf_stream_bytes,
        array_based_stream_maximum_output_length=limits.max_pdf_stream_bytes,
        maximum_declared_stream_length=limits.max_pdf_stream_bytes,
        image_maximum_buffer_size=limits.max_pdf_stream_bytes,
        stream_decoding_work_maximum_length=4 * limits.max_pdf_stream_bytes,
    ):
        try:
            reader = pypdf.PdfReader(io.BytesIO(data))
            # Many PDFs are "encrypted" only to restrict printing, with an empty user password.
            if reader.is_encrypted and not reader.decrypt(""):
                raise DocumentParseError(
                    f"“{filename}” is password-protected. Remove the password and upload it again.",
                    reason="encrypted",
                )
            page_count = len(reader.pages)
            if page_count > limits.max_pdf_pages:
                raise DocumentParseError(
                    f"“{filename}” has {page_count:,} pages; the limit is {limits.max_pdf_pages:,}.",
                    reason="too_large",
                )
            page_texts: list[str] = []
            extracted_chars = 0
            for page in reader.pages:
                page_text = page.extract_text() or ""
                extracted_chars += len(page_text)
                if extracted_chars > limits.max_text_chars:
                    raise DocumentParseError(
                        f"“{filename}” contains more than {limits.max_text_chars:,} characters of text; split "
                        "it into smaller documents.",
                        reason="too_large",
                    )
                page_texts.append(page_text)
            metadata_title = (reader.metadata.title if reader.metadata else None) or ""
        except DocumentParseError:
            raise
        except pypdf.errors.FileNotDecryptedError as error:
            raise DocumentParseError(
                f"“{filename}” is password-protected. Remove the password and upload it again.",
                reason="encrypted",
            ) from error
        except pypdf.errors.LimitReachedError as error:
            raise DocumentParseError(
                f"“{filename}” expands to far more data than its size suggests and was refused.",
                reason="too_large",
            ) from error
        except Exception as error:
            # pypdf raises many exception types (and sometimes plain ValueError/KeyError) on damaged files.
            raise DocumentParseError(
                f"“{filename}” could not be read as a PDF; it may be damaged.", reason="corrupt"
            ) from error

    sections = [
        Section(heading_path=(f"Page {number}",), text=text)
        for number, text in enumerate(page_texts, start=1)
        if text.strip()
    ]
    title = _clean_title(str(metadata_title))
    if not title and sections:
        title = _first_line_as_title(sections[0].text)
    return ParsedDocument(title=title or fallback_title, format="pdf", sections=sections)


# --- DOCX --------------------------------------------------------------------------------------------------


def _parse_docx(data: bytes, *, fallback_title: str, limits: ParseLimits, filename: str) -> ParsedDocument:
    _refuse_zip_bomb(data, limits=limits, filename=filename)
    import docx  # python-docx pulls in lxml; only pay for it when a DOCX arrives.
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        word_document = docx.Document(io.BytesIO(data))
    except Exception as error:
        raise DocumentParseError(
            f"“{filename}” could not be read as a Word document; it may be damaged.", reason="corrupt"
        ) from error

    builder = _SectionBuilder()
    title = ""
    for block in word_document.iter_inner_content():
        if isinstance(block, Paragraph):
            text = block.text.strip()
            if not text:
                continue
            style_name = (block.style.name if block.style is not None else "") or ""
            heading_level = _docx_heading_level(style_name)
            if style_name == "Title" and not title:
                title = text
            elif heading_level is not None:
                builder.start_heading(level=heading_level, text=text)
            else:
                builder.add_text(text)
        elif isinstance(block, Table):
            builder.add_text(_docx_table_text(block))
    core_title = word_document.core_properties.title or ""
    title = _clean_title(title or core_title)
    return builder.build(title=title or fallback_title, document_format="docx", promote_single_top_heading=not title)


def _refuse_zip_bomb(data: bytes, *, limits: ParseLimits, filename: str) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        raise DocumentParseError(
            f"“{filename}” could not be read as a Word document; it may be damaged.", reason="corrupt"
        ) from error
    if len(entries) > limits.max_docx_entries:
        raise DocumentParseError(
            f"“{filename}” contains {len(entries):,} internal files and was refused.", reason="too_large"
        )
    # zipfile stops reading an entry at its declared size (and fails the CRC check), so the declared sizes
    # are an upper bound on what python-docx can inflate.
    uncompressed = sum(entry.file_size for entry in entries)
    compressed = max(1, sum(entry.compress_size for entry in entries))
    if (
        uncompressed > limits.max_docx_uncompressed_bytes
        or uncompressed / compressed > limits.max_docx_compression_ratio
    ):
        raise DocumentParseError(
            f"“{filename}” expands to {_human_size(uncompressed)} when unpacked and was refused as unsafe.",
            reason="too_large",
        )


def _docx_heading_level(style_name: str) -> int | None:
    match = re.fullmatch(r"Heading (\d)", style_name)
    return int(match.group(1)) if match else None


def _docx_table_text(table: Table) -> str:
    rows = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            cell_text = cell.text.strip()
            # Merged cells repeat once per grid column; say them once.
            if cell_text and (not cells or cells[-1] != cell_text):
                cells.append(cell_text)
        if cells:
            rows.append(" | ".join(cells))
    return "\n".join(rows)


# --- HTML, Markdown, text ----------------------------------------------------------------------------------


def _parse_html(html: str, *, fallback_title: str) -> ParsedDocument:
    import trafilatura  # heavy import (lxml, justext, courlan); only when HTML arrives.

    # trafilatura drops navigation, footers, scripts and styles and keeps headings as Markdown `#` lines.
    extraction_options = {
        "output_format": "markdown",
        "include_formatting": True,
        "include_tables": True,
        "include_comments": False,
        "include_links": False,
        "include_images": False,
    }
    content = without_images(html)
    main_text = trafilatura.extract(content, **extraction_options) or trafilatura.extract(
        content, favor_recall=True, **extraction_options
    )
    metadata = trafilatura.extract_metadata(html)
    page_title = _clean_title(metadata.title if metadata is not None and metadata.title else "")
    if not page_title:
        title_match = re.search(r"<title[^>]*>(.*?)</title>", html, flags=re.IGNORECASE | re.DOTALL)
        page_title = _clean_title(strip_tags(title_match.group(1))) if title_match else ""
    parsed = _parse_markdown(main_text or "", fallback_title=page_title or fallback_title)
    if page_title:
        parsed = ParsedDocument(title=page_title, format="html", sections=_drop_leading_title(parsed, page_title))
    return ParsedDocument(title=parsed.title, format="html", sections=parsed.sections)


def _drop_leading_title(parsed: ParsedDocument, title: str) -> list[Section]:
    # A page's <h1> usually repeats its <title>; keep it once, as the title.
    def without_title(path: tuple[str, ...]) -> tuple[str, ...]:
        if path and path[0].casefold() == title.casefold():
            return path[1:]
        return path

    return [Section(heading_path=without_title(s.heading_path), text=s.text) for s in parsed.sections]


def _parse_markdown(markdown_text: str, *, fallback_title: str) -> ParsedDocument:
    # Raw HTML is parsed as HTML so that blocks of it can be dropped; inline tags are stripped below.
    tokens = MarkdownIt("commonmark", {"html": True}).enable("table").parse(markdown_text)
    lines = markdown_text.splitlines()
    builder = _SectionBuilder()
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token.level != 0 or token.map is None:
            index += 1
            continue
        if token.type == "heading_open":
            heading_text = inline_text(tokens[index + 1]) if index + 1 < len(tokens) else ""
            builder.start_heading(level=int(token.tag[1]), text=heading_text)
            index += 3
            continue
        if token.type.endswith("_open") or token.type in ("fence", "code_block", "html_block"):
            start, end = token.map
            block_text = "\n".join(lines[start:end])
            if token.type in ("fence", "code_block"):
                builder.add_text(block_text)
            elif token.type != "html_block" and not only_images(tokens, index):
                builder.add_text(clean_inline_markdown(block_text))
            # Skip to the matching close token so nested blocks are taken once, as source lines.
            if token.type.endswith("_open"):
                close_type = token.type.replace("_open", "_close")
                while index < len(tokens) and not (tokens[index].type == close_type and tokens[index].level == 0):
                    index += 1
        index += 1
    return builder.build(title=fallback_title, document_format="markdown", promote_single_top_heading=True)


def _parse_plain_text(text: str, *, fallback_title: str) -> ParsedDocument:
    title = _first_line_as_title(text) or fallback_title
    return ParsedDocument(title=title, format="text", sections=[Section(heading_path=(), text=text)])


# --- CSV ---------------------------------------------------------------------------------------------------


def _parse_csv(text: str, *, fallback_title: str, limits: ParseLimits, filename: str) -> ParsedDocument:
    sample = text[:65536]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel_tab if filename.lower().endswith(".tsv") else csv.excel
    previous_field_limit = csv.field_size_limit()
    csv.field_size_limit(limits.max_csv_field_chars)
    try:
        rows = csv.reader(io.StringIO(text, newline=""), dialect)
        header = next(rows, None)
        if header is None:
            raise DocumentParseError(f"“{filename}” has no rows.", reason="empty")
        column_names = [name.strip() or f"Column {number}" for number, name in enumerate(header, start=1)]
        sections: list[Section] = []
        for row_number, row in enumerate(rows, start=1):
            if row_number > limits.max_csv_rows:
                raise DocumentParseError(
                    f"“{filename}” has more than {limits.max_csv_rows:,} rows; split it into smaller files.",
                    reason="too_large",
                )
            pairs = [
                f"{column_names[i] if i < len(column_names) else f'Column {i + 1}'}: {value.strip()}"
                for i, value in enumerate(row)
                if value.strip()
            ]
            if pairs:
                # The row's first value names it (an FAQ's question, a product's name) unless it is long text.
                first = next((value.strip() for value in row if value.strip()), "")
                heading = " ".join(first.split()) if len(first) <= 120 else f"Row {row_number}"
                sections.append(Section(heading_path=(heading,), text="\n".join(pairs)))
    except csv.Error as error:
        raise DocumentParseError(
            f"“{filename}” could not be read as CSV: {error}.",
            reason="too_large" if "field larger" in str(error) else "corrupt",
        ) from error
    finally:
        csv.field_size_limit(previous_field_limit)
    return ParsedDocument(title=fallback_title, format="csv", sections=sections)


# --- shared helpers ----------------------------------------------------------------------------------------


@dataclass
class _SectionBuilder:
    """Collects text under a stack of headings; a heading of level N closes every open heading of level >= N."""

    _open_headings: list[tuple[int, str]] = field(default_factory=list)
    _sections: list[tuple[tuple[tuple[int, str], ...], list[str]]] = field(default_factory=list)

    def start_heading(self, *, level: int, text: str) -> None:
        while self._open_headings and self._open_headings[-1][0] >= level:
            self._open_headings.pop()
        if text:
            self._open_headings.append((level, text))
        self._sections.append((tuple(self._open_headings), []))

    def add_text(self, text: str) -> None:
        if not self._sections or self._sections[-1][0] != tuple(self._open_headings):
            self._sections.append((tuple(self._open_headings), []))
        self._sections[-1][1].append(text)

    def build(self, *, title: str, document_format: DocumentFormat, promote_single_top_heading: bool) -> ParsedDocument:
        all_headings = [path[-1] for path, _ in self._sections if path]
        top_levels = [level for level, _ in all_headings]
        strip_top = False
        if promote_single_top_heading and all_headings:
            first_level, first_text = all_headings[0]
            # One heading above all others that opens the document is its title, not a section.
            if top_levels.count(first_level) == 1 and all(level > first_level for level in top_levels[1:]):
                title = first_text
                strip_top = True
        sections = []
        for path, texts in self._sections:
            names = tuple(text for _, text in path)
            if strip_top and names and names[0] == title:
                names = names[1:]
            sections.append(Section(heading_path=names, text="\n\n".join(texts)))
        return ParsedDocument(title=title, format=document_format, sections=sections)


def _decode_text(data: bytes, *, filename: str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    # Not UTF-8: almost always a Windows export. Statistical detection guesses wrong on short texts (it reads
    # "crème" as Central European), so take Windows-1252 and fall back to Latin-1, which decodes anything.
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _normalise_whitespace(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = re.sub(r"[ \t\f\v\u00a0]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def _first_line_as_title(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= 150 else ""
    return ""


def _clean_title(title: str) -> str:
    return re.sub(r"\s+", " ", title).strip()


def _title_from_filename(filename: str) -> str:
    stem = PurePosixPath(filename.replace("\\", "/")).stem
    return re.sub(r"[_\s]+", " ", stem).strip() or "Untitled document"


def _human_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size} bytes"

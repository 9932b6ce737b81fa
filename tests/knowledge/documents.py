"""Real files for the knowledge tests, built with the same libraries users' tools would use."""

import io
import zipfile
import zlib

import docx
import pypdf


def make_pdf(pages: list[list[str]], *, compress: bool = False) -> bytes:
    """A minimal, valid PDF with one line of Helvetica text per string; pypdf cannot draw text itself."""
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, filled in once the page objects are numbered
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    page_numbers = []
    for lines in pages:
        commands = ["BT /F1 12 Tf 72 720 Td 14 TL"]
        for line in lines:
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            commands.append(f"({escaped}) Tj T*")
        commands.append("ET")
        content = "\n".join(commands).encode("latin-1")
        if compress:
            content = zlib.compress(content)
            objects.append(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(content) + content + b"\nendstream")
        else:
            objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
        content_number = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            b"/Contents %d 0 R >>" % content_number
        )
        page_numbers.append(len(objects))
    kids = b" ".join(b"%d 0 R" % number for number in page_numbers)
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(page_numbers))
    return _assemble_pdf(objects)


def make_pdf_with_stream(stream: bytes, *, page_count: int = 1) -> bytes:
    """Pages that all draw the same (already Flate-compressed) content stream."""
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    page_numbers = []
    for _ in range(page_count):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            b"/Contents 4 0 R >>"
        )
        page_numbers.append(len(objects))
    kids = b" ".join(b"%d 0 R" % number for number in page_numbers)
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(page_numbers))
    return _assemble_pdf(objects)


def _assemble_pdf(objects: list[bytes]) -> bytes:
    output = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(output))
        output += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref_offset = len(output)
    output += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        output += b"%010d 00000 n \n" % offset
    output += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref_offset)
    return bytes(output)


def with_pdf_metadata(pdf: bytes, *, title: str) -> bytes:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(pdf)))
    writer.add_metadata({"/Title": title})
    output = io.BytesIO()
    writer.write(output)
    return output.getvalue()


def encrypted_pdf(pdf: bytes, *, password: str) -> bytes:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="AES-128")
    output = io.BytesIO()
    writer.write(output)
    return output.getvalue()


def make_docx(blocks: list[tuple[str, str]], *, table: list[list[str]] | None = None) -> bytes:
    """blocks: (style, text) pairs, style being "Title", "Heading 1".."Heading 9" or "" for body text."""
    document = docx.Document()
    for style, text in blocks:
        if style == "Title":
            document.add_heading(text, level=0)
        elif style.startswith("Heading "):
            document.add_heading(text, level=int(style.split()[1]))
        else:
            document.add_paragraph(text)
    if table:
        word_table = document.add_table(rows=len(table), cols=len(table[0]))
        for row_cells, row_values in zip(word_table.rows, table, strict=True):
            for cell, value in zip(row_cells.cells, row_values, strict=True):
                cell.text = value
    output = io.BytesIO()
    document.save(output)
    return output.getvalue()


def zip_bomb_docx(*, inflated_bytes: int) -> bytes:
    """A real DOCX with one extra part of zeros that deflates to almost nothing."""
    original = zipfile.ZipFile(io.BytesIO(make_docx([("", "Harmless looking text.")])))
    output = io.BytesIO()
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as bomb:
        for item in original.infolist():
            bomb.writestr(item, original.read(item.filename))
        with bomb.open("word/media/padding.bin", "w") as padding:
            block = bytes(1024 * 1024)
            for _ in range(inflated_bytes // len(block)):
                padding.write(block)
    return output.getvalue()

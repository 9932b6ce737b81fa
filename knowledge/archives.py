"""Uploads in bulk: a `.zip` archive read in memory into its documents, with the same limits and bomb guards as
one uploaded document (knowledge/parsing.py's `ParseLimits`), and a reason for every member left out.

Nothing is written to disk, so a member's name (even "../../etc/passwd") is only ever a title.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from knowledge.parsing import DEFAULT_PARSE_LIMITS, ParseLimits

# The formats knowledge/parsing.py reads, by extension.
DOCUMENT_SUFFIXES = frozenset(
    {".pdf", ".docx", ".html", ".htm", ".xhtml", ".md", ".markdown", ".txt", ".text", ".rst", ".csv", ".tsv"}
)
# What archivers add beside the documents: not worth a message.
_JUNK = ("__MACOSX/", ".DS_Store", "Thumbs.db", "desktop.ini")


class ArchiveError(ValueError):
    """The archive as a whole is refused (damaged, too large, a bomb); `str(error)` says why."""


@dataclass(frozen=True)
class ArchiveMember:
    path: str  # inside the archive, e.g. "policies/returns.pdf"
    data: bytes


@dataclass
class ArchiveContents:
    documents: list[ArchiveMember] = field(default_factory=list)
    # (member path, why it was left out), for a message per refused member.
    refused: list[tuple[str, str]] = field(default_factory=list)


def is_zip(*, filename: str, data: bytes) -> bool:
    """A zip archive to unpack: by its name, or its signature (a .docx is a zip too, and stays a document)."""
    suffix = PurePosixPath(filename.lower()).suffix
    return suffix == ".zip" or (data.startswith(b"PK\x03\x04") and suffix not in DOCUMENT_SUFFIXES)


def archive_documents(*, data: bytes, filename: str, limits: ParseLimits = DEFAULT_PARSE_LIMITS) -> ArchiveContents:
    """The documents inside a zip archive. Raises ArchiveError when the archive itself is refused."""
    if len(data) > limits.max_bytes:
        raise ArchiveError(f"“{filename}” is larger than the {limits.max_bytes // (1024 * 1024)} MB upload limit.")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        raise ArchiveError(f"“{filename}” is not a readable zip archive ({error}).") from error
    if len(entries) > limits.max_docx_entries:
        raise ArchiveError(f"“{filename}” holds {len(entries):,} files; at most {limits.max_docx_entries:,}.")
    # zipfile never inflates an entry past its declared size (it fails the CRC check instead), so the declared
    # sizes bound what unpacking can cost: a bomb is refused before anything is inflated.
    declared = sum(entry.file_size for entry in entries)
    compressed = max(1, sum(entry.compress_size for entry in entries))
    if declared > limits.max_docx_uncompressed_bytes or declared / compressed > limits.max_docx_compression_ratio:
        raise ArchiveError(f"“{filename}” expands to {declared:,} bytes when unpacked and was refused as unsafe.")
    contents = ArchiveContents()
    with archive:
        for entry in entries:
            path = entry.filename
            if entry.is_dir() or any(part in path for part in _JUNK) or PurePosixPath(path).name.startswith("."):
                continue
            suffix = PurePosixPath(path.lower()).suffix
            if suffix == ".zip":
                contents.refused.append((path, "an archive inside the archive is not unpacked; upload it alone"))
            elif suffix not in DOCUMENT_SUFFIXES:
                contents.refused.append((path, "not a document Parley reads (PDF, Word, HTML, Markdown, text, CSV)"))
            elif entry.flag_bits & 0x1:
                contents.refused.append((path, "encrypted"))
            elif entry.file_size > limits.max_bytes:
                contents.refused.append((path, f"larger than {limits.max_bytes // (1024 * 1024)} MB"))
            else:
                try:
                    member = archive.read(entry)
                except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError) as error:
                    contents.refused.append((path, f"could not be unpacked ({error})"))
                    continue
                contents.documents.append(ArchiveMember(path=path, data=member))
    return contents

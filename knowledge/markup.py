"""Markdown and HTML read as text: what parsing keeps of inline markup (code spans exactly, images as their alt
text, tags dropped without running words together), for `knowledge.parsing`."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from markdown_it.token import Token


# A code span: a run of backticks, then anything up to the same run (CommonMark).
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`).+?(?<!`)\1(?!`)", re.DOTALL)
# ![alt](url "title") and ![alt][reference]
_MARKDOWN_IMAGE = re.compile(
    r"!\[([^\]]*)\](?:\((?:[^()\s]+|\([^()]*\))*(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)|\[[^\]]*\])"
)
# An HTML tag that Markdown passes through (an escaped `\<` is text).
_HTML_TAG = re.compile(r"(?<!\\)<(/?)([A-Za-z][A-Za-z0-9-]*)((?:\s[^<>]*)?)/?>")
_HTML_ALT = re.compile(r"\balt\s*=\s*(?:\"([^\"]*)\"|'([^']*)')", re.IGNORECASE)
# Tags that end a line or a cell: removing them must not run the words on either side together.
_BREAKING_TAGS = frozenset(
    {"address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption", "figure", "footer"}
    | {"h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "ol", "p", "pre", "section", "table", "tbody", "td"}
    | {"tfoot", "th", "thead", "tr", "ul"}
)


def clean_inline_markdown(text: str) -> str:
    """A Markdown block as a reader would read it, still Markdown: images become their alt text (never "!alt"),
    inline HTML tags go (`<code>` becomes a code span, a tag that breaks a line or a cell leaves a space), and
    code spans are kept exactly (`<body>` inside backticks is text, not a tag)."""
    pieces, position = [], 0
    for span in _CODE_SPAN.finditer(text):
        pieces.append(_clean_outside_code(text[position : span.start()]))
        pieces.append(span.group(0))
        position = span.end()
    pieces.append(_clean_outside_code(text[position:]))
    return "".join(pieces)


def _clean_outside_code(text: str) -> str:
    text = re.sub(r"<(script|style)\b.*?(</\1\s*>|$)", "", text, flags=re.IGNORECASE | re.DOTALL)
    text = _MARKDOWN_IMAGE.sub(lambda match: match.group(1).strip(), text)

    def replace_tag(match: re.Match) -> str:
        name = match.group(2).lower()
        if name == "code":
            return "`"
        if name == "img":
            alt = _HTML_ALT.search(match.group(3) or "")
            return (alt.group(1) or alt.group(2) or "") if alt else ""
        return " " if name in _BREAKING_TAGS else ""

    return _HTML_TAG.sub(replace_tag, text)


def only_images(tokens: list[Token], index: int) -> bool:
    """Whether the paragraph opening at `tokens[index]` holds nothing but images: an illustration, not text."""
    if tokens[index].type != "paragraph_open" or index + 1 >= len(tokens):
        return False
    children = tokens[index + 1].children or []
    images = [child for child in children if child.type == "image"]
    rest = [child for child in children if child.type not in ("image", "softbreak", "hardbreak")]
    return bool(images) and all(child.type == "text" and not child.content.strip() for child in rest)


def without_images(html: str) -> str:
    """The page without pictures: images are not text, and a `<figure>` made trafilatura flatten the whole page
    into one line, code spans and paragraphs lost. A caption stays, as a paragraph."""
    html = re.sub(r"<(picture|svg)\b.*?</\1\s*>", "", html, flags=re.IGNORECASE | re.DOTALL)
    html = re.sub(r"<img\b[^>]*>", "", html, flags=re.IGNORECASE)
    html = re.sub(r"<(/?)figcaption\b[^>]*>", r"<\1p>", html, flags=re.IGNORECASE)
    return re.sub(r"<(/?)figure\b[^>]*>", r"<\1div>", html, flags=re.IGNORECASE)


def strip_tags(html: str) -> str:
    return re.sub(r"<[^>]+>", " ", html)


def inline_text(inline: Token) -> str:
    """The words of an inline Markdown run as a reader sees them: emphasis markers and inline HTML dropped, code
    spans verbatim (`__init__`), entities decoded, links reduced to their text. Going by the parser's tokens rather
    than stripping characters keeps the underscores of names (`make_archive`)."""
    parts = []
    for child in inline.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "image":
            parts.append(child.content)
    return re.sub(r"\s+", " ", "".join(parts)).strip()

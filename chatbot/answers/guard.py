"""The last check on what the model wrote, before a visitor sees it. It assumes the model obeyed an injected
instruction and limits the harm:

- links (Markdown `[label](url)`, `<url>` and bare URLs, the three kinds the widget's markdown.js turns into links)
  may only point at the hosts of the bot's sources and its allowed sites; any other link becomes plain text;
- a long verbatim stretch of the system prompt (the rules and persona, not the quoted passages) ends the answer
  with a safe message instead.

Markup that could run is not this module's job: the widget builds its DOM from text nodes only
(static/parley/chat/markdown.js), which tests/browser and tests/security assert.

`StreamGuard` does the same while the answer streams: it holds back only a trailing piece that could still turn
into a link (an open `[`, a word that may be the start of a URL), so ordinary text goes out at once.
"""

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

PROMPT_LEAK_WORDS = 8
SAFE_MESSAGE = "I'm sorry, I can't help with that. Is there anything about our products or services I can help with?"
LINK_REMOVED = "(link removed)"

_WORD = re.compile(r"[a-z0-9]+")
# JavaScript's whitespace (String.prototype.trim, \s), which markdown.js uses; Python's differs (\x1c-\x1f, \x85).
_JS_SPACES = "\t\n\v\f\r \u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff" + "".join(map(chr, range(0x2000, 0x200B)))
_JS_SPACE = re.escape(_JS_SPACES)  # for a character class
# What the WHATWG URL parser strips from both ends (C0 controls and space) and deletes everywhere (tab, CR, LF).
_C0_AND_SPACE = "".join(chr(code) for code in range(0x21))
_TAB_OR_NEWLINE = re.compile(r"[\t\n\r]")
# What markdown.js, and a browser's URL parser after it, would read as a link: a scheme, then anything up to
# (JavaScript) whitespace, angle brackets or a quote. "https:evil.test" and "https:/evil.test" are links too.
_URL = re.compile(rf"(?i)(?<![a-z0-9])(?:https?|mailto):[^{_JS_SPACE}<>\"]*")
# markdown.js's <address@host> (RE_AUTOMAIL): a mailto link.
_AUTOMAIL = re.compile(r"<([\w.+-]+@[\w-]+(?:\.[\w-]+)+)>", flags=re.ASCII)
# markdown.js's escapes: a backslash before ASCII punctuation.
_PUNCT = re.compile(r"[!-/:-@\[-`{-~]")
# markdown.js drops a link title: [text](url "title").
_TITLE = re.compile(rf"""[{_JS_SPACE}]+(["']).*\1$""")
_HOST_CHARS = re.compile(r"^[a-z0-9.-]+$")
# A trailing word that may still grow into a URL: it already has a scheme, or ends in the start of one.
_MAYBE_URL_TAIL = re.compile(
    r"(?i)(?:(?:https?|mailto):\S*|<\S*|(?<![a-z0-9])(?:h|ht|htt|https?|m|ma|mai|mail|mailt|mailto))$"
)


def _js_trim(value: str) -> str:
    return value.strip(_JS_SPACES)


def url_normalise(value: str) -> str:
    """A link target as markdown.js and then the browser's URL parser read it: trimmed (JavaScript's trim), its
    <...> taken off, C0 controls and spaces stripped from both ends, every tab, CR and LF deleted (WHATWG URL).
    "\u0001ht\ttps://evil" is https://evil to a browser, and so it is here."""
    value = _js_trim(value)
    if value.startswith("<") and value.endswith(">") and "\n" not in value:
        value = _js_trim(value[1:-1])
    return _TAB_OR_NEWLINE.sub("", value.strip(_C0_AND_SPACE))


def host_of(value: str) -> str:
    """The host a browser would go to for this URL text, "" when it is not a http(s)/mailto URL we understand."""
    # Browsers read a backslash as a slash in http(s) URLs.
    value = url_normalise(value).strip("<>").replace("\\", "/")
    match = re.match(r"(?i)^(https?|mailto):(.*)$", value)
    if not match:
        return ""
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme == "mailto":
        address = rest.split("?", 1)[0]
        host = address.rsplit("@", 1)[-1] if "@" in address else ""
    else:
        authority = re.split(r"[/?#]", rest.lstrip("/"), maxsplit=1)[0]
        host = authority.rsplit("@", 1)[-1]
        host = host.rsplit(":", 1)[0] if not host.startswith("[") else host
    host = host.lower().rstrip(".")
    return host if _HOST_CHARS.match(host) else ""


def allowed_hosts_from(urls: Iterable[str]) -> frozenset[str]:
    """The hosts of these URLs or origins (sources, allowed sites), as `guard_links` wants them."""
    hosts = set()
    for url in urls:
        host = (urlsplit(url.strip()).hostname or "") if url else ""
        if host:
            hosts.add(host.lower().removeprefix("www."))
    return frozenset(hosts)


def _host_allowed(host: str, allowed: frozenset[str]) -> bool:
    if not host:
        return False
    host = host.removeprefix("www.")
    return any(host == base or host.endswith("." + base) for base in allowed)


def _is_web_url(value: str) -> bool:
    return bool(re.match(r"(?i)^(https?|mailto):", url_normalise(value).lstrip("<")))


@functools.lru_cache(maxsize=4096)
def _url_allowed(url: str, allowed: frozenset[str]) -> bool:
    # Cached: a streaming answer is guarded again as it grows, and meets the same URLs each time.
    return _host_allowed(host_of(url), allowed)


# The characters `_match_bracket` acts on; it steps over every other one, so a search finds the next at C speed.
_BRACKET_STOPS = {"[": re.compile(r"[\\\[\]]"), "(": re.compile(r"[\\()\n]")}


def _match_bracket(text: str, start: int, open_: str, close: str) -> int:
    """The index of the bracket closing the one at `start`, or -1: markdown.js's matchParen exactly (a backslash
    escapes the next character; a "(" is not closed past the end of its line)."""
    depth = 0
    index = start
    stops = _BRACKET_STOPS[open_]
    while (found := stops.search(text, index)) is not None:
        index = found.start()
        char = text[index]
        if char == "\\":
            index += 1
        elif char == open_:
            depth += 1
        elif char == close:
            depth -= 1
            if depth == 0:
                return index
        else:  # a line break inside "("
            return -1
        index += 1
    return -1


def _link_target(text: str, open_paren: int) -> tuple[str, int] | None:
    """The target of a link whose "(" is at `open_paren`, as markdown.js reads it, and where its ")" is."""
    close_paren = _match_bracket(text, open_paren, "(", ")")
    if close_paren < 0:
        return None
    return _TITLE.sub("", _js_trim(text[open_paren + 1 : close_paren])), close_paren


def _code_span_end(text: str, index: int) -> int:
    """Where the code span opened by the backticks at `index` ends (markdown.js shows its text as is), or -1."""
    run = len(text[index:]) - len(text[index:].lstrip("`"))
    ticks = "`" * run
    close = text.find(ticks, index + run)
    while close >= 0 and text[close + run : close + run + 1] == "`":
        close = text.find(ticks, close + run + 1)
    return close + run if close >= 0 else -1


# The characters `_markdown_links` acts on; every other one is copied as it is, so a run of them is copied at once.
_LINK_STOPS = re.compile(r"[\\`\[]")


def _markdown_links(text: str, allowed: frozenset[str], open_code_spans: list[int] | None = None) -> tuple[str, int]:
    """`text` with its Markdown links outside `allowed` made plain text, and how many; the index of every backtick
    run that opens no code span in `text` (text that follows could close it) goes into `open_code_spans`."""
    out: list[str] = []
    removed = 0
    index = 0
    while index < len(text):
        found = _LINK_STOPS.search(text, index)
        if found is None:
            out.append(text[index:])
            break
        if found.start() > index:
            out.append(text[index : found.start()])
            index = found.start()
        # As markdown.js: an escaped character and a code span are text, never the start of a link.
        if text[index] == "\\" and _PUNCT.match(text, index + 1):
            out.append(text[index : index + 2])
            index += 2
            continue
        if text[index] == "`":
            end = _code_span_end(text, index)
            if end > index:
                out.append(text[index:end])
                index = end
                continue
            if open_code_spans is not None:
                open_code_spans.append(index)
        if text[index] == "[":
            close = _match_bracket(text, index, "[", "]")
            if close > index and text[close + 1 : close + 2] == "(":
                found = _link_target(text, close + 1)
                if found is not None:
                    target, close_paren = found
                    label = text[index + 1 : close]
                    # Other schemes (javascript:, data:) are no links to markdown.js: it shows them as text.
                    if not _is_web_url(target) or _url_allowed(target, allowed):
                        out.append(text[index : close_paren + 1])
                    else:
                        inner, inner_removed = _markdown_links(label, allowed)
                        out.append(inner)
                        removed += 1 + inner_removed
                    index = close_paren + 1
                    continue
        out.append(text[index])
        index += 1
    return "".join(out), removed


@dataclass(frozen=True)
class Guarded:
    text: str
    links_removed: int = 0
    prompt_leaked: bool = False


def _unpaired_targets(text: str, allowed: frozenset[str]) -> tuple[str, int]:
    """The safety net under `_markdown_links`: whatever a "[" pairs with (block structure, emphasis and code spans
    can pair them differently in markdown.js), a link's target always starts right after a "](". Every such target
    that is a web URL to a host outside `allowed` is deleted, until none is left (a deletion can join a "]" to a
    following "(")."""
    removed = 0
    start = 0
    while (found := text.find("](", start)) >= 0:
        target = _link_target(text, found + 1)
        if target is not None and _is_web_url(target[0]) and not _url_allowed(target[0], allowed):
            text = text[: found + 1] + text[target[1] + 1 :]
            removed += 1
            start = max(found - 1, 0)
        else:
            start = found + 1
    return text, removed


def guard_links(text: str, *, allowed_hosts: frozenset[str]) -> Guarded:
    """`text` with every link to a host outside `allowed_hosts` turned into plain text."""
    return _links_guarded(text, allowed_hosts)[0]


def _links_guarded(text: str, allowed_hosts: frozenset[str]) -> tuple[Guarded, bool]:
    """`guard_links`, and whether `text` ends open: text that follows could change how it is guarded, because a
    code span opened in it is not closed, or a "(" on its last line is not (a link target could go on)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # as markdown.js reads lines
    open_code_spans: list[int] = []
    text, removed = _markdown_links(text, allowed_hosts, open_code_spans)
    bare_removed = 0

    def bare(match: re.Match) -> str:
        nonlocal bare_removed
        url = match.group(0)
        if _url_allowed(url, allowed_hosts):
            return url
        bare_removed += 1
        return LINK_REMOVED

    def automail(match: re.Match) -> str:
        nonlocal bare_removed
        if _host_allowed(match.group(1).rsplit("@", 1)[1].lower(), allowed_hosts):
            return match.group(0)
        bare_removed += 1
        return LINK_REMOVED

    text = _URL.sub(bare, text)
    text = _AUTOMAIL.sub(automail, text)
    ends_open = bool(open_code_spans) or _open_paren_on_last_line(text)
    text, unpaired = _unpaired_targets(text, allowed_hosts)
    return Guarded(text=text, links_removed=removed + bare_removed + unpaired), ends_open


def _open_paren_on_last_line(text: str) -> bool:
    last_line = text.rfind("\n") + 1
    index = text.find("(", last_line)
    while index >= 0:
        if _match_bracket(text, index, "(", ")") < 0:
            return True
        index = text.find("(", index + 1)
    return False


def protected_text(system_prompt: str) -> str:
    """The part of the system prompt that must not be echoed: everything but the quoted passages."""
    before, marker, after = system_prompt.partition("<<<DATA>>>")
    if marker:
        after = after.partition("<<<END DATA>>>")[2]
    return before + "\n" + after


def _shingles(text: str, n: int = PROMPT_LEAK_WORDS) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def prompt_leaked(text: str, *, system_prompt: str, n: int = PROMPT_LEAK_WORDS) -> bool:
    """True when `text` repeats `n` or more consecutive words of the system prompt outside its passages."""
    return bool(_shingles(text, n) & _shingles(protected_text(system_prompt), n))


def guard_answer(text: str, *, allowed_hosts: frozenset[str], system_prompt: str = "") -> Guarded:
    """The text a visitor may see for this model answer."""
    if system_prompt and prompt_leaked(text, system_prompt=system_prompt):
        return Guarded(text=SAFE_MESSAGE, prompt_leaked=True)
    return guard_links(text, allowed_hosts=allowed_hosts)


def _stable_end(text: str) -> int:
    """How much of a growing answer can be guarded now: up to an unclosed `[...](...)` or a trailing word that
    may still become a URL."""
    end = len(text)
    index = text.find("[")
    while 0 <= index < end:
        close = _match_bracket(text, index, "[", "]")
        if close < 0 or close == len(text) - 1:
            end = index
            break
        if text[close + 1] == "(" and _match_bracket(text, close + 1, "(", ")") < 0:
            end = index
            break
        index = text.find("[", index + 1)
    # The tail can only be the last run of non-space characters (before one final line break, where `$` also
    # matches): search from its start, not the whole answer.
    word_start = end - 1 if end and text[end - 1] == "\n" else end
    while word_start > 0 and not text[word_start - 1].isspace():
        word_start -= 1
    tail = _MAYBE_URL_TAIL.search(text, word_start, end)
    if tail:
        end = tail.start()
    return end


class StreamGuard:
    """`guard_answer` for a streaming answer: `feed` each piece and relay what it returns; `final` is the text to
    save and send as `done` (authoritative: the widget renders it in place of the streamed text).

    After each piece, what has gone out is what `guard_links` makes of the answer so far up to `_stable_end`
    (`_advance` sends the difference). Guarding the whole answer again at every piece made each piece cost in
    proportion to the answer's length (0.14 ms a piece at 500 pieces, bench/guard_stream.py). So the answer is
    guarded in two parts: the settled text, guarded once, and the text after it, guarded at each piece. Text is
    settled up to a space or line break when nothing after it can change how it is guarded (`_settle`): every
    `[`, every code span and every `(` on its last line is closed. No link, bare URL or address crosses a space,
    and no link target crosses a line break, so `guard_links` of the whole is then the settled text's guarded
    text followed by that of the rest. tests/security/test_stream_guard.py holds this against guarding the whole
    answer at every piece."""

    def __init__(self, *, allowed_hosts: frozenset[str], system_prompt: str = "") -> None:
        self.allowed_hosts = allowed_hosts
        self._protected = _shingles(protected_text(system_prompt)) if system_prompt else set()
        self._raw = ""
        self._settled_end = 0  # raw[:_settled_end] is settled; `_settled_text` is what `guard_links` makes of it
        self._settled_text = ""
        self._settle_retry_length = 1  # the least text after `_settled_end` worth trying to settle
        self._lowered = ""
        self._words: list[str] = []  # the finished words of `_lowered`, up to `_words_end`
        self._words_end = 0
        self._checked_words = 0
        self._sent = ""
        self.prompt_leaked = False

    def protect(self, system_prompt: str) -> None:
        """Watch for this system prompt (known once the prompt is built, after the guard is made)."""
        self._protected = _shingles(protected_text(system_prompt))

    @property
    def raw(self) -> str:
        return self._raw

    def feed(self, piece: str) -> str:
        if self.prompt_leaked or not piece:
            return ""
        self._raw += piece
        if self._protected and self._leaks(piece):
            self.prompt_leaked = True
            return ""
        unsettled = self._raw[self._settled_end :]
        stable = unsettled[: _stable_end(unsettled)]
        return self._advance(stable[self._settle(stable) :])

    def flush(self) -> str:
        """What is left to relay once the answer ended (or was cut off)."""
        if self.prompt_leaked:
            return ""
        return self._advance(self._raw[self._settled_end :])

    def final(self) -> Guarded:
        if self.prompt_leaked:
            return Guarded(text=SAFE_MESSAGE, prompt_leaked=True)
        return guard_links(self._raw, allowed_hosts=self.allowed_hosts)

    def _settle(self, stable: str) -> int:
        """Settle `stable` (the stable text after the settled text) up to its last space or line break, if it
        settles; how much of `stable` that took. After a try that failed, the next waits until the text to settle
        is half as long again, so text that stays open (a stray backtick) is not read twice at every piece."""
        end = max(stable.rfind(" "), stable.rfind("\n")) + 1
        if end < self._settle_retry_length:
            return 0
        text = stable[:end]
        guarded, ends_open = _links_guarded(text, self.allowed_hosts) if _stable_end(text) == end else (None, True)
        if ends_open:
            self._settle_retry_length = end + end // 2 + 1
            return 0
        self._settled_end += end
        self._settled_text += guarded.text
        self._settle_retry_length = 1
        return end

    def _advance(self, unsettled_stable: str) -> str:
        guarded = self._settled_text + guard_links(unsettled_stable, allowed_hosts=self.allowed_hosts).text
        if not guarded.startswith(self._sent):
            return ""  # the final text (sent as `done`) supersedes what streamed
        new, self._sent = guarded[len(self._sent) :], guarded
        return new

    def _leaks(self, piece: str) -> bool:
        """Whether the answer so far repeats a run of PROMPT_LEAK_WORDS words of the system prompt that was not
        there at the last piece. Only the new words are read: lowering a piece lowers its letters as lowering the
        whole answer does (the one exception, a final sigma, is no letter of a word)."""
        self._lowered += piece.lower()
        found = list(_WORD.finditer(self._lowered, self._words_end))
        growing = found.pop() if found and found[-1].end() == len(self._lowered) else None
        if found:
            self._words.extend(word.group() for word in found)
            self._words_end = found[-1].end()
        n = PROMPT_LEAK_WORDS
        start = max(0, self._checked_words - n)
        recent = self._words[start:] + ([growing.group()] if growing else [])
        self._checked_words = start + len(recent)
        return any(tuple(recent[i : i + n]) in self._protected for i in range(len(recent) - n + 1))

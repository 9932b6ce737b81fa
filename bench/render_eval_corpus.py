"""Render the retrieval evaluation corpus: pydoc's plain-text docs of some standard-library modules as Markdown.

Run once and commit the output; tests and benchmarks read the committed files and never render at run time:

    .venv/bin/python -m bench.render_eval_corpus

Python's version changes pydoc's text, so re-rendering can break expected phrases in questions.jsonl; run
`bench/eval_retrieval_offline.py --check` afterwards.
"""

import importlib
import pydoc
import re
import sys
from pathlib import Path

MODULES = [
    "argparse", "base64", "bisect", "calendar", "collections", "contextlib", "csv", "dataclasses", "datetime",
    "enum", "functools", "glob", "gzip", "hashlib", "heapq", "http.client", "itertools", "json", "logging",
    "os.path", "pathlib", "queue", "random", "re", "secrets", "shutil", "sqlite3", "statistics", "string",
    "subprocess", "tarfile", "tempfile", "textwrap", "threading", "time", "typing", "unittest", "urllib.parse",
    "uuid", "zipfile",
]  # fmt: skip
CORPUS_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "eval" / "corpus"
# Sections that are the same boilerplate in every module or name a path on the machine that rendered them.
DROPPED_SECTIONS = {"MODULE REFERENCE", "FILE"}
SECTION_LINE = re.compile(r"^[A-Z][A-Z ]+$")
CLASS_LINE = re.compile(r"^    (?:(\w+) = )?class (\w+)")
FUNCTION_LINE = re.compile(r"^    (\w+)(?: = \w+)?\(")


def pydoc_as_markdown(module_name: str) -> str:
    module = importlib.import_module(module_name)
    text = pydoc.render_doc(module, renderer=pydoc.plaintext)
    lines = [f"# {module_name}", ""]
    section = ""
    for line in text.splitlines()[1:]:
        line = line.rstrip()
        if SECTION_LINE.match(line):
            section = line
            if section not in DROPPED_SECTIONS:
                lines += [f"## {section.title()}", ""]
            continue
        if section in DROPPED_SECTIONS or re.fullmatch(r"\s*\|?\s*-{10,}", line):
            continue
        class_match = CLASS_LINE.match(line) if section == "CLASSES" else None
        function_match = FUNCTION_LINE.match(line) if section == "FUNCTIONS" else None
        if class_match or function_match:
            name = (class_match.group(1) or class_match.group(2)) if class_match else function_match.group(1)
            lines += [f"### {name}", ""]
        # Every body line stays indented by at least four spaces, so Markdown never reads a `# comment` or a
        # `----` in pydoc's text as a heading.
        body = "    " + line[8:] if line.startswith("     |") and line[8:].strip() else line
        if line.startswith("     |") and not line[8:].strip():
            body = ""
        body = re.sub(r" at 0x[0-9a-f]+>", ">", body)  # memory addresses change on every render
        lines.append(body if not body.strip() or body.startswith("    ") else "    " + body)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def main() -> None:
    CORPUS_DIR.mkdir(parents=True, exist_ok=True)
    for module_name in MODULES:
        (CORPUS_DIR / f"{module_name}.md").write_text(pydoc_as_markdown(module_name), encoding="utf-8")
    total = sum(path.stat().st_size for path in CORPUS_DIR.glob("*.md"))
    print(f"{len(MODULES)} modules, {total / 1e6:.2f} MB, Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()

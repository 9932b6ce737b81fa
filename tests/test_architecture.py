"""The house rules of docs/architecture.md, checked on the code as it is: which package may import which, no import
circle, no product module over 600 lines, the environment read only in settings, Redis key names in one module.

Imports are read from the source (module level and inside functions alike), not by importing anything."""

import ast
from collections import defaultdict
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent
PRODUCT = ("chatbot", "knowledge", "inference")
MAX_MODULE_LINES = 600

# Which product package may import which (besides itself, and the libraries `knowledge` and `inference`, which
# every chatbot package may use). The project's wiring (settings, urls, routing, asgi, the Celery app, commands,
# admin, middleware, template tags) sits on top and may import anything.
ALLOWED = {
    "chatbot.realtime": set(),
    "chatbot.models": {"chatbot.realtime"},
    "chatbot.ops": {"chatbot.realtime", "chatbot.celery"},
    "chatbot.webhooks": {"chatbot.models"},
    "chatbot.apikeys": {"chatbot.models", "chatbot.realtime"},
    "chatbot.leads": {"chatbot.models", "chatbot.realtime", "chatbot.webhooks"},
    "chatbot.privacy": {"chatbot.models"},
    "chatbot.answers": {"chatbot.models", "chatbot.realtime", "chatbot.ops", "chatbot.leads", "chatbot.webhooks"},
    "chatbot.chat": {"chatbot.models", "chatbot.realtime", "chatbot.answers", "chatbot.leads", "chatbot.webhooks"},
    # leads: a bot's settings form checks the lead form with the leads domain's parser (chatbot.bots.forms).
    "chatbot.bots": {"chatbot.models", "chatbot.realtime", "chatbot.answers", "chatbot.chat", "chatbot.leads"},
    "chatbot.insights": {"chatbot.models", "chatbot.realtime", "chatbot.ops", "chatbot.answers", "chatbot.chat"},
    "chatbot.dashboard": {
        "chatbot.models",
        "chatbot.realtime",
        "chatbot.ops",
        "chatbot.leads",
        "chatbot.privacy",
        "chatbot.answers",
        "chatbot.chat",
        "chatbot.bots",
        "chatbot.webhooks",
        "chatbot.apikeys",
        "chatbot.insights",
    },
    # The REST API: what the dashboard may use, and the dashboard's forms and selectors (the same validation and
    # filters), never its views (test below).
    "chatbot.api": {
        "chatbot.models",
        "chatbot.realtime",
        "chatbot.ops",
        "chatbot.leads",
        "chatbot.privacy",
        "chatbot.answers",
        "chatbot.chat",
        "chatbot.bots",
        "chatbot.webhooks",
        "chatbot.apikeys",
        "chatbot.dashboard",
        "chatbot.insights",
    },
}
# The libraries: neither imports chatbot, nor the other.
LIBRARIES = {"knowledge": {"chatbot", "inference"}, "inference": {"chatbot", "knowledge"}}
# Where the environment may be read: settings (everything else reads settings), and what runs before settings
# exist or hands the environment to child processes.
ENVIRONMENT_READERS = {
    "chatbot/settings.py",
    "chatbot/asgi.py",
    "chatbot/celery.py",
    "chatbot/ops/embedded.py",  # finds or starts the embedded servers before settings are read
    "chatbot/ops/devmode.py",  # whether `up` runs with DEBUG on, decided before settings are read
    "chatbot/management/commands/up.py",  # the environment of the processes it starts
    "chatbot/management/commands/createstaff.py",  # a password given to the command, not configuration
    "knowledge/embeddings.py",  # sets the Hugging Face libraries' offline switches for the packaged model
    "knowledge/onnx_export.py",  # the same, for the install step that exports the model
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(BASE_DIR).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _product_files() -> dict[str, Path]:
    files = {}
    for package in PRODUCT:
        for path in (BASE_DIR / package).rglob("*.py"):
            if "migrations" not in path.parts:
                files[_module_name(path)] = path
    return files


FILES = _product_files()


def _imports(module: str, path: Path) -> set[str]:
    """The product modules `module` imports, anywhere in it."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            # The longest prefix that is one of our modules: `from chatbot.models import Bot` is chatbot.models.
            parts = name.split(".")
            for end in range(len(parts), 0, -1):
                candidate = ".".join(parts[:end])
                if candidate in FILES:
                    if candidate != module:
                        found.add(candidate)
                    break
    return found


GRAPH = {module: _imports(module, path) for module, path in FILES.items()}


def _package(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "chatbot":
        return parts[0]
    if len(parts) > 1 and f"chatbot.{parts[1]}" in ALLOWED:
        return f"chatbot.{parts[1]}"
    return "chatbot (wiring)" if len(parts) == 1 or f"chatbot.{parts[1]}" not in ALLOWED else module


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the circles (components of more than one module) of the import graph."""
    index, low, on_stack, stack, circles = {}, {}, set(), [], []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_the_import_graph_reads_the_modules_it_should():
    # A guard for the checks below: if the reader found no arrows, every other test would pass vacuously.
    assert "chatbot.chat.consumers" in GRAPH
    assert "chatbot.chat.session" in GRAPH["chatbot.chat.consumers"]
    assert "chatbot.models" in GRAPH["chatbot.answers.pipeline"]
    assert "knowledge.retrieval" in GRAPH["chatbot.answers.pipeline"]


def test_no_module_imports_itself_back_through_others():
    assert _strongly_connected(GRAPH) == []


@pytest.mark.parametrize("library", sorted(LIBRARIES))
def test_the_libraries_import_neither_chatbot_nor_each_other(library):
    forbidden = LIBRARIES[library]
    arrows = [
        f"{module} -> {imported}"
        for module, imports in GRAPH.items()
        if module.split(".")[0] == library
        for imported in imports
        if imported.split(".")[0] in forbidden
    ]
    assert arrows == []


def test_each_chatbot_package_imports_only_the_packages_below_it():
    arrows = defaultdict(list)
    for module, imports in GRAPH.items():
        package = _package(module)
        if package not in ALLOWED:
            continue
        for imported in imports:
            target = _package(imported)
            if target in (package, "knowledge", "inference") or target in ALLOWED[package]:
                continue
            if imported in ALLOWED[package]:  # a single wiring module allowed by name (the Celery app)
                continue
            arrows[package].append(f"{module} -> {imported}")
    assert dict(arrows) == {}


def test_the_api_never_imports_the_dashboards_views():
    arrows = [
        f"{module} -> {imported}"
        for module, imports in GRAPH.items()
        if module.startswith("chatbot.api")
        for imported in imports
        if imported.startswith(("chatbot.dashboard.views", "chatbot.dashboard.consumers"))
    ]
    assert arrows == []


def test_the_package_layers_themselves_have_no_circle():
    assert _strongly_connected({package: set(allowed) for package, allowed in ALLOWED.items()}) == []


def test_no_product_module_is_over_600_lines():
    long = {
        module: lines
        for module, path in FILES.items()
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_only_settings_reads_the_environment():
    readers = {
        str(path.relative_to(BASE_DIR))
        for path in FILES.values()
        if "os.environ" in (text := path.read_text()) or "getenv(" in text
    }
    assert readers <= ENVIRONMENT_READERS


def test_redis_key_names_are_written_in_one_module():
    writers = set()
    for module, path in FILES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("parley:"):
                writers.add(module)
    # settings names the channel layer's prefix; every other key is named in chatbot.realtime.keys.
    assert writers <= {"chatbot.realtime.keys", "chatbot.settings"}


def test_development_tooling_is_not_in_the_product_packages():
    assert not list(BASE_DIR.glob("*/testing"))
    shipped = (
        (BASE_DIR / "pyproject.toml").read_text().split("[tool.setuptools.packages.find]", 1)[1].split("\n[", 1)[0]
    )
    assert "devtools" not in shipped and "bench" not in shipped

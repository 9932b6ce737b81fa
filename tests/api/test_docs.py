"""docs/api.md is written from the OpenAPI document: every route of the document is on the page."""

import re
from pathlib import Path

from chatbot.api.api import api

DOC = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()


def test_every_route_of_the_openapi_document_is_documented():
    documented = set(re.findall(r"`(GET|POST|PATCH|DELETE|PUT) (/api/v1/[^`\s]+)`", DOC))
    routes = {
        (method.upper(), path)
        for path, operations in api.get_openapi_schema()["paths"].items()
        for method in operations
    }
    assert routes - documented == set()
    # Nothing documented that does not exist (the document and the docs page are not routes of the document).
    assert documented - routes == {("GET", "/api/v1/openapi.json"), ("GET", "/api/v1/docs")}


def test_every_curl_example_uses_the_documented_variables():
    blocks = re.findall(r"```sh\n(.*?)```", DOC, flags=re.S)
    curls = [block for block in blocks if "curl" in block]
    assert len(curls) >= 15
    for block in curls:
        assert "$PARLEY_URL/api/v1/" in block and "Bearer $PARLEY_KEY" in block, block

"""The API docs work on a network without internet access, the schema has one
path per endpoint and generates without warnings, and no page the portal
serves refers to another host."""
from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import pytest
from django.core.management import call_command
from django.test import Client

from tests.test_translations import expected_status, portal_pages, site  # noqa: F401  (the fixture)

PORTAL_HOST = "testserver"
ABSOLUTE_URL = re.compile(r"""(?:https?:)?//[\w.-]+(?::\d+)?""", re.IGNORECASE)
# Where a browser fetches from: attribute values and CSS url()/@import (protocol-relative
# "//host" counts too); plus any http(s)://host written anywhere, inline scripts included.
FETCHED = re.compile(r"""(?:\b(?:src|href|action|srcset|poster|data|formaction)\s*=\s*["']\s*|url\(\s*["']?|"""
                     r"""@import\s+["'])((?:https?:)?//[^"')\s]+)""", re.IGNORECASE)
ANYWHERE = re.compile(r"""https?://[^\s"'<>)\\]+""", re.IGNORECASE)
XML_NAMESPACE = re.compile(r"""\bxmlns(?::\w+)?\s*=\s*\\?["'][^"'\\]*\\?["']""")


def foreign_references(text: str) -> list[str]:
    """URLs in `text` whose host is not the portal's own."""
    text = XML_NAMESPACE.sub("", text)  # namespace names are identifiers, never fetched
    found = {m[1] for m in FETCHED.finditer(text)} | {m[0] for m in ANYWHERE.finditer(text)}
    return sorted(url for url in found if urlsplit(url if "//" in url[:8] else "http:" + url).hostname
                  not in (PORTAL_HOST,))


def stylesheets(html: str, base: str) -> list[str]:
    return [urljoin(base, m[1]) for m in re.finditer(r"""<link[^>]+href=["']([^"']+\.css)["']""", html)]


def test_foreign_reference_detection():
    html = ('<link rel="stylesheet" href="https://fonts.googleapis.com/css2?family=Roboto">'
            '<script src="//cdn.example.com/x.js"></script><style>@import "//evil.example/a.css";'
            'body{background:url(https://img.example/b.png)}</style><script>fetch("http://api.example/")</script>'
            '<a href="/documents/">ok</a><img src="http://testserver/static/x.png">'
            '<svg xmlns="http://www.w3.org/2000/svg"></svg><script>// a comment, not a URL</script>'
            '<style>a{background:url("data:image/svg+xml,<svg xmlns=\\"http://www.w3.org/2000/svg\\">")}</style>')
    assert foreign_references(html) == ["//cdn.example.com/x.js", "//evil.example/a.css",
                                        "http://api.example/", "https://fonts.googleapis.com/css2?family=Roboto",
                                        "https://img.example/b.png"]


@pytest.mark.parametrize("language", ["vi", "en"])
def test_api_docs_and_every_portal_page_refer_only_to_the_portal(site, language):  # noqa: F811
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(site["root"])
    urls = ["/api/docs/", "/api/redoc/", *portal_pages(site)]  # (the schema is data: its examples are never fetched)
    checked_css, problems = set(), {}
    for url in urls + ["/login/"]:
        response = (Client(HTTP_ACCEPT_LANGUAGE=language) if url == "/login/" else client).get(url)
        assert response.status_code == expected_status(url), url
        text = b"".join(response.streaming_content).decode() if response.streaming else response.content.decode()
        if foreign_references(text):
            problems[url] = foreign_references(text)
        for css in stylesheets(text, url):
            if css in checked_css:
                continue
            checked_css.add(css)
            sheet = client.get(css)
            assert sheet.status_code == 200, css
            body = b"".join(sheet.streaming_content) if sheet.streaming else sheet.content
            if foreign_references(body.decode("utf-8", "replace")):
                problems[css] = foreign_references(body.decode("utf-8", "replace"))
    assert checked_css, "no stylesheet found: the check would prove nothing"
    assert not problems, problems


def test_api_docs_pages_forbid_other_hosts_and_use_the_local_bundles():
    client = Client()
    for url, bundle in (("/api/docs/", "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"),
                        ("/api/redoc/", "/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js")):
        response = client.get(url)
        assert response.status_code == 200 and bundle in response.content.decode()
        policy = response["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "img-src 'self' data:" in policy
        assert client.get(bundle).status_code == 200
    assert '"validatorUrl": null' in client.get("/api/docs/").content.decode()


@pytest.mark.django_db
def test_schema_generates_without_warnings(tmp_path):
    """drf-spectacular's --fail-on-warn turns any warning (operationId collisions,
    unresolvable serializers…) into an error."""
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert "/api/v1/search:" in (tmp_path / "schema.yaml").read_text()
    assert "/api/v1/answer:" in (tmp_path / "schema.yaml").read_text()


@pytest.mark.django_db
def test_schema_lists_one_path_per_endpoint_and_the_other_spelling_still_answers():
    schema = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    paths = set(schema["paths"])
    assert {"/api/v1/search", "/api/v1/feedback", "/api/v1/answer"} <= paths
    assert not {p.rstrip("/") for p in paths if p.endswith("/")} & {p for p in paths if not p.endswith("/")}
    operation_ids = [op["operationId"] for item in schema["paths"].values() for op in item.values()
                     if isinstance(op, dict) and "operationId" in op]
    assert len(operation_ids) == len(set(operation_ids))
    for spelling in ("/api/v1/search", "/api/v1/search/"):  # a POST cannot follow a redirect: both answer
        response = Client().post(spelling, {"query": "x", "mode": "keyword"}, content_type="application/json")
        assert response.status_code == 200, response.content
    for spelling in ("/api/v1/answer", "/api/v1/answer/"):
        response = Client().post(spelling, {"question": "x"}, content_type="application/json")
        assert response.status_code == 200, response.content

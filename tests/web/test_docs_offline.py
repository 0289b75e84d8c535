"""The API docs, /docs (Swagger UI) and /redoc (ReDoc), work offline under our own CSP: their
bundles come from web/node_modules through this server, never from a CDN (issue: a map a
non-expert understands). The page watch (tests/web/conftest.py) fails a test on any console error
or request to another origin."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from tests.web.helpers import wait_for

pytestmark = pytest.mark.slow

# How many elements match a selector, once at least `least` do (0 until then: wait_for polls).
AT_LEAST = """([selector, least]) => {
  const n = document.querySelectorAll(selector).length;
  return n >= least ? n : 0;
}"""


class _Urls(HTMLParser):
    """Every src/href in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href") and v is not None]


def page_urls(html: str) -> list[str]:
    parser = _Urls()
    parser.feed(html)
    return parser.urls


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_pages_reference_only_our_own_origin(api, path):
    r = api.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    urls = page_urls(r.text)
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    assert "/static/favicon.svg" in urls  # our icon, not FastAPI's from its website
    assert "<script>" not in r.text and not re.search(r"<script(?![^>]*\bsrc=)", r.text)
    # Scripts from this origin only (no inline script, no eval) under either page's CSP.
    csp = directives(r.headers["content-security-policy"])
    assert csp["script-src"] == "'self'" and csp["default-src"] == "'self'"
    assert "unsafe-eval" not in str(csp)
    assert api.head(path).status_code == 200


def directives(csp: str) -> dict[str, str]:
    return dict(d.strip().split(" ", 1) for d in csp.split(";") if d.strip())


def test_only_redoc_relaxes_the_csp_and_only_for_styles_and_its_worker(api):
    page = directives(api.get("/").headers["content-security-policy"])
    docs = directives(api.get("/docs").headers["content-security-policy"])
    redoc = directives(api.get("/redoc").headers["content-security-policy"])
    assert docs == page  # Swagger UI works under the map page's policy
    assert "unsafe-inline" not in str(page) and "worker-src" not in page
    assert redoc["style-src"] == "'self' 'unsafe-inline'"
    assert redoc["worker-src"] == "'self' blob:"
    same = {k: v for k, v in redoc.items() if k not in ("style-src", "worker-src", "img-src")}
    assert same == {k: v for k, v in page.items() if k not in ("style-src", "img-src")}
    assert redoc["img-src"] == "'self' data: blob:"  # no other origin, even with a base map


@pytest.mark.parametrize(
    ("url", "ctype"),
    [
        ("/vendor/swagger-ui/swagger-ui-bundle.js", "javascript"),
        ("/vendor/swagger-ui/swagger-ui.css", "text/css"),
        ("/vendor/redoc/redoc.standalone.js", "javascript"),
        ("/static/js/docs-init.js", "javascript"),
        ("/static/js/redoc-init.js", "javascript"),
        ("/static/css/docs.css", "text/css"),
    ],
)
def test_docs_assets_are_served_from_our_origin(api, url, ctype):
    r = api.get(url)
    assert r.status_code == 200, url
    assert ctype in r.headers["content-type"]
    assert r.headers["x-content-type-options"] == "nosniff"
    if url.startswith("/vendor/"):
        # Pinned npm files: cached a day, then revalidated by ETag.
        assert int(re.search(r"max-age=(\d+)", r.headers["cache-control"])[1]) >= 3600
        again = api.get(url, headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304


def test_swagger_ui_renders_every_operation_offline(map_page):
    page = map_page.page
    page.goto(map_page.base_url + "/docs")
    n = wait_for(page, AT_LEAST, [".opblock", 10], what="Swagger UI's operations")
    paths = page.eval_on_selector_all(
        ".opblock-summary-path", "els => els.map(e => e.getAttribute('data-path'))"
    )
    assert n >= 10 and len(paths) == n
    assert any(p.startswith("/tiles/") for p in paths), paths
    assert "/listen" in paths and "/queries" in paths
    assert "Soundscape map service" in page.inner_text(".information-container")
    # An operation opens (the spec is fully usable, not just listed).
    page.click(".opblock-summary-path[data-path='/listen']")
    page.wait_for_selector(".opblock.is-open .parameters")


def test_redoc_renders_the_api_title_and_operations_offline(map_page):
    page = map_page.page
    page.goto(map_page.base_url + "/redoc")
    page.wait_for_selector("h1:has-text('Soundscape map service')")
    wait_for(page, AT_LEAST, ["[data-section-id*='operation/']", 10], what="ReDoc's operations")
    text = page.inner_text("#redoc")
    assert "/listen" in text and "/tiles/" in text
    # The search index lives in ReDoc's Web Worker (a blob: URL our docs CSP allows).
    page.fill("input[placeholder='Search...']", "listen")
    wait_for(page, AT_LEAST, ["[data-role='search:results'] li", 1], what="ReDoc's search")

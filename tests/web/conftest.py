"""Browser tests of the web map: headless Chromium (Debian package) driven by Playwright against a
real `soundscape serve` on a small demo store built with the packaged demo model.

Every page is watched: a console error, an uncaught exception, or a request to any other origin
fails the test that caused it. Each test leaves a screenshot in artifacts/screenshots/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.server.conftest import ROOT, ServiceProcess, start_service

# A region of the demo world with coast, lakes, cities, farmland and forest (New England to
# the Great Lakes); it builds in about 20 s.
DEMO_BBOX = (-82.0, 36.0, -69.0, 46.0)
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
# Flags that work on our machines (platform notes): no sandbox in containers, no GPU, and no
# background traffic, so every request the browser makes is one the page made.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    # A synthetic microphone (a beep), granted without a prompt: the recording test uses it.
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    # The listening test starts a gallery sound from script (play() without a click).
    "--autoplay-policy=no-user-gesture-required",
]


def _require_tools() -> None:
    """Fail (never skip) with what to install when a browser-test prerequisite is missing."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: apt-get install -y chromium "
            "(scripts/system-packages.txt lists it; scripts/install.sh installs it as root)"
        )
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[dev]' (it is a dev extra)")
    leaflet = ROOT / "web" / "node_modules" / "leaflet" / "dist" / "leaflet-src.esm.js"
    if not leaflet.exists():
        pytest.fail(f"{leaflet} is missing: run `npm ci` in web/ (scripts/install.sh does)")


def _demo_store(cache: Path) -> tuple[Path, Path]:
    """(store, checkpoint) of a small demo store built by `soundscape demo --no-serve`."""
    from embeddings_store.demo.build import packaged_checkpoint
    from embeddings_store.demo.geo import GeoLayers, default_cache_dir
    from embeddings_store.demo.paths import demo_paths

    if not packaged_checkpoint().exists():
        pytest.fail(f"{packaged_checkpoint()} is missing: train it with `make demo-model`")
    # The geo layers are built (and tested) elsewhere; reuse the shared cache's copy.
    GeoLayers.load(default_cache_dir())
    shutil.copy(GeoLayers.cache_path(default_cache_dir()), GeoLayers.cache_path(cache))
    bbox = ",".join(str(v) for v in DEMO_BBOX)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "server.cli", "demo", "--no-serve", "--no-progress",
         f"--bbox={bbox}", "--cache-dir", str(cache)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=900,
    )  # fmt: skip
    assert res.returncode == 0, f"soundscape demo failed:\n{res.stdout}\n{res.stderr}"
    paths = demo_paths(cache)
    return paths.store, paths.checkpoint


@dataclass
class RunningService:
    """A server someone else started (SOUNDSCAPE_WEB_TEST_URL), e.g. while editing the page."""

    url: str

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 30), **kw)


@pytest.fixture(scope="session")
def web_service(tmp_path_factory) -> Iterator[ServiceProcess | RunningService]:
    """The real service on the demo store, serving web/ at /.

    SOUNDSCAPE_WEB_TEST_URL=http://host:port runs the tests against a server already running
    instead (quick iterations on the page; it needs a relaxed rate limit).
    """
    _require_tools()
    if os.environ.get("SOUNDSCAPE_WEB_TEST_URL"):
        yield RunningService(os.environ["SOUNDSCAPE_WEB_TEST_URL"].rstrip("/"))
        return
    store, checkpoint = _demo_store(tmp_path_factory.mktemp("demo"))
    svc = start_service(store, checkpoint, tmp_path_factory.mktemp("weblog") / "serve.log")
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def api(web_service) -> Iterator:
    """An HTTP client for the same server (the tests' own requests, outside the browser)."""
    with web_service.client(timeout=120) as c:
        yield c


@pytest.fixture(scope="session")
def browser(web_service):
    _require_tools()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@dataclass
class Watch:
    """What a page did that it should not: console errors, exceptions, foreign requests."""

    origin: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    http_errors: list[str] = field(default_factory=list)
    # What a test provokes on purpose (e.g. the 4xx of a rejected upload): console messages
    # containing one of these strings, and responses whose "STATUS URL" contains one.
    allowed: list[str] = field(default_factory=list)

    def on_request(self, request) -> None:
        url = request.url
        if url.startswith(("data:", "blob:")):
            return
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != self.origin:
            self.foreign.append(url)

    def on_response(self, response) -> None:
        line = f"{response.status} {response.request.method} {response.url}"
        if response.status >= 400 and not any(a in line for a in self.allowed):
            self.http_errors.append(line)

    def on_console(self, message) -> None:
        if message.type == "error" and not any(a in message.text for a in self.allowed):
            self.console_errors.append(message.text)

    def problems(self) -> list[str]:
        return (
            [f"console error: {m}" for m in self.console_errors]
            + [f"page error: {m}" for m in self.page_errors]
            + [f"request to another origin: {u}" for u in self.foreign]
            + [f"error response: {r}" for r in self.http_errors]
        )


@dataclass
class MapPage:
    """A browser page on the map, with its watch."""

    page: object
    watch: Watch
    base_url: str


def _new_page(browser, base_url: str, **context_args) -> MapPage:
    context = browser.new_context(**{"viewport": {"width": 1280, "height": 800}, **context_args})
    page = context.new_page()
    page.set_default_timeout(60_000)
    watch = Watch(base_url)
    page.on("request", watch.on_request)
    page.on("console", watch.on_console)
    page.on("response", watch.on_response)
    page.on("pageerror", lambda exc: watch.page_errors.append(str(exc)))
    return MapPage(page, watch, base_url)


@pytest.fixture
def map_page(browser, web_service, request) -> Iterator[MapPage]:
    """A fresh page (its own context: no shared cache or storage); checked after the test."""
    mp = _new_page(browser, web_service.url)
    yield mp
    _finish(mp, request.node.name)


@pytest.fixture
def open_page(browser, web_service, request) -> Iterator:
    """Factory for more pages (e.g. opening a shared link); each is checked after the test."""
    pages: list[MapPage] = []

    def make(**context_args) -> MapPage:
        mp = _new_page(browser, web_service.url, **context_args)
        pages.append(mp)
        return mp

    yield make
    for i, mp in enumerate(pages):
        _finish(mp, f"{request.node.name}-{i + 1}")


def _finish(mp: MapPage, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        mp.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    finally:
        mp.page.context.close()
    problems = mp.watch.problems()
    assert not problems, "the page misbehaved:\n" + "\n".join(problems)

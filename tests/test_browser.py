"""The smoke site as a reader sees it, in headless Chromium: pages, images, links, screenshot."""

import functools
import http.server
import shutil
import threading
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(_QuietHandler, directory=str(site["html"]))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def _pages(html: Path) -> list[str]:
    skip = {"genindex.html", "search.html", "index.html"}  # index.html only redirects
    return sorted(str(p.relative_to(html)) for p in html.rglob("*.html")
                  if p.name not in skip and "_static" not in p.parts)


def test_every_page_loads_with_its_images_and_links(site, server, browser):
    page = browser.new_page()
    broken, failed_images, errors = [], [], []
    page.on("pageerror", lambda err: errors.append(str(err)))
    pages = _pages(site["html"])
    assert "results/comparison.html" in pages and len(pages) >= 10
    for name in pages:
        response = page.goto(server + name)
        assert response and response.ok, name
        page.wait_for_load_state("load")
        for src, width in page.eval_on_selector_all(
                "img", "els => els.map(e => [e.getAttribute('src'), e.naturalWidth])"):
            if not width:
                failed_images.append(f"{name}: {src}")
        for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
            url, _ = urldefrag(href)
            if not url.startswith(server):
                continue  # external links are not followed (no network here)
            target = site["html"] / urlparse(url).path.lstrip("/")
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{name} -> {href}")
    page.goto(server)
    page.wait_for_url("**/results/intro.html")
    assert not failed_images, failed_images
    assert not broken, broken[:10]
    assert not errors, errors[:5]


def test_comparison_screenshot_is_saved_with_the_build(site, server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(urljoin(server, "results/comparison.html"))
    page.wait_for_load_state("load")
    shot = site["html"] / "_screenshots" / "comparison.png"
    shot.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    # code input is folded by default: toggles exist and none is open
    assert page.locator("details.above-input").count() > 0
    assert page.locator("details.above-input[open]").count() == 0

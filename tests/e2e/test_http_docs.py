"""/docs and /redoc render in a real browser with the network closed to all but 127.0.0.1.

Headless Chromium (Debian's ``chromium``; ``.ci/run`` installs it) loads the pages from a real
server. Every host but 127.0.0.1 is unreachable: names do not resolve and every other
connection goes to a proxy that is not there. A control page that needs a CDN shows that the
closure holds, so the docs' rendering proves they need nothing from outside.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerProcess, serve

PREDICTION_PATHS = ("/predict", "/invocations", "/v2/models/housing/infer")
PREDICTION_OPERATIONS = ("predict_house_values", "sagemaker_invocations", "oip_model_infer")


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    pytest.skip("Chromium is not installed (apt-get install chromium; .ci/run installs it)")


def render(url: str, profile: Path) -> str:
    """The DOM of ``url`` after its scripts ran, in a browser that reaches only 127.0.0.1."""
    flags = [
        "--headless",
        "--no-sandbox",  # as root in CI
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        f"--user-data-dir={profile}",
        # The network closed: no name resolves but 127.0.0.1, and every other connection goes
        # to a proxy that is not listening (Chromium itself never proxies loopback).
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",
        # Virtual time runs until the page is idle, up to this budget: no wall-clock wait.
        "--virtual-time-budget=30000",
        "--dump-dom",
    ]
    proc = subprocess.run(
        [chromium(), *flags, url], capture_output=True, text=True, timeout=180, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture(scope="module")
def server(artifacts: Path) -> Iterator[ServerProcess]:
    with serve(artifacts, HOUSING_DEVICE="cpu") as running:
        running.wait_ready()
        yield running


@pytest.fixture
def pages(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1, and its URL: control pages are loaded from a
    loopback origin, as /docs is (a data: page may not reach loopback at all in Chromium)."""
    folder = tmp_path / "pages"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
        httpd.shutdown()
        thread.join(10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """No access log on the test's output."""


def _script_page(folder: Path, name: str, src: str) -> str:
    """A page that records whether Swagger UI's script from ``src`` loaded."""
    (folder / name).write_text(
        f'<body><script src="{src}"></script>'
        "<script>document.body.dataset.loaded = typeof SwaggerUIBundle</script></body>"
    )
    return name


def test_the_network_is_closed_to_a_page_that_needs_a_cdn(
    server: ServerProcess, pages: tuple[Path, str], tmp_path: Path
) -> None:
    folder, url = pages
    cdn = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"
    dom = render(f"{url}/{_script_page(folder, 'cdn.html', cdn)}", tmp_path)
    assert 'data-loaded="undefined"' in dom  # the page ran; the CDN's script did not load
    # The same page with the script from 127.0.0.1 loads: the check above can see a script.
    local = f"{server.url}/docs-assets/swagger-ui-bundle.js"
    dom = render(f"{url}/{_script_page(folder, 'local.html', local)}", tmp_path)
    assert 'data-loaded="function"' in dom


def test_swagger_ui_lists_the_prediction_operations_offline(
    server: ServerProcess, tmp_path: Path
) -> None:
    dom = render(f"{server.url}/docs", tmp_path)
    paths = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    assert set(PREDICTION_PATHS) <= paths, sorted(paths)
    assert {"/health/ready", "/ping", "/"} <= paths


def test_redoc_lists_the_prediction_operations_offline(
    server: ServerProcess, tmp_path: Path
) -> None:
    dom = render(f"{server.url}/redoc", tmp_path)
    for operation in PREDICTION_OPERATIONS:
        assert f"operation/{operation}" in dom, operation
    assert "Predict house values" in dom


def test_the_pages_refer_to_no_other_host(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for page in ("/docs", "/redoc"):
            html = client.get(page).text
            urls = re.findall(r'(?:src|href)="([^"]+)"', html)
            assert urls and all(u.startswith("/docs-assets/") for u in urls), urls
            assert "fonts.googleapis" not in html and "cdn.jsdelivr" not in html
            for asset in urls:
                assert client.get(asset).status_code == 200, asset

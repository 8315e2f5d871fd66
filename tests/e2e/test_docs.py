"""/docs and /redoc render in a real browser with the network closed to all but 127.0.0.1.

Headless Chromium (Debian's ``chromium``; ``.ci/run`` installs it) loads the pages from a real
server. Every host but 127.0.0.1 is unreachable: names do not resolve and every other
connection goes to a proxy that is not there. A control page that needs a CDN shows that the
closure holds, so the docs' rendering proves they need nothing from outside.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import ServerProcess, serve

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


def test_the_network_is_closed_to_a_page_that_needs_a_cdn(tmp_path: Path) -> None:
    page = (
        '<body><script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js">'
        "</script><script>document.body.dataset.cdn = typeof SwaggerUIBundle</script></body>"
    )
    dom = render("data:text/html," + urllib.parse.quote(page), tmp_path)
    assert 'data-cdn="undefined"' in dom  # the script ran; the CDN's did not load


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

"""The web page in a real headless Chromium: a photo picked in the page comes back with labels and scores."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.helpers import PHOTOS

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip


@contextlib.contextmanager
def _page() -> Iterator[tuple[Page, list[str]]]:
    """A page of a headless Chromium and the script errors it raises; the browser is closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page, errors
        finally:
            browser.close()


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (.ci/run installs Debian's chromium)")
def test_page_uploads_a_photo_and_shows_its_labels(local_simulation: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with _page() as (page, errors):
        page.goto(local_simulation + "/")
        assert page.title() == "faasinfer"
        page.fill("#topk", "3")
        page.set_input_files("#files", str(PHOTOS / "chelsea.jpg"))
        page.wait_for_selector(".status.done", timeout=120_000)
        labels = page.locator(".bar .label").all_inner_texts()
        session = page.inner_text("#session")
        status = page.inner_text(".status.done")
        model = page.inner_text(".model")
        docs_link = page.get_attribute("#docs", "href")
        page.screenshot(path=str(ARTIFACTS / "web-page.png"), full_page=True)
    assert errors == []
    assert session.startswith("session ") and status.startswith("#0 chelsea.jpg done")  # the name stays
    assert model == "model resnet18:file:resnet18-test.pth" and docs_link == "docs"
    assert len(labels) == 3 and all(label.rsplit(" ", 1)[1].startswith("0.") for label in labels)
    screenshot = (ARTIFACTS / "web-page.png").read_bytes()
    assert screenshot.startswith(b"\x89PNG") and len(screenshot) > 10_000


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (.ci/run installs Debian's chromium)")
def test_page_sends_an_image_larger_than_a_lambda_request_by_a_presigned_upload(
    local_simulation: str, tmp_path: Path
) -> None:
    import io
    import random

    from PIL import Image

    base = Image.open(PHOTOS / "coffee.jpg").convert("RGB").resize((3000, 2250))
    noise = Image.frombytes("RGB", base.size, random.Random(5).randbytes(3000 * 2250 * 3))
    buffer = io.BytesIO()
    Image.blend(base, noise, 0.25).save(buffer, format="JPEG", quality=97)
    big = tmp_path / "big-coffee.jpg"
    big.write_bytes(buffer.getvalue())
    assert len(buffer.getvalue()) > 4 * 1024 * 1024  # over the page's inline limit

    posted: list[str] = []
    with _page() as (page, errors):
        page.on("request", lambda request: posted.append(f"{request.method} {request.url}"))
        page.goto(local_simulation + "/")
        page.fill("#topk", "2")
        page.set_input_files("#files", str(big))
        page.wait_for_selector(".status.done", timeout=120_000)
        status = page.inner_text(".status.done")
    assert errors == [] and status.startswith("#0 big-coffee.jpg done")
    assert any(r.startswith("POST ") and "/faasinfer-staging" in r for r in posted)  # straight to S3
    assert f"POST {local_simulation}/image/confirm" in posted
    assert f"POST {local_simulation}/image" not in posted


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (.ci/run installs Debian's chromium)")
def test_docs_page_renders_every_operation_and_tries_one_out(local_simulation: str) -> None:
    """Swagger UI from the pinned package, nothing from a CDN: every declared operation is listed, and "Try it out"
    on ``POST /register`` reaches the API."""
    from functions.common.http_edge.routes import ENDPOINTS

    requested: list[str] = []
    with _page() as (page, errors):
        page.on("request", lambda request: requested.append(request.url))
        page.goto(local_simulation + "/docs")
        page.wait_for_selector(".opblock", timeout=30_000)
        operations = page.locator(".opblock-summary-path").all_inner_texts()
        locks = page.locator(".authorization__btn, .btn.authorize").count()
        page.click("#operations-upload-post_register .opblock-summary")
        page.click("text=Try it out")
        page.click("text=Execute")
        page.wait_for_selector(".live-responses-table .response-col_status", timeout=30_000)
        answer = page.inner_text(".live-responses-table tbody")
    assert errors == []
    assert sorted(o.replace("\u200b", "") for o in operations) == sorted(e.path for e in ENDPOINTS if e.documented)
    assert locks == 0  # no API key configured: nothing to authorize
    assert all(url.startswith(local_simulation) for url in requested)  # no CDN
    assert answer.startswith("200") and '"uuid"' in answer, answer


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (.ci/run installs Debian's chromium)")
def test_an_unreachable_server_is_a_readable_message_and_random_weights_are_flagged(local_simulation: str) -> None:
    with _page() as (page, _):
        page.goto(local_simulation + "/")
        page.route("**/register", lambda route: route.abort("connectionrefused"))  # the server went away
        page.set_input_files("#files", str(PHOTOS / "chelsea.jpg"))
        page.wait_for_function("document.getElementById('error').textContent.length > 0", timeout=30_000)
        message = page.inner_text("#error")
        page.evaluate(
            "render(card(new File([''], 'r.png'), 99), {seq: 99, status: 'done', predictions: ['x'], "
            "scores: [0.5], model: 'resnet18:random'})"
        )
        flagged = page.inner_text(".model.random")
    assert message.startswith(f"cannot reach the server at {local_simulation}: is it running?")
    assert flagged == "model resnet18:random: RANDOM WEIGHTS, these labels mean nothing"


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (.ci/run installs Debian's chromium)")
def test_a_401_asks_for_the_key_and_sends_the_request_again_with_it(local_simulation: str) -> None:
    from playwright.sync_api import Route

    sent: list[str | None] = []

    def key_required(route: Route) -> None:  # the server as API_KEY=s3cret answers it
        sent.append(route.request.headers.get("x-api-key"))
        if sent[-1] != "s3cret":
            route.fulfill(status=401, content_type="application/json", body='{"error": "missing or wrong x-api-key"}')
        else:
            route.continue_()

    with _page() as (page, errors):
        page.on("dialog", lambda dialog: dialog.accept("s3cret"))
        page.goto(local_simulation + "/")
        page.route("**/register", key_required)
        page.set_input_files("#files", str(PHOTOS / "chelsea.jpg"))
        page.wait_for_selector(".status.done", timeout=120_000)
        kept_key = page.input_value("#apikey")
    assert errors == [] and sent == [None, "s3cret"] and kept_key == "s3cret"


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (.ci/run installs Debian's chromium)")
def test_a_refused_file_shows_its_reason_where_the_picture_would_be(local_simulation: str, tmp_path: Path) -> None:
    notes = tmp_path / "notes.jpg"
    notes.write_bytes(b"these are notes, not a picture")
    with _page() as (page, errors):
        page.goto(local_simulation + "/")
        page.set_input_files("#files", str(notes))
        page.wait_for_selector(".card .refused", timeout=30_000)
        reason = page.inner_text(".card .refused")
        broken = page.locator(".card img").count()
    assert errors == [] and broken == 0
    assert reason.startswith("refused: 415: ") and "image" in reason, reason


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (.ci/run installs Debian's chromium)")
def test_a_server_gone_while_the_page_is_idle_is_noticed_and_its_return_too(local_simulation: str) -> None:
    with _page() as (page, _):
        page.goto(local_simulation + "/")
        page.route("**/health", lambda route: route.abort("connectionrefused"))
        page.wait_for_function("document.getElementById('error').textContent.includes('is not answering')",
                               timeout=15_000)  # fmt: skip
        gone = page.inner_text("#error")
        page.unroute("**/health")
        page.wait_for_function("document.getElementById('error').textContent === ''", timeout=15_000)
    assert gone.startswith(f"the server at {local_simulation} is not answering (since ")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (.ci/run installs Debian's chromium)")
def test_a_reload_keeps_the_session_and_each_file_name(local_simulation: str) -> None:
    with _page() as (page, errors):
        page.goto(local_simulation + "/")
        page.set_input_files("#files", str(PHOTOS / "chelsea.jpg"))
        page.wait_for_selector(".status.done", timeout=120_000)
        session = page.inner_text("#session")
        page.reload()
        page.wait_for_selector(".status.done", timeout=30_000)
        after = (page.inner_text("#session"), page.inner_text(".status.done"), page.inner_text(".card .nopreview"))
        page.set_input_files("#files", str(PHOTOS / "coffee.jpg"))  # the next upload carries on the seqs
        page.wait_for_function("document.querySelectorAll('.status.done').length === 2", timeout=120_000)
        statuses = page.locator(".status.done").all_inner_texts()
    assert errors == []
    assert after[0] == session and after[1].startswith("#0 chelsea.jpg done") and after[2] == "chelsea.jpg"
    assert sorted(s.split(" done")[0] for s in statuses) == ["#0 chelsea.jpg", "#1 coffee.jpg"]

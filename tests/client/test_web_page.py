"""The web page in a real headless Chromium: a photo picked in the page comes back with labels and scores."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import PHOTOS

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (.ci/run installs Debian's chromium)")
def test_page_uploads_a_photo_and_shows_its_labels(local_simulation: str) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(local_simulation + "/")
            assert page.title() == "faasinfer"
            page.fill("#topk", "3")
            page.set_input_files("#files", str(PHOTOS / "chelsea.jpg"))
            page.wait_for_selector(".status.done", timeout=120_000)
            labels = page.locator(".bar .label").all_inner_texts()
            session = page.inner_text("#session")
            status = page.inner_text(".status.done")
            page.screenshot(path=str(ARTIFACTS / "web-page.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert session.startswith("session ") and status.startswith("#0 done")
    assert len(labels) == 3 and all(label.rsplit(" ", 1)[1].startswith("0.") for label in labels)
    screenshot = (ARTIFACTS / "web-page.png").read_bytes()
    assert screenshot.startswith(b"\x89PNG") and len(screenshot) > 10_000

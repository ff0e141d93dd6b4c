"""Issue 15, part 2: the dashboard's loop page links a completed loop's signed evidence bundle
(headless Chromium over :class:`DashboardServer`, no loop process: the loops are seeded).

A loop that met its conditions shows "download signed bundle", which saves the file byte for
byte as ``<loop_id>.json``; a loop with another outcome shows none; a missing file is said."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from loopwright.adapters.local.evidence_bundle import evidence_file, read_evidence
from loopwright.dashboard.server import DashboardServer
from loopwright.models import LoopOutcome, LoopPhase
from tests.integration.dashboard_helpers import loop_state, open_dashboard
from tests.integration.test_dashboard_browser import (
    CHROMIUM,
    LAUNCH_ARGS,
    REQUIRE_ENV,
    browser_missing_reason,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.slow

SIGNED = b'{"bundle":{"loop_id":"done"},"signature":{"value":"x"}}\n'


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    dashboard = open_dashboard(tmp_path, evidence=lambda loop_id: read_evidence(tmp_path, loop_id))
    for loop_id, outcome in (("done", LoopOutcome.CONDITIONS_MET), ("gone", LoopOutcome.CONDITIONS_MET)):
        dashboard.store.create_loop(loop_state(loop_id, phase=LoopPhase.COMPLETED, outcome=outcome))
    dashboard.store.create_loop(loop_state("bare", phase=LoopPhase.COMPLETED, outcome=LoopOutcome.STOPPED))
    target = evidence_file(tmp_path, "done")
    target.parent.mkdir(parents=True)
    target.write_bytes(SIGNED)
    server = DashboardServer(dashboard.app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()
        dashboard.queries.close()
        dashboard.store.close()


@pytest.fixture
def page() -> Iterator[Page]:
    reason = browser_missing_reason()
    if reason is not None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        context = browser.new_context(accept_downloads=True)
        opened = context.new_page()
        errors: list[str] = []
        opened.on("pageerror", lambda exc: errors.append(str(exc)))
        opened.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        yield opened
        browser.close()
    assert [e for e in errors if "Failed to load resource" not in e] == []  # the 404 is expected


def test_a_completed_loop_links_its_signed_bundle(url: str, page: Page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page.goto(url + "#/loops/done")
    button = page.get_by_test_id("evidence-download")
    expect(button).to_be_visible()
    with page.expect_download() as info:
        button.click()
    download = info.value
    assert download.suggested_filename == "done.json"
    saved = tmp_path / "saved.json"
    download.save_as(saved)
    assert saved.read_bytes() == SIGNED  # byte for byte: it verifies as signed

    page.goto(url + "#/loops/gone")
    expect(page.get_by_test_id("loop-id")).to_have_text("gone")
    page.get_by_test_id("evidence-download").click()
    expect(page.get_by_test_id("evidence-note")).to_contain_text("has no evidence bundle")

    page.goto(url + "#/loops/bare")
    expect(page.get_by_test_id("loop-id")).to_have_text("bare")
    expect(page.get_by_test_id("evidence-download")).to_be_hidden()
    expect(page.get_by_test_id("evidence-note")).to_have_text("—")

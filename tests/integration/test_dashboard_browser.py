"""The operators' dashboard in a real browser: Debian's Chromium driven by Playwright.

No browser can be downloaded here, so Playwright drives the system Chromium
(``make test`` installs it with apt-get when it is missing). The page is
watched while tasks go through the system: its counts and its miners table
must change without a reload.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.support.edge_system import API_KEYS, Edge, running_edge

pytestmark = pytest.mark.slow

ADMIN = "browser-admin-key-0123456789"
ARTIFACTS = Path(__file__).resolve().parents[2] / ".cache" / "artifacts"


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError(
            "Chromium is missing: `make test` installs it (apt-get install chromium); "
            "the dashboard's browser tests cannot run without it"
        )
    return found


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield launched
        finally:
            await launched.close()


async def _sign_in(page: Page, key: str) -> None:
    await page.fill("#admin-key", key)
    await page.click("#login button[type=submit]")


async def _approve(edge: Edge) -> str:
    task_id = str((await edge.submit())["task_id"])
    await edge.wait_for(task_id, "DONE")
    reply = await edge.evaluate(task_id, {edge.miners[0].identity.ss58: 0.8})
    assert reply.status == 200, reply.json
    return task_id


async def test_the_dashboard_follows_the_system_live_and_refuses_a_client_key(
    tmp_path: Path, browser: Browser
) -> None:
    async with running_edge(tmp_path, miners=("instant",), admin_keys={"ops": ADMIN}) as edge:
        page = await browser.new_page(viewport={"width": 1400, "height": 1000})
        await page.goto(f"{edge.url}/dashboard")

        # A client's key is refused, and the board stays hidden.
        await _sign_in(page, API_KEYS["alice"])
        await expect(page.locator("#login-error")).to_contain_text("client key")
        await expect(page.locator("#board")).to_be_hidden()

        await _sign_in(page, ADMIN)
        await expect(page.locator("#state")).to_have_text("live")
        await expect(page.locator("#count-APPROVED")).to_have_attribute("data-count", "0")
        miner = edge.miners[0].identity.ss58
        responded = page.locator(f'#miners tr[data-hotkey="{miner}"] td[data-field="responded"]')
        await expect(responded).to_have_text("0")
        # Marks this document: a reload would lose it.
        await page.evaluate("window.__notReloaded = true")

        for _ in range(3):
            await _approve(edge)
        pending = await edge.submit()  # distributed to the instant miner, then DONE

        await expect(page.locator("#count-APPROVED")).to_have_attribute(
            "data-count", "3", timeout=10_000
        )
        await edge.wait_for(pending["task_id"], "DONE")
        await expect(page.locator("#count-DONE")).to_have_attribute(
            "data-count", "1", timeout=10_000
        )
        await expect(responded).to_have_text("4", timeout=10_000)
        await expect(page.locator("#latency-1-p50")).not_to_have_text("—")
        await expect(page.locator("#anchors")).to_contain_text("none configured")
        assert await page.evaluate("window.__notReloaded") is True
        # The key was asked once: a new page in the same tab session needs no login.
        await page.reload()
        await expect(page.locator("#state")).to_have_text("live")

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "dashboard.png"
        await page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        print(f"dashboard screenshot: {shot}")

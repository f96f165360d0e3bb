"""Browser tests: Debian's Chromium (headless) driven by Playwright for Python against the real service
(the `api` fixture's server on the real PostgreSQL and Redis). Playwright's own browser download is not
reachable here, so it is pointed at /usr/bin/chromium (`make install` installs the package when it is
missing). Every page must load without a console error: a script or style the Content-Security-Policy
refused would show up there."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

from tests.client import Api

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = os.environ.get("CONSOLE_SCREENSHOTS")  # a folder: tests then keep a picture of each page


def _installed(path: str) -> bool:
    return Path(path).exists()


def _screenshot_path(name: str) -> str:
    assert SCREENSHOTS
    folder = Path(SCREENSHOTS)
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / f"{name}.png")


@pytest.fixture(scope="session")
async def chromium() -> AsyncIterator[Browser]:
    assert _installed(CHROMIUM), "Chromium is missing: run `make install` (apt-get install chromium)"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        await browser.close()


@pytest.fixture
async def page(chromium: Browser, api: Api) -> AsyncIterator[Page]:
    context = await chromium.new_context(
        base_url=api.base, locale="zh-CN", accept_downloads=True, viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(10_000)
    tab = await context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # A refused form post shows its 403 page, which Chromium also reports as a failed resource.
        if message.type == "error" and "status of 4" not in message.text:
            problems.append(message.text)

    tab.on("console", on_console)
    tab.on("pageerror", lambda error: problems.append(str(error)))
    yield tab
    await context.close()
    assert not problems, f"the browser reported errors: {problems}"


async def shoot(page: Page, name: str) -> None:
    """Keep a full-page picture when CONSOLE_SCREENSHOTS names a folder (for a human to look at)."""
    if SCREENSHOTS:
        await page.screenshot(path=_screenshot_path(name), full_page=True)

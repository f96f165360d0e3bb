"""A screenshot of every console page with the demo data, for the README and for a human to look at.

    .venv/bin/python -m scripts.console_screenshots [--out docs/console]

Starts the service with the demo data (as the benchmarks do, under var/bench), drives Debian's Chromium
(/usr/bin/chromium) with Playwright and writes one PNG per page: login, the district 首页 (table and
chart), the school 首页 (its classes, the scheduling form), a roster import with rejected rows, and the
password page."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
from pathlib import Path

from playwright.async_api import Page, async_playwright

from scripts import benchlib

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DEMO_PASSWORD = "demo-password"  # noqa: S105 - the published demo credential (models/demo.py)
BAD_ROSTER = "学号,姓名,班级,年级\nD100,李小花,三年级2班,3\nD101,,三年级2班,3\nD102,赵小虎,三年级2班,九十九\n"


async def log_in(page: Page, username: str) -> None:
    await page.goto("/console/login")
    await page.get_by_label("用户名").fill(username)
    await page.get_by_label("密码").fill(DEMO_PASSWORD)
    await page.get_by_role("button", name="登录").click()
    await page.wait_for_load_state("networkidle")


async def shoot(page: Page, out: Path, name: str) -> None:
    path = out / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    benchlib.log(f"wrote {path}")


async def take(base: str, out: Path) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        context = await browser.new_context(
            base_url=base, locale="zh-CN", viewport={"width": 1280, "height": 900}
        )
        page = await context.new_page()
        await page.goto("/console/login")
        await shoot(page, out, "login")

        await log_in(page, "demo-district-admin")
        await page.wait_for_function("() => window.consoleCharts && window.consoleCharts.evening")
        await shoot(page, out, "district")
        await page.get_by_role("button", name="退出登录").click()

        await log_in(page, "demo-school-a-admin")
        await shoot(page, out, "school")
        await page.locator("#roster-form input[type=file]").set_input_files(
            {"name": "名单.csv", "mimeType": "text/csv", "buffer": BAD_ROSTER.encode()}
        )
        await page.locator("#roster-form").get_by_role("button", name="导入").click()
        await page.wait_for_load_state("networkidle")
        await page.locator("#roster").scroll_into_view_if_needed()
        await shoot(page, out, "school-roster-errors")
        await page.goto("/console/password")
        await shoot(page, out, "password")
        await page.goto("/console/")
        screen = await page.get_by_role("link", name="签到大屏").first.get_attribute("href")
        await page.goto(screen or "/console/")
        await page.wait_for_timeout(1500)  # its first refresh (the demo's classes are days ahead: closed)
        await shoot(page, out, "checkin")
        await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=benchlib.ROOT / "docs" / "console")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    benchlib.install_signal_handlers()
    started: list[tuple[subprocess.Popen[bytes], str]] = []
    with benchlib.stopping(started):
        proc, port = benchlib.start_and_wait_service()
        started.append((proc, "service"))
        asyncio.run(take(f"http://127.0.0.1:{port}", args.out))


if __name__ == "__main__":
    main()

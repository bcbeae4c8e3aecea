"""Headless Chromium for the browser tests: Playwright driving Debian's /usr/bin/chromium (no
browser download) in a network namespace of its own (netns_chromium.py; E2E_CHROMIUM_NETNS=0
runs it on the host's network), and `Steps`, the numbered screenshots and log of what a page did,
kept under tests/artifacts/<test>/ when the test fails.

The `browser` fixture drives the `hub` fixture's hub: a test module that overrides `hub` (a hub
with a configuration of its own) gets a browser pointed at that one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .hub import (
    CHROMIUM,
    Hub,
    artifact_dir,
    failed,
    missing_prerequisites,
    require,
    wait_until,
)

NETNS_CHROMIUM = Path(__file__).with_name("netns_chromium.py")

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Generous for a 2-core machine; every wait polls and returns as soon as its condition holds.
LAB_TIMEOUT_MS = 120_000
STEP_TIMEOUT_MS = 30_000


class Steps:
    """Numbered screenshots of the page and a log of what it did, kept only if the test fails."""

    def __init__(self, page: Any, workdir: Path) -> None:
        self.page = page
        self.workdir = workdir
        self.count = 0
        self.events: list[str] = []
        page.on("console", lambda m: self.note(f"console.{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.note(f"page error: {e}"))
        page.on("framenavigated", lambda f: f == page.main_frame and self.note(f"at {f.url}"))
        page.on("requestfailed", lambda r: self.note(f"failed: {r.method} {r.url} {r.failure}"))
        page.on(
            "response",
            lambda r: r.status >= 400 and self.note(f"HTTP {r.status}: {r.request.method} {r.url}"),
        )

    def note(self, line: str) -> None:
        self.events.append(f"{time.strftime('%X')} {line}")

    def snap(self, name: str) -> None:
        self.count += 1
        self.note(f"step {self.count:02d}: {name}")
        # A screenshot must never be what fails the test.
        with contextlib.suppress(Exception):
            self.page.screenshot(path=str(self.workdir / f"{self.count:02d}-{name}.png"))

    def keep(self, where: Path) -> None:
        self.snap("at-failure")
        for png in self.workdir.glob("*.png"):
            shutil.copy(png, where / png.name)
        (where / "browser.log").write_text("\n".join(self.events) + "\n")


@pytest.fixture(scope="module")
def browser(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """Chromium in a network namespace of its own (see netns_chromium.py), so containers
    starting on the host do not abort its page loads with ERR_NETWORK_CHANGED."""
    require(missing_prerequisites(browser=True))
    from playwright.sync_api import sync_playwright

    hub: Hub = request.getfixturevalue("hub")
    if os.environ.get("E2E_CHROMIUM_NETNS") == "0":  # to compare, or where it cannot work
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                yield b
            finally:
                b.close()
        return
    workdir = tmp_path_factory.mktemp("chromium")
    relay_socket = str(workdir / "relay.sock")
    wrapper = workdir / "chromium"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{NETNS_CHROMIUM}" "$@"\n')
    wrapper.chmod(0o755)
    env = dict(
        os.environ,
        E2E_CHROMIUM=CHROMIUM,
        E2E_RELAY_SOCKET=relay_socket,
        E2E_RELAY_PORT=str(hub.port),
    )
    relay = subprocess.Popen(
        [sys.executable, str(NETNS_CHROMIUM), "--host-relay", relay_socket, str(hub.port)]
    )
    try:
        wait_until(lambda: Path(relay_socket).exists(), 10, "the browser's relay")
        with sync_playwright() as p:
            b = p.chromium.launch(
                executable_path=str(wrapper), args=CHROMIUM_ARGS, env=env, headless=True
            )
            try:
                yield b
            finally:
                b.close()
    finally:
        relay.terminate()
        relay.wait(10)


@pytest.fixture
def steps(
    browser: Any, hub: Hub, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Steps]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = context.new_page()
    s = Steps(page, tmp_path)
    try:
        yield s
    finally:
        if failed(request):
            s.keep(artifact_dir(request))
        context.close()


def wait_for_lab(page: Any, user: str) -> None:
    page.wait_for_url(f"**/user/{user}/lab**", timeout=LAB_TIMEOUT_MS)
    page.locator("#jp-main-dock-panel").wait_for(timeout=LAB_TIMEOUT_MS)
    page.locator(".jp-DirListing-content").wait_for(timeout=LAB_TIMEOUT_MS)


def log_in(steps: Steps, hub: Hub, user: str) -> None:
    """Logs `user` in on the hub's login page with the examples' shared password."""
    page = steps.page
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", hub.password)
    steps.snap("login")
    page.click("#login_submit")
    page.wait_for_url(lambda url: "/hub/login" not in url)

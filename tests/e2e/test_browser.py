"""A person's round trip in headless Chromium: log in, start a server, create and save a notebook
in JupyterLab, stop the server from the hub's home page, start it again, find the notebook.

Driven by Playwright with Debian's /usr/bin/chromium (no browser download), run in a network
namespace of its own (netns_chromium.py; E2E_CHROMIUM_NETNS=0 runs it on the host's network).
Screenshots of every step, the browser's console and its failed requests are kept under
tests/artifacts/<test>/ when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .hub import (
    CHROMIUM,
    NOTEBOOK_DIR,
    Hub,
    artifact_dir,
    containers,
    docker,
    failed,
    missing_prerequisites,
    require,
    wait_until,
)

pytestmark = pytest.mark.browser

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


def notebook_source(container: str, notebook: str) -> str:
    r = docker("exec", container, "cat", f"{NOTEBOOK_DIR}/{notebook}", check=False)
    if r.returncode != 0 or not r.stdout.strip():
        return ""
    try:
        cells = json.loads(r.stdout)["cells"]
    except (ValueError, KeyError):  # not a whole notebook (yet)
        return ""
    return "".join("".join(cell["source"]) for cell in cells)


def wait_for_lab(page: Any, user: str) -> None:
    page.wait_for_url(f"**/user/{user}/lab**", timeout=LAB_TIMEOUT_MS)
    page.locator("#jp-main-dock-panel").wait_for(timeout=LAB_TIMEOUT_MS)
    page.locator(".jp-DirListing-content").wait_for(timeout=LAB_TIMEOUT_MS)


def test_login_notebook_stop_start(hub: Hub, user: str, steps: Steps) -> None:
    page = steps.page
    marker = f"saved-in-the-browser-{uuid.uuid4().hex[:8]}"
    notebook = f"e2e-{uuid.uuid4().hex[:6]}.ipynb"

    # Log in with the examples' shared password.
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", hub.password)
    steps.snap("login")
    page.click("#login_submit")
    page.wait_for_url(lambda url: "/hub/login" not in url)

    # Logging in asks for a start already (JupyterHub's default); the home page's button
    # leads on to the server, through the spawn-pending page, to JupyterLab.
    page.goto(f"{hub.url}/hub/home")
    steps.snap("home")
    page.click("#start")
    wait_for_lab(page, user)
    steps.snap("lab")
    first = containers(hub.hub_id, user, "")
    assert len(first) == 1 and first[0]["State"]["Running"]

    # A new notebook from the launcher, a cell typed into it, saved (Ctrl+S) under our name.
    page.locator('.jp-LauncherCard[data-category="Notebook"]').first.click()
    cell = page.locator(".jp-NotebookPanel .jp-Cell .cm-content").first
    cell.wait_for()
    cell.click()
    page.keyboard.type(f'print("{marker}")')
    steps.snap("typed")
    page.keyboard.press("Control+s")
    rename = page.locator('.jp-Dialog input[type="text"]')
    rename.wait_for()
    rename.fill(notebook)
    page.locator(".jp-Dialog .jp-mod-accept").click()
    page.locator(f'.jp-DirListing-item[data-file-type="notebook"] >> text="{notebook}"').wait_for()
    steps.snap("saved")
    # What the engine shows: the notebook, with the cell, in the user's volume (the rename
    # shows in the listing before the save lands, hence the polling).
    wait_until(lambda: marker in notebook_source(first[0]["Id"], notebook), 30, f"{notebook} saved")

    # Stop it from the hub's control panel.
    page.goto(f"{hub.url}/hub/home")
    page.locator("#stop").click()
    # The page hides the button and turns "My Server" into "Start My Server" once the hub has
    # accepted the stop; the hub may still be stopping it then (202), so ask the hub too.
    page.locator("#stop").wait_for(state="hidden", timeout=LAB_TIMEOUT_MS)
    page.locator("#start", has_text="Start My Server").wait_for()
    steps.snap("stopped")
    wait_until(lambda: hub.servers(user) == {}, 60, f"{user}'s server to stop")
    assert containers(hub.hub_id, user) == []  # remove = True: the container is gone

    # Start again: a new container, the same notebook, the same cell.
    page.click("#start")
    wait_for_lab(page, user)
    item = page.locator(f'.jp-DirListing-item >> text="{notebook}"')
    item.wait_for()
    steps.snap("lab-again")
    second = containers(hub.hub_id, user, "")
    assert len(second) == 1 and second[0]["Id"] != first[0]["Id"]
    item.dblclick()
    page.locator(".jp-NotebookPanel .jp-Cell .cm-content", has_text=marker).wait_for()
    steps.snap("reopened")

"""A person's round trip in headless Chromium: log in, start a server, create and save a notebook
in JupyterLab, stop the server from the hub's home page, start it again, find the notebook.

The browser and the evidence kept when a test fails: browser.py.
"""

from __future__ import annotations

import json
import uuid

import pytest

from .browser import LAB_TIMEOUT_MS, Steps, log_in, wait_for_lab
from .hub import (
    NOTEBOOK_DIR,
    Hub,
    containers,
    docker,
    wait_until,
)

pytestmark = pytest.mark.browser


def notebook_source(container: str, notebook: str) -> str:
    r = docker("exec", container, "cat", f"{NOTEBOOK_DIR}/{notebook}", check=False)
    if r.returncode != 0 or not r.stdout.strip():
        return ""
    try:
        cells = json.loads(r.stdout)["cells"]
    except (ValueError, KeyError):  # not a whole notebook (yet)
        return ""
    return "".join("".join(cell["source"]) for cell in cells)


def test_login_notebook_stop_start(hub: Hub, user: str, steps: Steps) -> None:
    page = steps.page
    marker = f"saved-in-the-browser-{uuid.uuid4().hex[:8]}"
    notebook = f"e2e-{uuid.uuid4().hex[:6]}.ipynb"

    log_in(steps, hub, user)

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

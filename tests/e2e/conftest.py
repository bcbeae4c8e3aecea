"""Fixtures of the end-to-end tests: one real hub for the session, a fresh user per test, and
the hub's log (and, for browser tests, screenshots) kept under tests/artifacts/ when a test fails.

Prerequisites (scripts/setup-e2e.sh installs them): a Docker engine, rustdocker/singleuser:latest,
configurable-http-proxy, and for the browser test Debian's chromium and the playwright package.
Without one the tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import secrets
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from .browser import browser, steps  # noqa: F401 - fixtures of the browser tests
from .hub import (
    ARTIFACTS,
    Hub,
    artifact_dir,
    failed,
    missing_prerequisites,
    remove_labelled,
    require,
)

HUB_ID = f"rustdocker-e2e-{uuid.uuid4().hex[:10]}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end test with a real hub, proxy and image")
    config.addinivalue_line("markers", "browser: drives headless Chromium through Playwright")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """The session's hub. Everything it creates carries HUB_ID and is removed at the end."""
    require(missing_prerequisites())
    workdir = tmp_path_factory.mktemp("e2e-hub")
    h = Hub(workdir, HUB_ID, token=secrets.token_hex(16), password=secrets.token_urlsafe(12))
    try:
        try:
            h.start()
        except BaseException:
            keep = ARTIFACTS / "hub-start"
            keep.mkdir(parents=True, exist_ok=True)
            if h.log_path.exists():
                shutil.copy(h.log_path, keep / "jupyterhub.log")
            raise
        yield h
    finally:
        h.stop()
        remove_labelled(HUB_ID)


@pytest.fixture(autouse=True)
def _keep_hub_log(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    h = request.node.funcargs.get("hub")  # only a hub this test got (its start may have failed)
    if isinstance(h, Hub) and failed(request) and h.log_path.exists():
        shutil.copy(h.log_path, artifact_dir(request) / "jupyterhub.log")


@pytest.fixture
def user(hub: Hub) -> Iterator[str]:
    """A new hub user; its servers are stopped after the test."""
    name = f"e2e{uuid.uuid4().hex[:8]}"
    hub.create_user(name)
    yield name
    if hub.proc is None:  # a test that stopped the hub and failed to start it again
        return
    try:
        for server in list(hub.servers(name)):
            hub.stop_server(name, server)
    except (AssertionError, TimeoutError, requests.RequestException):
        pass  # the session's teardown removes the containers by label anyway

"""Test fixtures: a real Docker engine, the locally built test image, and spawners wired to a
minimal stand-in for JupyterHub's user and hub objects.

Every container and volume a test creates carries this session's hub label and is removed by
that label at the end (volumes too: these are the tests' own, not users').
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from jupyterhub.objects import Hub
from traitlets.config import Config

from rustdocker import DockerSpawner

ROOT = Path(__file__).resolve().parent.parent
TINY_IMAGE = os.environ.get("TINY_IMAGE", "rustdocker/tiny:latest")
SESSION_HUB_ID = f"rustdocker-test-{uuid.uuid4().hex[:10]}"
LABEL_HUB = "org.rustdocker.hub"


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def inspect(kind: str, name: str) -> dict[str, Any]:
    """What the engine shows: `docker <kind> inspect`."""
    out = docker(kind, "inspect", name).stdout
    return json.loads(out)[0]  # type: ignore[no-any-return]


def exists(kind: str, name: str) -> bool:
    return docker(kind, "inspect", name, check=False).returncode == 0


def _engine_up() -> str | None:
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    r = docker("info", "--format", "{{.ServerVersion}}", check=False)
    if r.returncode != 0:
        return f"no Docker engine answers: {r.stderr.strip()}"
    return None


@pytest.fixture(scope="session")
def engine() -> None:
    """A running Docker engine. Under CI=true its absence fails the run instead of skipping."""
    problem = _engine_up()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {problem}")
        pytest.skip(problem)


@pytest.fixture(scope="session")
def tiny_image(engine: None) -> str:
    if not exists("image", TINY_IMAGE):
        subprocess.run(["bash", str(ROOT / "images" / "build-tiny.sh")], check=True)
    return TINY_IMAGE


def remove_labelled(hub_id: str) -> None:
    flt = f"label={LABEL_HUB}={hub_id}"
    ids = docker("ps", "-aq", "--filter", flt).stdout.split()
    if ids:
        docker("rm", "-f", *ids, check=False)
    vols = docker("volume", "ls", "-q", "--filter", flt).stdout.split()
    if vols:
        docker("volume", "rm", "-f", *vols, check=False)


@pytest.fixture(scope="session", autouse=True)
def _cleanup_session() -> Any:
    yield
    if _engine_up() is None:
        remove_labelled(SESSION_HUB_ID)


class FakeUser:
    """The parts of jupyterhub.user.User a spawner uses."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.escaped_name = name
        self.url = f"/user/{name}/"
        self.id = 1
        self.admin = False
        self.groups: list[Any] = []
        self.spawners: dict[str, Any] = {}
        self.orm_user = SimpleNamespace(name=name, groups=[])


def make_spawner(
    username: str = "alice",
    servername: str = "",
    cls: type[DockerSpawner] = DockerSpawner,
    **settings: Any,
) -> DockerSpawner:
    """A spawner as the hub builds it, configured through `c.DockerSpawner.*`."""
    config = Config()
    settings.setdefault("hub_id", SESSION_HUB_ID)
    settings.setdefault("image", TINY_IMAGE)
    for key, value in settings.items():
        setattr(config.DockerSpawner, key, value)
    user = FakeUser(username)
    hub = Hub(ip="127.0.0.1", port=8081, base_url="/hub/")
    # The spawner's `name` comes from its ORM row; no database is needed for these tests.
    orm_spawner = SimpleNamespace(name=servername, server=None, user=user)
    spawner = cls(
        user=user,  # type: ignore[arg-type]
        orm_spawner=orm_spawner,
        hub=hub,
        config=config,
        api_token=uuid.uuid4().hex,
        oauth_client_id=f"jupyterhub-user-{username}",
    )
    return spawner


@pytest.fixture
def unique() -> str:
    """A username no other test uses."""
    return f"u{uuid.uuid4().hex[:8]}"

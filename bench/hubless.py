"""Spawners built as the hub builds them, without a hub: the one copy shared by tests/ (its
conftest puts bench/ on sys.path) and bench/ (worker.py).

Standard library only at import time (jupyterhub is imported by `make_spawner`), so it also
runs in DockerSpawner's own venv, where the tests package cannot be imported.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any


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


def make_spawner(cls: type, username: str, settings: dict[str, Any], servername: str = "") -> Any:
    """A `cls` spawner as the hub builds it, configured through `c.DockerSpawner.*` (so the
    settings reach DockerSpawner's subclasses too, as a hub's configuration does)."""
    from jupyterhub.objects import Hub
    from traitlets.config import Config

    config = Config()
    for key, value in settings.items():
        setattr(config.DockerSpawner, key, value)
    user = FakeUser(username)
    hub = Hub(ip="127.0.0.1", port=8081, base_url="/hub/")
    # The spawner's `name` comes from its ORM row; no database is needed.
    orm_spawner = SimpleNamespace(name=servername, server=None, user=user)
    return cls(
        user=user,
        orm_spawner=orm_spawner,
        hub=hub,
        config=config,
        api_token=uuid.uuid4().hex,
        oauth_client_id=f"jupyterhub-user-{username}",
    )

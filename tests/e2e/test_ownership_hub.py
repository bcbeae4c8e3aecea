"""Ownership through a real JupyterHub: a refused start, and the clean-up the hub does after it,
never reach another server's container.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from .hub import (
    Hub,
    containers,
    docker,
    hub_of_its_own,
    wait_until,
)

# Every server of a user renders the same container name: the configuration that made
# DockerSpawner stop the running default server when a named one was refused.
SHARED_NAME = 'c.DockerSpawner.name_template = "{prefix}-{username}"\n'


@pytest.fixture(scope="module")
def shared_name_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with hub_of_its_own(tmp_path_factory, "shared-name", SHARED_NAME) as h:
        yield h


def test_refused_named_server_leaves_the_default_server_running(shared_name_hub: Hub) -> None:
    hub = shared_name_hub
    user = f"e2e{uuid.uuid4().hex[:8]}"
    hub.create_user(user)
    hub.start_server(user)
    [info] = containers(hub.hub_id, user)
    name = info["Name"].lstrip("/")
    assert name == f"jupyter-{user}"
    started = info["State"]["StartedAt"]

    # The named server renders the same container name: refused with the name-conflict
    # message, and the hub's clean-up (poll, then stop) runs on it.
    path = f"/users/{user}/servers/lab"
    r = hub.api("POST", path)
    wait_until(lambda: "lab" not in hub.servers(user), 60, "the refused server to be gone")
    log = hub.log_tail(400)
    assert r.status_code >= 400 or "name-conflict" in log or "belongs to" in log, (r.text, log)
    assert "lab" not in hub.servers(user)

    # What the engine shows: the default server's container, untouched and still serving.
    after = containers(hub.hub_id, user)
    assert [c["Id"] for c in after] == [info["Id"]]
    assert after[0]["State"]["Running"] is True
    assert after[0]["State"]["StartedAt"] == started
    status = hub.session.get(
        hub.server_url(user) + "api/status",
        headers={"Authorization": f"token {hub.token}"},
        timeout=10,
    )
    assert status.status_code == 200, status.text
    hub.stop_server(user)
    assert docker("inspect", name, check=False).returncode != 0  # remove = True


def test_two_hubs_with_one_prefix_keep_to_their_own(hub: Hub, shared_name_hub: Hub) -> None:
    """The session's hub and this module's hub share the engine and the prefix: a user of the
    same name on both gets one server, and the other hub's start fails without touching it."""
    user = f"e2e{uuid.uuid4().hex[:8]}"
    hub.create_user(user)
    shared_name_hub.create_user(user)
    hub.start_server(user)
    [info] = containers(hub.hub_id, user)
    r = shared_name_hub.api("POST", f"/users/{user}/server")
    wait_until(lambda: "" not in shared_name_hub.servers(user), 60, "the other hub's start to fail")
    assert r.status_code in (201, 202) or r.status_code >= 400, r.text
    assert "belongs to another hub" in shared_name_hub.log_tail(400)
    [again] = containers(hub.hub_id, user)
    assert again["Id"] == info["Id"]
    assert again["State"]["StartedAt"] == info["State"]["StartedAt"]
    assert containers(shared_name_hub.hub_id, user) == []
    hub.stop_server(user)

"""JupyterHub on rustdocker, end to end, through the hub's REST API and the proxy.

Each test asserts what the engine shows (`docker inspect` of the containers and volumes carrying
the test hub's label), not only what the hub answers.
"""

from __future__ import annotations

import uuid

import requests

from .hub import (
    IMAGE,
    LABEL_HUB,
    LABEL_SERVER,
    LABEL_USER,
    MEM_LIMIT,
    NOTEBOOK_DIR,
    Hub,
    container_file,
    containers,
    volume,
)


def only_container(hub: Hub, user: str, server: str = "") -> dict:
    found = containers(hub.hub_id, user, server)
    assert len(found) == 1, [c["Name"] for c in found]
    return found[0]


def volume_at(info: dict, target: str) -> str:
    """The name of the named volume mounted at `target` in a container."""
    [mount] = [m for m in info["Mounts"] if m["Destination"] == target]
    assert mount["Type"] == "volume", mount
    return str(mount["Name"])


def test_persistence_across_stop_and_removal(hub: Hub, user: str) -> None:
    """The persistence guide's config: a file written through the hub survives a stop that
    removes the container, and is read back from the next container."""
    hub.start_server(user)
    info = only_container(hub, user)
    assert info["Name"] == f"/jupyter-{user}"
    assert info["State"]["Running"] is True
    assert info["Config"]["Image"] == IMAGE
    labels = info["Config"]["Labels"]
    assert (labels[LABEL_HUB], labels[LABEL_USER], labels[LABEL_SERVER]) == (hub.hub_id, user, "")
    assert info["HostConfig"]["Memory"] == MEM_LIMIT
    # The guide's `volumes` entry is mounted; its `mounts` bind at the same target is skipped.
    assert volume_at(info, NOTEBOOK_DIR) == f"jupyterhub-user-{user}"
    assert info["HostConfig"]["Binds"] == [f"jupyterhub-user-{user}:{NOTEBOOK_DIR}:rw"]
    assert not info["HostConfig"].get("Mounts")
    env = dict(e.split("=", 1) for e in info["Config"]["Env"])
    assert env["JUPYTERHUB_ROOT_DIR"] == NOTEBOOK_DIR
    assert env["JUPYTERHUB_API_URL"].startswith(f"http://{hub.bridge_ip}:")
    # The server publishes its port on loopback only.
    [binding] = info["NetworkSettings"]["Ports"]["8888/tcp"]
    assert binding["HostIp"] == "127.0.0.1"

    text = f"written through the hub {uuid.uuid4().hex}\n"
    hub.put_file(user, "", "persist.txt", text)
    # The file is in the volume, as the engine sees it.
    assert container_file(info["Id"], f"{NOTEBOOK_DIR}/persist.txt") == text

    hub.stop_server(user)
    assert containers(hub.hub_id, user) == []  # remove = True
    vol = volume(f"jupyterhub-user-{user}")
    assert vol is not None, "the user's volume must survive the container"
    assert vol["Labels"][LABEL_USER] == user
    assert vol["Labels"][LABEL_HUB] == hub.hub_id

    hub.start_server(user)
    again = only_container(hub, user)
    assert again["Id"] != info["Id"]
    r = hub.get_file(user, "", "persist.txt")
    assert r.status_code == 200, r.text
    assert r.json()["content"] == text


def test_named_servers_have_separate_volumes(hub: Hub, user: str) -> None:
    """Two named servers of one user run side by side, each on its own volume
    (examples/named_servers_config.py). JupyterHub 6 wants slugs; `-` is escaped in names."""
    one, two = "one", "project-2"
    names = {one: f"{user}--one", two: f"{user}--project-2d2"}  # DockerSpawner's escaping
    for server in (one, two):
        hub.request_start(user, server)
    for server in (one, two):
        hub.wait_ready(user, server)

    for server in (one, two):
        info = only_container(hub, user, server)
        assert info["Name"] == f"/jupyter-{names[server]}"
        assert info["State"]["Running"] is True
        assert volume_at(info, NOTEBOOK_DIR) == f"jupyterhub-user-{names[server]}"
        vol = volume(f"jupyterhub-user-{names[server]}")
        assert vol is not None
        assert (vol["Labels"][LABEL_USER], vol["Labels"][LABEL_SERVER]) == (user, server)
    assert volume(f"jupyterhub-user-{user}") is None  # the default server never started

    hub.put_file(user, one, "only-in-one.txt", "one\n")
    hub.put_file(user, two, "only-in-two.txt", "two\n")
    assert hub.get_file(user, two, "only-in-one.txt").status_code == 404
    assert hub.get_file(user, one, "only-in-two.txt").status_code == 404

    # Stopping one leaves the other alone; started again, it finds its own volume.
    hub.stop_server(user, one)
    assert containers(hub.hub_id, user, one) == []
    assert only_container(hub, user, two)["State"]["Running"] is True
    hub.start_server(user, one)
    assert hub.get_file(user, one, "only-in-one.txt").json()["content"] == "one\n"
    assert hub.get_file(user, one, "only-in-two.txt").status_code == 404


def test_admin_api_stops_a_users_server(hub: Hub, user: str) -> None:
    """The admin user (examples' `admin_users`) stops another user's server with the REST API,
    as the admin panel does; the container goes, the volume stays."""
    hub.start_server(user)
    info = only_container(hub, user)

    # The admin's own token, obtained with its password (no token needed to ask).
    r = requests.post(
        f"{hub.url}/hub/api/users/admin/tokens",
        json={"auth": {"username": "admin", "password": hub.password}, "expires_in": 600},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    admin_token = r.json()["token"]
    who = hub.api("GET", "/user", token=admin_token).json()
    assert who["name"] == "admin" and who["admin"] is True

    hub.stop_server(user, token=admin_token)
    assert containers(hub.hub_id, user) == []
    assert hub.api("GET", f"/users/{user}").json()["server"] is None
    assert volume(volume_at(info, NOTEBOOK_DIR)) is not None


def test_hub_restart_keeps_the_running_server(hub: Hub, user: str) -> None:
    """Restarting the hub (and its proxy) while a server runs: the server keeps running in the
    same container, the new hub finds it and routes to it, no second container appears."""
    hub.start_server(user)
    before = only_container(hub, user)
    hub.put_file(user, "", "before-restart.txt", "still here\n")

    hub.stop()
    during = only_container(hub, user)
    assert during["State"]["Running"] is True
    assert during["State"]["StartedAt"] == before["State"]["StartedAt"]

    hub.start()
    hub.wait_ready(user)  # the new hub polled the container and routes to it
    r = hub.get_file(user, "", "before-restart.txt")
    assert r.status_code == 200, r.text
    assert r.json()["content"] == "still here\n"
    after = only_container(hub, user)
    assert after["Id"] == before["Id"]
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"]
    assert after["State"]["Running"] is True
    # Nothing else appeared for this user on the engine.
    assert len(containers(hub.hub_id, user)) == 1

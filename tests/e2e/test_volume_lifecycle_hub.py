"""The life of users' volumes through a real JupyterHub: deleting a named server, then a user,
with `remove_on_delete = True`, removes exactly their own volumes and containers (what
`docker volume ls` shows), and never the volume all users share.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from .hub import (
    LABEL_HUB,
    Hub,
    containers,
    docker,
    hub_of_its_own,
    wait_until,
)

TAG = uuid.uuid4().hex[:8]
SHARED = f"e2e-shared-{TAG}"

# The named-servers example's per-server volume (jupyterhub-user-<name>[--<server>]) at the
# notebook directory, plus a per-user volume and one volume every user shares.
CONFIG = f"""
# Two cores shared with builds: give a server time to answer.
c.Spawner.http_timeout = 120
c.DockerSpawner.remove = False
c.DockerSpawner.remove_on_delete = True
c.DockerSpawner.mounts = []
c.DockerSpawner.volumes = {{
    "jupyterhub-user-{{username}}{{server_suffix}}": "/home/jovyan/work",
    "e2e-home-{{username}}-{TAG}": "/home/jovyan/home",
    {SHARED!r}: "/home/jovyan/shared",
}}
"""


@pytest.fixture(scope="module")
def deleting_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with hub_of_its_own(tmp_path_factory, "delete", CONFIG) as h:
        yield h


def volumes(hub_id: str) -> set[str]:
    """`docker volume ls` of the volumes this hub created."""
    out = docker("volume", "ls", "-q", "--filter", f"label={LABEL_HUB}={hub_id}").stdout
    return set(out.split())


def test_deleting_a_server_and_a_user_removes_exactly_theirs(deleting_hub: Hub) -> None:
    hub = deleting_hub
    alice, bob = f"e2ea{TAG}", f"e2eb{TAG}"
    for user in (alice, bob):
        hub.create_user(user)
    for user, server in ((alice, ""), (alice, "proj"), (bob, "")):
        hub.start_server(user, server)
        hub.stop_server(user, server)
    a_default, a_proj = f"jupyterhub-user-{alice}", f"jupyterhub-user-{alice}--proj"
    b_default = f"jupyterhub-user-{bob}"
    a_home, b_home = f"e2e-home-{alice}-{TAG}", f"e2e-home-{bob}-{TAG}"
    before = volumes(hub.hub_id)
    assert before == {a_default, a_proj, b_default, a_home, b_home, SHARED}
    # remove = False: every server's container is kept.
    assert len(containers(hub.hub_id, alice)) == 2
    assert len(containers(hub.hub_id, bob)) == 1

    # Delete alice's named server, as the admin page and the idle culler do.
    r = hub.api("DELETE", f"/users/{alice}/servers/proj", json={"remove": True})
    assert r.status_code in (202, 204), r.text
    wait_until(lambda: a_proj not in volumes(hub.hub_id), 60, "alice's proj volume to go")
    assert before - volumes(hub.hub_id) == {a_proj}
    assert containers(hub.hub_id, alice, "proj") == []
    assert len(containers(hub.hub_id, alice, "")) == 1

    # Delete the user bob.
    r = hub.api("DELETE", f"/users/{bob}")
    assert r.status_code == 204, r.text
    wait_until(lambda: b_home not in volumes(hub.hub_id), 60, "bob's volumes to go")
    assert before - volumes(hub.hub_id) == {a_proj, b_default, b_home}
    assert containers(hub.hub_id, bob) == []
    assert len(containers(hub.hub_id, alice, "")) == 1

    log = hub.log_tail(2000)
    assert f"removed container jupyter-{alice}--proj, volume {a_proj}" in log
    assert f"volume {SHARED} (shared by several users)" in log
    assert f"removed container jupyter-{bob}, volume {b_home}, volume {b_default}" in log
    print("\n".join(line for line in log.splitlines() if "remove_on_delete" in line))

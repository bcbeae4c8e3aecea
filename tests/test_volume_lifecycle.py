"""The whole life of a user's volumes: what deleting a named server or a user removes
(`remove_on_delete`), and everything it never touches.

Every volume gets a scope label when rustdocker creates it (`org.rustdocker.scope`: `server`,
`user` or `shared`, from whether its template names a volume per user and server); deletion
removes only volumes labelled with this hub, user and server (or, with the user, the user's
own). Checked against the engine with `docker volume inspect`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rustdocker import DockerConnectionError

from conftest import (
    LABEL_HUB,
    SESSION_HUB_ID,
    TINY_IMAGE,
    FakeClient,
    container_exec,
    docker,
    exists,
    inspect,
    make_spawner,
)

LABEL_SCOPE = "org.rustdocker.scope"


def templates(tag: str) -> dict[str, str]:
    """A per-user volume, a per-server volume and a volume shared by everyone."""
    return {
        f"{tag}-{{username}}-home": "/home/jovyan/work",
        f"{tag}-{{username}}--{{servername}}-srv": "/srv",
        f"{tag}-shared": "/shared",
    }


# ------------------------------------------------------------------ without an engine


def test_scope_follows_what_the_template_names() -> None:
    s = make_spawner("alice", "proj")
    assert s._volume_scope("home-{username}") == "user"
    assert s._volume_scope("v-{username}--{servername}") == "server"
    assert s._volume_scope("data-{servername}") == "shared"  # one per server name, any user
    assert s._volume_scope("datasets") == "shared"
    assert s._volume_scope("{prefix}ssl-{username}") == "user"


async def test_the_spec_names_each_servers_own_volumes() -> None:
    s = make_spawner("alice", "proj", volumes=templates("t"))
    spec = await s.build_spec()
    assert spec["server_volumes"] == ["t-alice--proj-srv"]
    assert sorted(spec["user_volumes"]) == ["t-alice--proj-srv", "t-alice-home"]


async def test_off_by_default_nothing_is_removed(fake_client: FakeClient, logs: Any) -> None:
    s = make_spawner("alice", "proj", volumes=templates("t"))
    s.object_id = "abc"
    await s.delete_forever()
    assert fake_client.called("delete_volumes") == []
    assert fake_client.called("remove_stopped_server") == []
    assert "nothing is removed (remove_on_delete is off)" in logs.text


async def test_what_the_core_is_asked_to_remove(fake_client: FakeClient) -> None:
    """A named server asks for its own volumes only; the default server's deletion is the
    user's (JupyterHub refuses to delete a default server alone), and says so."""
    named = make_spawner("alice", "proj", volumes=templates("t"), remove_on_delete=True)
    await named.delete_forever()
    default = make_spawner("alice", volumes=templates("t"), remove_on_delete=True)
    await default.delete_forever()
    first, second = fake_client.called("delete_volumes")
    assert first["user_deleted"] is False
    assert second["user_deleted"] is True
    assert "t-alice--proj-srv" in first["names"]
    assert "jupyterssl-alice" in second["names"]  # the certificates volume, by its template
    assert first["labels"]["org.rustdocker.server"] == "proj"


async def test_a_failure_never_raises_into_the_hub(fake_client: FakeClient, logs: Any) -> None:
    """JupyterHub awaits delete_forever() while deleting a user; an engine that is down must
    not turn that into an error (the deletion goes on), only a warning."""
    fake_client.answers["delete_volumes"] = DockerConnectionError("engine down")
    s = make_spawner("alice", remove_on_delete=True)
    await s.delete_forever()
    warnings = [r.getMessage() for r in logs.records if r.levelno >= logging.WARNING]
    assert any("could not be removed, and are kept: engine down" in w for w in warnings)


# ------------------------------------------------------------------ against the engine


def volumes_of_session() -> set[str]:
    out = docker("volume", "ls", "-q", "--filter", f"label={LABEL_HUB}={SESSION_HUB_ID}")
    return set(out.stdout.split())


def share_states(*spawners: Any) -> None:
    """Give each spawner's user the servers' states, as the hub's database would."""
    rows = {s.name or "": SimpleNamespace(state=s.get_state()) for s in spawners}
    for s in spawners:
        s.user.orm_user.orm_spawners = rows


@pytest.mark.docker
async def test_deleting_a_server_then_a_user_removes_exactly_theirs(
    unique: str, logs: Any, tmp_path: Path
) -> None:
    alice, bob = f"{unique}a", f"{unique}b"
    tag = f"lc{unique}"
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    (host_dir / "keep.txt").write_text("host data\n")
    # A volume DockerSpawner (or an operator) made, mounted by bob through a per-user template:
    # unlabelled by rustdocker (only the session label, for the clean-up), so never removed.
    extra = f"{tag}-{bob}-extra"
    docker("volume", "create", "--label", f"{LABEL_HUB}={SESSION_HUB_ID}", extra)
    settings: dict[str, Any] = {
        "volumes": {
            **templates(tag),
            f"{tag}-{{username}}-extra": "/extra",
            str(host_dir): "/host",
        },
        "remove": False,
        "remove_on_delete": True,
        "move_certs_image": TINY_IMAGE,
    }
    a_default = make_spawner(alice, **settings)
    a_proj = make_spawner(alice, "proj", **settings)
    b_default = make_spawner(bob, **settings)
    for s in (a_default, a_proj, b_default):
        await s.start()
        container_exec(s.object_name, "echo data > /home/jovyan/work/f; echo data > /srv/f")
        await s.stop()
    (tmp_path / "user.crt").write_text("cert\n")
    await b_default.move_certs({"certfile": str(tmp_path / "user.crt")})
    share_states(a_default, a_proj)
    share_states(b_default)

    shared = f"{tag}-shared"
    a_home, a_srv, a_proj_srv = (
        f"{tag}-{alice}-home",
        f"{tag}-{alice}---srv",
        f"{tag}-{alice}--proj-srv",
    )
    b_home, b_srv, b_certs = f"{tag}-{bob}-home", f"{tag}-{bob}---srv", f"jupyterssl-{bob}"
    labels = {
        name: inspect("volume", name)["Labels"] for name in (shared, a_home, a_proj_srv, b_certs)
    }
    assert labels[shared][LABEL_SCOPE] == "shared"
    assert labels[a_home][LABEL_SCOPE] == "user"
    assert labels[a_proj_srv][LABEL_SCOPE] == "server"
    assert labels[b_certs][LABEL_SCOPE] == "user"
    mine = {shared, a_home, a_srv, a_proj_srv, b_home, b_srv, b_certs, extra}
    before = volumes_of_session()
    assert mine <= before

    # Delete alice's named server: its container and its own volume go, nothing else.
    await a_proj.delete_forever()
    assert not exists("container", a_proj.object_name)
    assert exists("container", a_default.object_name)
    assert before - volumes_of_session() == {a_proj_srv}

    # Delete the user bob (JupyterHub calls delete_forever on his default server): his
    # container, his per-user and per-server volumes and his certificates go; the shared
    # volume, the unlabelled one and the host directory stay.
    await b_default.delete_forever()
    assert not exists("container", b_default.object_name)
    assert before - volumes_of_session() == {a_proj_srv, b_home, b_srv, b_certs}
    assert exists("volume", shared) and exists("volume", extra)
    assert (host_dir / "keep.txt").read_text() == "host data\n"
    assert exists("container", a_default.object_name)

    text = logs.text
    assert f"volume {a_proj_srv}" in text
    assert f"volume {extra} (not made by rustdocker" in text
    assert f"volume {shared} (shared by several users)" in text


@pytest.mark.docker
async def test_a_volume_in_use_is_kept_and_the_rest_removed(unique: str, logs: Any) -> None:
    """Another container still mounts the user's home: that volume is reported and kept
    (never forced); the other volumes are removed."""
    tag = f"iu{unique}"
    s = make_spawner(unique, volumes=templates(tag), remove=True, remove_on_delete=True)
    await s.start()
    await s.stop()
    home, srv = f"{tag}-{unique}-home", f"{tag}-{unique}---srv"
    user = f"{unique}-holder"
    docker("create", "--name", user, "--label", f"{LABEL_HUB}={SESSION_HUB_ID}",
           "-v", f"{home}:/data", TINY_IMAGE)  # fmt: skip
    try:
        await s.delete_forever()
        assert exists("volume", home)
        assert not exists("volume", srv)
        assert f"volume {home} (in use by a container)" in logs.text
    finally:
        docker("rm", "-f", user, check=False)


@pytest.mark.docker
async def test_another_hubs_volume_is_never_removed(unique: str) -> None:
    """A volume another hub labelled as this user's and server's own, even when the server's
    state names it, stays."""
    other = f"{unique}-other-hub-vol"
    labels = {
        "org.rustdocker.managed-by": "rustdocker",
        LABEL_HUB: f"{SESSION_HUB_ID}-other",
        "org.rustdocker.user": unique,
        "org.rustdocker.server": "",
        LABEL_SCOPE: "server",
    }
    flags = [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]
    docker("volume", "create", *flags, other)
    try:
        s = make_spawner(unique, remove_on_delete=True)
        s._volume_names = {"x": other}
        s._volume_names_server = ""
        await s.delete_forever()
        assert exists("volume", other)
    finally:
        docker("volume", "rm", other, check=False)


@pytest.mark.docker
async def test_a_users_volume_the_configuration_mounts_for_everyone_is_kept(
    unique: str, logs: Any
) -> None:
    """The teacher's home, which the configuration also mounts read-only for every student
    (a template naming no user): deleting the teacher keeps it, even before any student has
    started (no state records it yet)."""
    tag = f"sh{unique}"
    home = f"{tag}-{unique}-home"
    s = make_spawner(unique, volumes={f"{tag}-{{username}}-home": "/home/jovyan/work"})
    await s.start()
    await s.stop()
    assert inspect("volume", home)["Labels"][LABEL_SCOPE] == "user"
    t = make_spawner(
        unique,
        volumes={f"{tag}-{{username}}-home": "/home/jovyan/work"},
        read_only_volumes={home: "/teacher"},
        remove_on_delete=True,
    )
    t.load_state(s.get_state())
    await t.delete_forever()
    assert exists("volume", home)
    assert f"volume {home} (another user's server records it in its state, or the " in logs.text

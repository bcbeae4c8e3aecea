"""Names across servers: container names, the names a server's volumes keep across a rename,
conflicts between one user's servers, and delete_forever."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
from jupyterhub.spawner import SpawnException
from tornado import web

import rustdocker
from rustdocker import DockerSpawner

from conftest import Call, FakeClient, container_exec, docker, exists, inspect, make_spawner


@pytest.mark.parametrize(
    ("username", "servername", "expected"),
    [
        ("alice", "", "jupyter-alice"),
        ("Alice@x.org", "", "jupyter--41lice-40x-2eorg"),
        ("Alice", "my-server", "jupyter--41lice--my-2dserver"),
        ("Alice", "My-Server", "jupyter--41lice--my-2dserver"),
        ("user--foo", "", "jupyter-user-2d-2dfoo"),
        ("a_b", "", "jupyter-a-5fb"),
        ("é", "", "jupyter--c3-a9"),
    ],
)
def test_container_names_match_dockerspawner(username: str, servername: str, expected: str) -> None:
    assert make_spawner(username, servername).object_name == expected


# ------------------------------------------------------------------ names across a rename

VOLUMES = {"v-{username}-{servername}": "/w"}


def renamed(spawner: DockerSpawner, new: str, **settings: Any) -> DockerSpawner:
    """The hub's part of a rename, after `await spawner.rename(old, new)`: the orm row gets the
    new name and the stale wrapper is dropped; the next start builds a new spawner from the
    row's state (as stored in the database)."""
    spawner.orm_spawner.name = new
    fresh = make_spawner(spawner.user.name, new, **settings)
    fresh.load_state(json.loads(json.dumps(spawner.orm_spawner.state)))
    return fresh


async def test_volume_names_recorded_in_state() -> None:
    s = make_spawner("ivy", "lab", volumes=VOLUMES, remove=True)
    assert s.get_state() == {}
    s._record_volume_names()
    assert s.get_state() == {
        "volume_names": {"v-{username}-{servername}": "v-ivy-lab"},
        "volume_names_server": "lab",
    }
    json.dumps(s.get_state())
    # Not renamed: naming settings apply as in DockerSpawner.
    s2 = make_spawner("ivy", "lab", volumes=VOLUMES, escape="legacy")
    s2.load_state(s.get_state())
    assert list(s2.volume_binds) == ["v-ivy-lab"]
    s3 = make_spawner("ivy", "lab", volumes={"w-{username}-{servername}": "/w"})
    s3.load_state(s.get_state())
    assert list(s3.volume_binds) == ["w-ivy-lab"]


async def test_rename_keeps_volume_names(logs: pytest.LogCaptureFixture) -> None:
    s = make_spawner("ivy", "a", volumes=VOLUMES, remove=True)
    await s.rename("a", "b")
    assert s.orm_spawner.state["volume_names"] == {"v-{username}-{servername}": "v-ivy-a"}
    b = renamed(s, "b", volumes=VOLUMES, remove=True)
    assert b.name == "b"
    assert list(b.volume_binds) == ["v-ivy-a"]
    assert b.object_name == "jupyter-ivy--b"
    # A template added after the rename renders with the new name; renaming again keeps all.
    b.volumes = {**VOLUMES, "x-{servername}": "/x"}
    await b._prepare_start()
    assert sorted(b.volume_binds) == ["v-ivy-a", "x-b"]
    await b.rename("b", "c")
    c = renamed(b, "c", volumes=VOLUMES, remove=True)
    c.volumes = b.volumes
    assert sorted(c.volume_binds) == ["v-ivy-a", "x-b"]
    assert any("volumes keep their names ['v-ivy-a']" in r.getMessage() for r in logs.records)


async def test_autorename_keeps_volume_names() -> None:
    """`allow_existing_invalid_named_servers = "autorename"` renames the row only."""
    s = make_spawner("ivy", "Old Name", volumes=VOLUMES, remove=True)
    await s._prepare_start()
    state = s.get_state()
    b = make_spawner("ivy", "old-name", volumes=VOLUMES)
    b.load_state(state)
    assert list(b.volume_binds) == ["v-ivy-old-20name"]


async def test_rename_drops_the_name_of_a_container_that_is_gone(
    unique: str, fake_client: FakeClient
) -> None:
    fake_client.answers["container_status"] = None  # the engine knows no such container
    s = make_spawner(unique, "a", volumes=VOLUMES)
    s.load_state({"object_id": "gone", "object_name": f"jupyter-{unique}--a"})
    await s.rename("a", "b")
    assert "object_name" not in s.orm_spawner.state
    assert fake_client.calls == [Call("container_status", {"name": "gone"})]


async def test_new_server_with_a_renamed_servers_old_name_is_refused(
    unique: str, fake_client: FakeClient
) -> None:
    s = make_spawner(unique, "a", volumes=VOLUMES, remove=True)
    await s.rename("a", "b")
    b_row = SimpleNamespace(name="b", state=s.orm_spawner.state)
    a2 = make_spawner(unique, "a", volumes=VOLUMES, remove=True)
    a2.user.orm_user.orm_spawners = {"b": b_row, "a": a2.orm_spawner}
    with pytest.raises(SpawnException) as info:
        await a2.start()
    assert info.value.status_code == 409
    assert info.value.message == (
        f"Server 'a' cannot start: the volume 'v-{unique}-a' (template "
        "'v-{username}-{servername}') holds the files of the server 'b' (renamed from 'a'). "
        "Choose another server name."
    )

    # Also when the server name comes in through format_volume_name (examples/ does this).
    def suffixed(template: str, spawner: Any) -> str:
        fields = dict(spawner.template_namespace())
        fields["suffix"] = f"--{fields['servername']}" if fields["servername"] else ""
        return template.format(**fields)

    custom: dict[str, Any] = {"volumes": {"u-{username}{suffix}": "/w"}, "remove": True}
    custom["format_volume_name"] = suffixed
    s = make_spawner(unique, "a", **custom)
    await s.rename("a", "b")
    a3 = make_spawner(unique, "a", **custom)
    a3.user.orm_user.orm_spawners = {"b": SimpleNamespace(state=s.orm_spawner.state)}
    with pytest.raises(SpawnException, match=f"the volume 'u-{unique}--a'"):
        await a3._prepare_start()
    # A shared, per-user volume is not a conflict.
    shared = {"home-{username}": "/home"}
    c = make_spawner(unique, "c", volumes=shared)
    c.user.orm_user.orm_spawners = {
        "d": SimpleNamespace(state={"volume_names": {"home-{username}": f"home-{unique}"}})
    }
    c._record_volume_names()
    c._check_names_not_taken()
    # Another server's recorded container name is.
    c.user.orm_user.orm_spawners = {"d": SimpleNamespace(state={"object_name": c.object_name})}
    with pytest.raises(SpawnException, match="belongs to the server 'd'"):
        c._check_names_not_taken()
    assert fake_client.calls == []  # every refusal came before any engine call


async def test_delete_forever_removes_nothing_and_says_so(logs: pytest.LogCaptureFixture) -> None:
    s = make_spawner("jack", "lab", volumes=VOLUMES)
    s.load_state({"object_id": "abc", "object_name": "jupyter-jack--lab"})
    await s.delete_forever()
    assert (
        f"Deleting {s._log_name}: nothing is removed (remove_on_delete is off); kept: "
        "container jupyter-jack--lab, "
        "volume v-jack-lab"
    ) in [r.getMessage() for r in logs.records]


# ------------------------------------------------------------------ on the engine


@pytest.mark.docker
async def test_named_servers_get_separate_containers_and_volumes(unique: str) -> None:
    settings: dict[str, Any] = {
        "volumes": {"jupyterhub-user-{username}-{servername}": "/home/jovyan/work"},
        "remove": True,
    }
    a = make_spawner(unique, "lab-a", **settings)
    b = make_spawner(unique, "lab-b", **settings)
    await asyncio.gather(a.start(), b.start())
    assert a.object_name == f"jupyter-{unique}--lab-2da"
    assert inspect("container", b.object_name)["Config"]["Labels"]["org.rustdocker.server"] == (
        "lab-b"
    )
    assert exists("volume", f"jupyterhub-user-{unique}-lab-2da")
    assert exists("volume", f"jupyterhub-user-{unique}-lab-2db")
    await asyncio.gather(a.stop(), b.stop())


@pytest.mark.docker
async def test_kept_container_of_another_server_is_not_resumed(unique: str) -> None:
    # As after the hub's autorename, which renames the server without calling rename().
    a = make_spawner(unique, "srv-a", name_template="{prefix}-{username}-fixed")
    await a.start()
    await a.stop()
    b = make_spawner(unique, "srv-b", name_template="{prefix}-{username}-fixed")
    with pytest.raises(rustdocker.ConflictError) as info:
        await b.start()
    assert "org.rustdocker.server" in str(info.value) and "srv-a" in str(info.value)
    assert inspect("container", a.object_name)["State"]["Running"] is False
    docker("rm", "-f", a.object_name)


@pytest.mark.docker
async def test_rename_keeps_the_volume_and_its_files(unique: str) -> None:
    settings: dict[str, Any] = {"volumes": VOLUMES, "remove": True}
    a = make_spawner(unique, "a", **settings)
    await a.start()
    volume = f"v-{unique}-a"
    container_exec(a.object_name, "echo precious > /w/data.txt")
    await a.stop()
    a.orm_spawner.state = a.get_state()  # the hub stores the state after a stop
    await a.rename("a", "b")
    b = renamed(a, "b", **settings)
    await b.start()
    info = inspect("container", b.object_name)
    assert b.object_name == f"jupyter-{unique}--b"
    assert info["HostConfig"]["Binds"] == [f"{volume}:/w:rw"]
    assert container_exec(b.object_name, "cat /w/data.txt").strip() == "precious"
    assert not exists("volume", f"v-{unique}-b")
    assert b.get_state()["volume_names"] == {"v-{username}-{servername}": volume}
    await b.stop()
    assert exists("volume", volume)


@pytest.mark.docker
async def test_rename_is_refused_while_a_kept_container_holds_files(unique: str) -> None:
    a = make_spawner(unique, "a", volumes=VOLUMES)  # remove = False: the container is kept
    await a.start()
    kept = a.object_name
    container_exec(kept, "echo outside-volumes > /tmp/f; echo inside > /w/f")
    await a.stop()
    with pytest.raises(web.HTTPError) as info:
        await a.rename("a", "b")
    assert info.value.status_code == 409
    assert f"docker rm {kept}" in str(info.value.get_message())
    assert inspect("container", kept)["State"]["Running"] is False  # untouched
    docker("rm", kept)
    await a.rename("a", "b")
    b = renamed(a, "b", volumes=VOLUMES)
    await b.start()
    assert b.object_name == f"jupyter-{unique}--b"
    assert container_exec(b.object_name, "cat /w/f").strip() == "inside"
    await b.stop()


@pytest.mark.docker
async def test_rename_removes_a_disposable_leftover(unique: str) -> None:
    """remove = True: a container that exited on its own (the hub then calls no stop) is
    removed by the rename, as the next start would have removed it."""
    a = make_spawner(unique, "a", volumes=VOLUMES, remove=True)
    await a.start()
    leftover = a.object_name
    docker("stop", leftover)
    await a.rename("a", "b")
    assert not exists("container", leftover)
    assert exists("volume", f"v-{unique}-a")
    assert "object_name" not in a.orm_spawner.state


@pytest.mark.docker
async def test_delete_forever_removes_nothing(unique: str) -> None:
    s = make_spawner(unique, volumes={"v-{username}": "/w"})
    await s.start()
    await s.stop()
    await s.delete_forever()
    assert exists("container", s.object_name)
    assert exists("volume", f"v-{unique}")

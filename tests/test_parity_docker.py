"""DockerSpawner parity against a real Docker engine, checked with `docker inspect`: the image
user option, renames, internal hostnames, group overrides and SystemUserSpawner."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from jupyterhub.spawner import SpawnException
from tornado import web

from rustdocker import DockerSpawner, SystemUserSpawner

from conftest import LABEL_HUB, SESSION_HUB_ID, TINY_IMAGE, docker, exists, inspect, make_spawner

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("tiny_image")]


def container_exec(name: str, script: str) -> str:
    return docker("exec", name, "sh", "-c", script).stdout


def env_of(info: dict[str, Any]) -> dict[str, str]:
    return dict(e.split("=", 1) for e in info["Config"]["Env"])


@pytest.fixture(scope="module")
def alt_image() -> Iterator[str]:
    """A second image on the engine: another tag of the tiny image."""
    tag = f"rustdocker/tiny:parity-{SESSION_HUB_ID.rsplit('-', 1)[-1]}"
    docker("tag", TINY_IMAGE, tag)
    yield tag
    docker("rmi", tag, check=False)


async def test_image_option_runs_the_chosen_image(unique: str, alt_image: str) -> None:
    s = make_spawner(unique, allowed_images={"Tiny": TINY_IMAGE, "Alt": alt_image}, remove=True)
    # The REST body's user_options, the form (options_from_form) and ?opt-image= all end up here.
    s.user_options = s.run_options_from_form({"image": ["Alt"]})
    await s.start()
    info = inspect("container", s.object_name)
    assert info["Config"]["Image"] == alt_image
    assert env_of(info)["JUPYTER_IMAGE_SPEC"] == alt_image
    await s.stop()
    # A refused image creates nothing.
    s.user_options = {"image": "busybox:latest"}
    with pytest.raises(SpawnException) as refused:
        await s.start()
    assert refused.value.status_code == 400
    assert refused.value.message == (
        "Image 'busybox:latest' is not allowed: choose one of: Tiny, Alt"
    )
    assert not exists("container", s.object_name)
    # Without the option: the configured image again.
    s.user_options = {}
    await s.start()
    assert inspect("container", s.object_name)["Config"]["Image"] == TINY_IMAGE
    await s.stop()


VOLUMES = {"v-{username}-{servername}": "/w"}


def renamed(spawner: DockerSpawner, new: str, **settings: Any) -> DockerSpawner:
    """The hub's part of a rename, after `await spawner.rename(old, new)`: the orm row gets the
    new name and the stale wrapper is dropped; the next start builds a new spawner from the
    row's state (as stored in the database)."""
    spawner.orm_spawner.name = new
    fresh = make_spawner(spawner.user.name, new, **settings)
    fresh.load_state(json.loads(json.dumps(spawner.orm_spawner.state)))
    return fresh


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


async def test_use_internal_hostname_reaches_the_server_by_name(unique: str) -> None:
    net = f"rustdocker-test-{unique}"
    docker("network", "create", "--label", f"{LABEL_HUB}={SESSION_HUB_ID}", net)
    try:
        s = make_spawner(unique, network_name=net, use_internal_hostname=True, remove=True)
        host, port = await s.start()
        assert (host, port) == (s.object_name, 8888)
        # From another container on the network, as a hub in a container would connect.
        reply = docker(
            "run", "--rm", "--label", f"{LABEL_HUB}={SESSION_HUB_ID}", "--network", net,
            TINY_IMAGE, "busybox", "wget", "-qO-", f"http://{host}:{port}/",
        )  # fmt: skip
        assert reply.stdout.strip() == "ok"
        await s.stop()
    finally:
        docker("network", "rm", net, check=False)


async def test_group_overrides_and_environment_on_the_engine(unique: str) -> None:
    s = make_spawner(
        unique,
        volumes={"home-{username}": "/home/jovyan/work"},
        environment={"GREETING": lambda spawner: f"hello {spawner.user.name}"},
        group_overrides={
            "10-big": {
                "groups": ["big"],
                "spawner_override": {
                    "mem_limit": "256M",
                    "volumes": {"shared-{username}": "/shared"},
                    "environment": {"TIER": "big"},
                },
            }
        },
        remove=True,
    )
    s.user.groups = [SimpleNamespace(name="big")]
    await s.apply_group_overrides()
    await s.start()
    info = inspect("container", s.object_name)
    assert info["HostConfig"]["Memory"] == 256 * 1024**2
    assert sorted(info["HostConfig"]["Binds"]) == [
        f"home-{unique}:/home/jovyan/work:rw",
        f"shared-{unique}:/shared:rw",
    ]
    env = env_of(info)
    assert env["GREETING"] == f"hello {unique}"
    assert env["TIER"] == "big"
    assert env["MEM_LIMIT"] == str(256 * 1024**2)
    await s.stop()


async def test_delete_forever_removes_nothing(unique: str) -> None:
    s = make_spawner(unique, volumes={"v-{username}": "/w"})
    await s.start()
    await s.stop()
    await s.delete_forever()
    assert exists("container", s.object_name)
    assert exists("volume", f"v-{unique}")


# ------------------------------------------------------------------ SystemUserSpawner


@pytest.fixture
def host_user(tmp_path: Path) -> Iterator[SimpleNamespace]:
    """An account on this (the hub's) host, with its home directory in a temporary directory."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("creating a host user needs root and useradd")
    uid = next(u for u in range(4242, 4342) if not _uid_taken(u))
    gid = uid + 1000
    name = f"rdsu{uuid.uuid4().hex[:6]}"
    homes = tmp_path / "homes"
    home = homes / name
    home.mkdir(parents=True)
    subprocess.run(["groupadd", "-g", str(gid), name], check=True)
    try:
        subprocess.run(
            ["useradd", "-u", str(uid), "-g", str(gid), "-M", "-d", str(home), name], check=True
        )
        os.chown(home, uid, gid)
        yield SimpleNamespace(name=name, uid=uid, gid=gid, home=home, homes=homes)
    finally:
        subprocess.run(["userdel", name], check=False)
        subprocess.run(["groupdel", name], check=False, capture_output=True)


def _uid_taken(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


@pytest.mark.parametrize("callable_extra", [False, True])
async def test_system_user_spawner_on_the_engine(host_user: Any, callable_extra: bool) -> None:
    extra: Any = {"labels": {"team": "{raw_username}"}}
    if callable_extra:
        # DockerSpawner's SystemUserSpawner crashes on a callable extra_create_kwargs.
        extra = lambda spawner: {"labels": {"team": spawner.user.name}}  # noqa: E731
    s = make_spawner(
        host_user.name,
        cls=SystemUserSpawner,
        host_homedir_format_string=f"{host_user.homes}/{{username}}",
        extra_create_kwargs=extra,
        remove=True,
    )
    await s.start()
    home = f"/home/{host_user.name}"
    info = inspect("container", s.object_name)
    config = info["Config"]
    assert config["User"] == f"{host_user.uid}:{host_user.gid}"
    assert config["WorkingDir"] == home
    assert config["Labels"]["team"] == host_user.name
    assert info["HostConfig"]["Binds"] == [f"{host_user.home}:{home}:rw"]
    env = env_of(info)
    assert env["NB_USER"] == env["USER"] == host_user.name
    assert env["NB_UID"] == env["USER_ID"] == str(host_user.uid)
    assert env["NB_GID"] == str(host_user.gid)
    assert env["HOME"] == home
    assert container_exec(s.object_name, "id -u").strip() == str(host_user.uid)
    assert container_exec(s.object_name, "pwd").strip() == home
    container_exec(s.object_name, "echo mine > ~/notes.txt")
    written = host_user.home / "notes.txt"
    assert written.read_text() == "mine\n"
    assert (written.stat().st_uid, written.stat().st_gid) == (host_user.uid, host_user.gid)
    assert s.get_state()["user_id"] == host_user.uid
    assert s.get_state()["group_id"] == host_user.gid
    await s.stop()


async def test_system_user_spawner_run_as_root(host_user: Any) -> None:
    s = make_spawner(
        host_user.name,
        cls=SystemUserSpawner,
        host_homedir_format_string=f"{host_user.homes}/{{username}}",
        run_as_root=True,
        # rslave/rshared need a shared mount on the Docker host, which this one may not have.
        homedir_bind_propagation="rprivate",
        remove=True,
    )
    await s.start()
    info = inspect("container", s.object_name)
    assert info["Config"]["User"] == "0"
    home = f"/home/{host_user.name}"
    assert info["HostConfig"]["Binds"] == [f"{host_user.home}:{home}:rw,rprivate"]
    assert container_exec(s.object_name, "id -u").strip() == "0"
    assert env_of(info)["NB_UID"] == str(host_user.uid)
    await s.stop()

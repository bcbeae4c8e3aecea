"""SystemUserSpawner: servers running as the user's account on the hub host, with its home
directory mounted."""

from __future__ import annotations

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

import rustdocker
from rustdocker import DockerSpawner, SystemUserSpawner

from conftest import (
    container_exec,
    create_body,
    env_of,
    inspect,
    make_spawner,
    skip_or_fail,
    warnings_of,
)


def system_user(username: str = "sam", **settings: Any) -> SystemUserSpawner:
    s = make_spawner(username, cls=SystemUserSpawner, **settings)
    assert isinstance(s, SystemUserSpawner)
    return s


def test_system_user_spawner_exported() -> None:
    assert rustdocker.SystemUserSpawner is SystemUserSpawner
    assert issubclass(SystemUserSpawner, DockerSpawner)
    # c.DockerSpawner.* applies to it (make_spawner configures through c.DockerSpawner).
    assert system_user(prefix="hub").prefix == "hub"


async def test_system_user_spec_from_state_ids() -> None:
    s = system_user("Sam.Smith", host_homedir_format_string="/srv/homes/{username}")
    s.load_state({"user_id": 4242, "group_id": 4343})
    spec = await s.build_spec()
    body = create_body(spec)
    assert body["HostConfig"]["Binds"] == ["/srv/homes/Sam.Smith:/home/Sam.Smith:rw"]
    assert (body["WorkingDir"], body["User"]) == ("/home/Sam.Smith", "4242:4343")
    env = spec["env"]
    assert env["USER"] == env["NB_USER"] == "Sam.Smith"
    assert env["USER_ID"] == env["NB_UID"] == "4242"
    assert env["NB_GID"] == "4343"
    assert env["HOME"] == "/home/Sam.Smith"
    assert s.volume_mount_points == ["/home/Sam.Smith"]  # once (DockerSpawner lists it twice)
    assert s.get_state() == {"user_id": 4242, "group_id": 4343}


async def test_system_user_propagation_root_and_user_overrides() -> None:
    s = system_user(homedir_bind_propagation="rslave", run_as_root=True)
    s.load_state({"user_id": 10, "group_id": 20})
    body = create_body(await s.build_spec())
    assert body["HostConfig"]["Binds"] == ["/home/sam:/home/sam:rw,rslave"]
    assert body["User"] == "0"
    # The operator's own user/working_dir wins, in either spelling, and is not mutated.
    extra = {"User": "1:1"}
    s = system_user(extra_create_kwargs=extra)
    s.load_state({"user_id": 10, "group_id": 20})
    body = create_body(await s.build_spec())
    assert (body["User"], body["WorkingDir"]) == ("1:1", "/home/sam")
    assert s.extra_create_kwargs == {"User": "1:1"}


async def test_system_user_callable_extra_create_kwargs() -> None:
    """DockerSpawner's SystemUserSpawner crashes on a callable extra_create_kwargs."""
    s = system_user(extra_create_kwargs=lambda spawner: {"labels": {"who": spawner.user.name}})
    s.load_state({"user_id": 10, "group_id": 20})
    body = create_body(await s.build_spec())
    assert body["Labels"]["who"] == "sam"
    assert (body["User"], body["WorkingDir"]) == ("10:20", "/home/sam")


async def test_system_user_ids_from_passwd_and_errors(logs: pytest.LogCaptureFixture) -> None:
    root = pwd.getpwnam("root")
    s = system_user("root", host_homedir_format_string="")
    assert s.get_state() == {}  # no lookup just for get_state
    assert (s.user_id, s.group_id) == (root.pw_uid, root.pw_gid)
    assert s.host_homedir == root.pw_dir
    assert s.get_state() == {"user_id": root.pw_uid, "group_id": root.pw_gid}
    missing = system_user("no-such-user-xyz")
    assert missing.get_state() == {}
    with pytest.raises(ValueError, match="'no-such-user-xyz' has no account on the hub host"):
        await missing.build_spec()
    only_group = system_user()
    only_group.load_state({"user_id": -1, "group_id": 5})
    spec = await only_group.build_spec()
    assert "user" not in spec["extra_create"]
    assert "NB_UID" not in spec["env"]
    assert any("group_id 5 has no effect" in m for m in warnings_of(logs))
    with pytest.raises(ValueError, match=r"SystemUserSpawner\.image_homedir_format_string"):
        _ = system_user(image_homedir_format_string="/home/{user}").homedir


# ------------------------------------------------------------------ on the engine


@pytest.fixture
def host_user(tmp_path: Path) -> Iterator[SimpleNamespace]:
    """An account on this (the hub's) host, with its home directory in a temporary directory."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        skip_or_fail("creating a host user needs root and useradd")
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


@pytest.mark.docker
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


@pytest.mark.docker
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

"""Ownership: a server acts only on its own objects. Another server's container of the same
name, another hub's container or volume, and a path a user name could move, are never stopped,
removed, resumed, renamed or mounted; a cancelled start never leaves a container the hub does
not know about; `remove = True` leaves nothing behind but named volumes.

Every case is checked against the engine (`docker inspect`)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado import web

from rustdocker import ConflictError, DockerSpawner, SystemUserSpawner

from conftest import (
    LABEL_HUB,
    SESSION_HUB_ID,
    TINY_IMAGE,
    docker,
    exists,
    inspect,
    make_spawner,
    remove_labelled,
    wait_for,
)

pytestmark = pytest.mark.docker


@pytest.fixture
def other_hub() -> Iterator[str]:
    """The hub id of a second hub on the same engine (staging beside production)."""
    hub_id = f"{SESSION_HUB_ID}-other"
    yield hub_id
    remove_labelled(hub_id)


def started_at(name: str) -> str:
    info = inspect("container", name)
    assert info["State"]["Running"], f"{name} is not running"
    return str(info["State"]["StartedAt"])


# ------------------------------------------------------------------ another server, same name


async def test_refused_start_then_hub_cleanup_leaves_the_other_server_alone(unique: str) -> None:
    """After start() raises, JupyterHub calls poll() and stop(): with no container of its own
    yet, the named server must not find or stop the default server's container of the same
    name (`name_template = "{prefix}-{username}"`)."""
    default = make_spawner(unique, name_template="{prefix}-{username}")
    await default.start()
    name = default.object_name
    before = started_at(name)
    named = make_spawner(unique, "lab", name_template="{prefix}-{username}")
    assert named.object_name == name
    with pytest.raises(ConflictError, match="was made for the default server"):
        await named.start()
    # The hub's clean-up after a failed start.
    assert await named.poll() == 0
    await named.stop()
    assert started_at(name) == before
    assert await default.poll() is None
    await default.stop()


async def test_rename_is_refused_while_the_container_runs(unique: str) -> None:
    for remove in (True, False):
        s = make_spawner(unique, "old", remove=remove)
        await s.start()
        before = started_at(s.object_name)
        with pytest.raises(web.HTTPError) as info:
            await s.rename("old", "new")
        assert info.value.status_code == 409
        assert "is running" in str(info.value)
        assert started_at(s.object_name) == before
        assert s.get_state()["object_name"] == s.object_name  # still tracked
        await s.stop()
        docker("rm", "-f", s.object_name, check=False)


# ------------------------------------------------------------------ another hub, same prefix


@pytest.mark.parametrize("remove", [True, False])
async def test_two_hubs_never_take_each_others_containers(
    unique: str, other_hub: str, remove: bool
) -> None:
    prod = make_spawner(unique, remove=remove)
    await prod.start()
    before = started_at(prod.object_name)
    staging = make_spawner(unique, remove=remove, hub_id=other_hub)
    with pytest.raises(ConflictError) as info:
        await staging.start()
    message = str(info.value)
    assert "belongs to another hub" in message and SESSION_HUB_ID in message, message
    assert "prefix" in message  # what to change
    # The hub's clean-up after the failed start touches nothing either.
    assert await staging.poll() == 0
    await staging.stop()
    assert started_at(prod.object_name) == before
    assert inspect("container", prod.object_name)["Config"]["Labels"][LABEL_HUB] == SESSION_HUB_ID
    await prod.stop()


async def test_two_hubs_never_mount_each_others_volumes(unique: str, other_hub: str) -> None:
    volumes = {"home-{username}": "/home/jovyan/work"}
    prod = make_spawner(unique, volumes=volumes, remove=True)
    await prod.start()
    await prod.stop()
    staging = make_spawner(unique, volumes=volumes, hub_id=other_hub, prefix="staging")
    with pytest.raises(ConflictError, match=r"the volume 'home-.*' belongs to another hub"):
        await staging.start()
    assert not exists("container", staging.object_name)
    labels = inspect("volume", f"home-{unique}")["Labels"]
    assert labels[LABEL_HUB] == SESSION_HUB_ID


async def test_an_unlabelled_container_is_adopted_by_its_name(unique: str) -> None:
    """A container DockerSpawner made (no rustdocker labels) is resumed, as DockerSpawner
    would, and a kept one is stopped when the server's state records it."""
    name = f"jupyter-{unique}"
    docker("create", "--name", name, "-p", "127.0.0.1::8888",
           "-e", "JUPYTERHUB_API_TOKEN=old-token", TINY_IMAGE)  # fmt: skip
    try:
        s = make_spawner(unique)
        await s.start()
        assert s.object_id == inspect("container", name)["Id"]
        assert s.api_token == "old-token"
        await s.stop()
        assert not inspect("container", name)["State"]["Running"]
    finally:
        docker("rm", "-f", name, check=False)


# ------------------------------------------------------------------ paths a name can move


@pytest.mark.parametrize("raw", ["..", "a/../../etc"])
async def test_a_user_name_cannot_move_a_host_path(unique: str, raw: str) -> None:
    with tempfile.TemporaryDirectory() as root:
        s = make_spawner(unique, volumes={f"{root}/{{raw_username}}": "/home/jovyan/work"})
        s.user.name = raw
        s.name_template = f"jupyter-{unique}"
        with pytest.raises(ValueError, match=r"DockerSpawner\.volumes: the source .* not allowed"):
            await s.start()
        assert not exists("container", f"jupyter-{unique}")


async def test_a_system_user_home_cannot_leave_its_directory(unique: str) -> None:
    s = make_spawner(
        unique,
        cls=SystemUserSpawner,
        host_homedir_format_string="/srv/homes/{username}",
        name_template=f"jupyter-{unique}",
    )
    s.user.name = ".."
    s.load_state({"user_id": 4242, "group_id": 4242})
    with pytest.raises(
        ValueError, match=re.escape("host_homedir_format_string: the source '/srv/homes/..'")
    ):
        await s.start()
    assert not exists("container", f"jupyter-{unique}")


# ------------------------------------------------------------------ remove = True


@pytest.fixture(scope="module")
def image_with_volume() -> Iterator[str]:
    """The test image with a `VOLUME`, so each container gets an anonymous volume."""
    tag = f"rustdocker/tiny-volume:{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as ctx:
        Path(ctx, "Dockerfile").write_text(f"FROM {TINY_IMAGE}\nVOLUME /scratch\n")
        subprocess.run(["docker", "build", "-q", "-t", tag, ctx], check=True, capture_output=True)
    yield tag
    docker("rmi", "-f", tag, check=False)


async def test_remove_true_leaves_no_anonymous_volume(unique: str, image_with_volume: str) -> None:
    s = make_spawner(
        unique, image=image_with_volume, remove=True, volumes={"keep-{username}": "/data"}
    )
    # The anonymous volume each container got for the image's VOLUME (only this test's: other
    # tests and processes may make anonymous volumes on the same engine meanwhile).
    anonymous = set()
    for _ in range(100):
        await s.start()
        mounts = inspect("container", s.object_name)["Mounts"]
        anonymous |= {m["Name"] for m in mounts if m["Destination"] == "/scratch"}
        await s.stop()
    assert len(anonymous) == 100
    assert not exists("container", s.object_name)
    assert [v for v in anonymous if exists("volume", v)] == []
    assert exists("volume", f"keep-{unique}")  # the named volume stays


async def test_remove_true_replaces_a_container_that_died(unique: str) -> None:
    s = make_spawner(unique, remove=True)
    await s.start()
    first = s.object_id
    docker("kill", s.object_name)
    await wait_for(lambda: not inspect("container", first)["State"]["Running"], 10, "the kill")
    await s.start()
    assert s.object_id != first
    assert not exists("container", first)
    await s.stop()
    assert not exists("container", s.object_name)


# ------------------------------------------------------------------ cancelled starts


async def test_a_start_cancelled_at_any_moment_is_never_untracked(unique: str) -> None:
    """Cancelled every few milliseconds from 0 to 400 ms: afterwards the container either does
    not exist, or the spawner's state records it (and then it is this server's)."""
    s = make_spawner(unique, remove=True)
    name = s.object_name
    outcomes = {"cancelled": 0, "finished": 0}
    delay = 0.0
    # From 0 to 400 ms, and on (a slow engine) until one start finishes before its cancel.
    while delay <= 0.4 or (outcomes["finished"] == 0 and delay < 5):
        task = asyncio.ensure_future(s.start())
        await asyncio.sleep(delay)
        task.cancel()
        try:
            await task
            outcomes["finished"] += 1
        except asyncio.CancelledError:
            outcomes["cancelled"] += 1
            # The undo may outlast the cancellation (CANCEL_GRACE), under the name's lock.
            await (await s.docker_client()).wait_idle(name)
        if exists("container", name):
            info = inspect("container", name)
            assert task.done() and not task.cancelled(), (
                f"cancelled at {delay * 1000:.0f} ms: container {name} left, untracked"
            )
            assert s.object_id == info["Id"]
            await s.stop()
        assert not exists("container", name)
        delay += 0.01
    assert outcomes["cancelled"] > 0 and outcomes["finished"] > 0, outcomes


# ------------------------------------------------------------------ secrets


async def test_no_start_failure_shows_the_api_token(unique: str, logs: Any) -> None:
    token = f"secret-{uuid.uuid4().hex}"
    failures: list[dict[str, Any]] = [
        {"image": "rustdocker/no-such-image:never", "pull_policy": "never"},
        {"extra_create_kwargs": {"environment": {"X": None}}},
        {"extra_create_kwargs": {"environment": ["JUPYTERHUB_API_TOKEN", 5]}},
        {"extra_host_config": {"shm_size": "many"}},
        {"cmd": ["/bin/sh", "-c", "env; exit 3"]},
        {"network_name": "rustdocker-no-such-network", "use_internal_ip": True},
        {"mounts": [{"target": "/x", "source": "/srv/..", "type": "bind"}]},
    ]
    messages = []
    for settings in failures:
        s = make_spawner(unique, **settings)
        s.api_token = token
        try:
            await s.start()
        except Exception as e:  # any failure: its text is checked for the token
            messages.append(str(e))
        else:
            # `env; exit 3` may still run when the start looks: then it is a started server.
            assert "cmd" in settings, settings
            await s.stop()
        docker("rm", "-f", s.object_name, check=False)
    assert len(messages) >= len(failures) - 1, messages
    for message in messages + [r.getMessage() for r in logs.records]:
        assert token not in message, message


# ------------------------------------------------------------------ the surface subclasses use


async def test_get_object_returns_the_inspect_or_none(unique: str) -> None:
    s = make_spawner(unique)
    assert await s.get_object() is None
    await s.start()
    obj = await s.get_object()
    assert obj is not None and obj["Id"] == s.object_id
    assert obj["Config"]["Labels"][LABEL_HUB] == SESSION_HUB_ID
    await s.stop()


def test_callable_limits_read_as_their_value() -> None:
    calls = []

    def limit(spawner: DockerSpawner) -> str:
        calls.append(time.monotonic())
        return "1G"

    s = make_spawner(mem_limit=limit, cpu_limit=lambda spawner: 1.5)
    assert s.mem_limit == 1024**3
    assert s.cpu_limit == 1.5
    assert len(calls) == 1


async def test_callable_limits_are_evaluated_again_at_each_start() -> None:
    sizes = iter(["1G", "2G"])
    s = make_spawner(mem_limit=lambda spawner: next(sizes))
    assert s.mem_limit == 1024**3
    spec = await s.build_spec()
    assert spec["mem_limit"] == 2 * 1024**3
    assert s.mem_limit == 2 * 1024**3


async def test_state_from_dockerspawner_records_its_volume_names(unique: str) -> None:
    """A server whose state came from DockerSpawner (no `volume_names`) records them at its
    first load, so a later automatic rename keeps its data."""
    s = make_spawner(unique, "lab", volumes={"v-{username}-{servername}": "/home/jovyan/work"})
    s.load_state({"object_id": "", "object_name": f"jupyter-{unique}--lab"})
    state = json.loads(json.dumps(s.get_state()))
    assert state["volume_names"] == {"v-{username}-{servername}": f"v-{unique}-lab"}
    assert state["volume_names_server"] == "lab"

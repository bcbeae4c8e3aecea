"""Stale containers: a kept container (`remove = False`) records what it was made from, and a
start compares. A changed image always makes it anew; other changes warn (the default) or make
it anew (`on_config_change = "recreate"`), keeping its volumes. Checked with `docker inspect`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from traitlets import TraitError

from conftest import (
    TINY_IMAGE,
    FakeClient,
    container_exec,
    docker,
    env_of,
    inspect,
    make_spawner,
)

DIGEST = "org.rustdocker.spec-digest"
FIELDS = "org.rustdocker.spec-fields"


def warnings_of(logs: Any) -> list[str]:
    return [r.getMessage() for r in logs.records if r.levelno >= logging.WARNING]


# ------------------------------------------------------------------ without an engine


def test_on_config_change_values() -> None:
    assert make_spawner("alice").on_config_change == "warn"
    assert make_spawner("alice", on_config_change="Recreate").on_config_change == "recreate"
    with pytest.raises(TraitError, match="on_config_change"):
        make_spawner("alice", on_config_change="ignore")


async def test_the_setting_reaches_the_core(fake_client: FakeClient) -> None:
    s = make_spawner("alice", on_config_change="recreate")
    await s.start()
    [call] = fake_client.called("start_server")
    assert json.loads(call["spec_json"])["on_config_change"] == "recreate"


# ------------------------------------------------------------------ against the engine


def image_id() -> str:
    return str(inspect("image", TINY_IMAGE)["Id"])


async def made_and_stopped(unique: str, **settings: Any) -> tuple[Any, str]:
    s = make_spawner(unique, remove=False, **settings)
    await s.start()
    container_exec(s.object_name, "echo kept > /home/jovyan/work/f; echo layer > /tmp/layer")
    await s.stop()
    return s, s.object_id


def again(s: Any, unique: str, **settings: Any) -> Any:
    """The same server after the operator changed the configuration (a hub restart)."""
    t = make_spawner(unique, remove=False, **settings)
    t.load_state(s.get_state())
    return t


@pytest.mark.docker
async def test_the_record_is_on_the_container_without_the_token(unique: str) -> None:
    s = make_spawner(unique, remove=False, environment={"A": "1"})
    await s.start()
    labels = inspect("container", s.object_name)["Config"]["Labels"]
    assert labels[DIGEST].startswith("sha256:")
    fields = json.loads(labels[FIELDS])
    assert "Env.A" in fields and "Image" in fields and "HostConfig.Binds" not in fields
    assert not any("TOKEN" in k for k in fields)
    assert s.api_token not in labels[FIELDS]
    await s.stop()


@pytest.mark.docker
async def test_the_labels_hold_nothing_derived_from_an_environment_value(unique: str) -> None:
    """Labels travel further than the environment (cAdvisor exports them all, by default): a
    hash of a weak password there would be found by guessing. The values are read back from
    the container's environment when it is compared (see the "warn" test below)."""
    s = make_spawner(unique, remove=False, environment={"DB_PASSWORD": "hunter2"})
    await s.start()
    labels = inspect("container", s.object_name)["Config"]["Labels"]
    fields = json.loads(labels[FIELDS])
    weak = hashlib.sha256(json.dumps("hunter2").encode()).hexdigest()
    assert "Env.DB_PASSWORD" in fields
    assert not any(weak[:8] in value for value in labels.values()), fields["Env.DB_PASSWORD"]
    await s.stop()


@pytest.mark.docker
async def test_unchanged_configuration_resumes_silently(unique: str, logs: Any) -> None:
    """A new API token (each spawn's own) is no change of configuration."""
    s, first = await made_and_stopped(unique, environment={"A": "1"})
    t = again(s, unique, environment={"A": "1"})
    t.api_token = "another-token"
    await t.start()
    assert t.object_id == first
    assert warnings_of(logs) == []
    await t.stop()


@pytest.mark.docker
async def test_a_change_warns_by_field_name_and_resumes(unique: str, logs: Any) -> None:
    s, first = await made_and_stopped(unique, environment={"A": "1"})
    t = again(s, unique, environment={"A": "secret-value-2", "B": "x"}, mem_limit="64M")
    await t.start()
    info = inspect("container", t.object_name)
    assert t.object_id == first == info["Id"]
    assert env_of(info)["A"] == "1"  # yesterday's setup, as asked ("warn")
    [warning] = [w for w in warnings_of(logs) if "another configuration" in w]
    for field in ("Env.A", "Env.B (added)", "HostConfig.Memory (added)", "Env.MEM_LIMIT (added)"):
        assert field in warning
    assert "secret-value-2" not in logs.text
    assert "on_config_change = 'recreate'" in warning
    await t.stop()


@pytest.mark.docker
async def test_recreate_makes_it_anew_and_keeps_the_volumes(
    unique: str, logs: Any, tmp_path: Path
) -> None:
    host = tmp_path
    (host / "h.txt").write_text("host\n")
    volumes = {"stale-{username}": "/home/jovyan/work", str(host): "/host"}
    s, first = await made_and_stopped(unique, volumes=volumes, environment={"A": "1"})
    t = again(s, unique, volumes=volumes, environment={"A": "2"}, on_config_change="recreate")
    await t.start()
    info = inspect("container", t.object_name)
    assert t.object_id == info["Id"] != first
    assert docker("inspect", first, check=False).returncode != 0
    assert env_of(info)["A"] == "2"
    assert container_exec(t.object_name, "cat /home/jovyan/work/f /host/h.txt") == "kept\nhost\n"
    # The container layer is new: files outside the volumes did not survive.
    assert docker("exec", t.object_name, "cat", "/tmp/layer", check=False).returncode != 0
    assert any("Recreating container" in m and "Env.A" in m for m in logs.messages)
    # Its record is the new configuration's: the next start resumes it.
    await t.stop()
    u = again(t, unique, volumes=volumes, environment={"A": "2"}, on_config_change="recreate")
    await u.start()
    assert u.object_id == t.object_id
    await u.stop()


@pytest.mark.docker
async def test_a_changed_image_is_always_made_anew(unique: str, logs: Any) -> None:
    """With the default "warn" too: the user asked for another image (here the same image by
    its id, which the record tells apart from its tag)."""
    s, first = await made_and_stopped(unique)
    t = again(s, unique, image=image_id())
    await t.start()
    info = inspect("container", t.object_name)
    assert info["Id"] != first
    assert info["Config"]["Image"] == image_id()
    assert any("the image changed" in m for m in logs.messages)
    await t.stop()


@pytest.mark.docker
async def test_a_running_container_is_never_recreated(unique: str, logs: Any) -> None:
    s = make_spawner(unique, remove=False, environment={"A": "1"})
    await s.start()
    t = again(s, unique, environment={"A": "2"}, on_config_change="recreate")
    await t.start()
    assert t.object_id == s.object_id
    assert inspect("container", t.object_name)["State"]["Running"]
    assert any("is running, so it is used as it is" in w for w in warnings_of(logs))
    await t.stop()


@pytest.mark.docker
async def test_a_container_without_a_record_is_compared_by_its_image(
    unique: str, logs: Any
) -> None:
    """A container DockerSpawner made: resumed when its image is the configured one (the log
    says it carries no record), made anew when the image changed."""
    name = f"jupyter-{unique}"
    docker("create", "--name", name, "-p", "127.0.0.1::8888", TINY_IMAGE)
    try:
        s = make_spawner(
            unique, remove=False, environment={"A": "new"}, on_config_change="recreate"
        )
        await s.start()
        old = inspect("container", name)
        assert s.object_id == old["Id"]
        assert "A" not in env_of(old)
        assert any("carries no record" in m for m in logs.messages)
        await s.stop()
        t = again(s, unique, image=image_id(), on_config_change="recreate")
        await t.start()
        new = inspect("container", name)
        assert new["Id"] != old["Id"]
        assert new["Config"]["Labels"][DIGEST].startswith("sha256:")
        await t.stop()
    finally:
        docker("rm", "-f", name, check=False)


@pytest.mark.docker
async def test_an_unlabelled_container_the_state_does_not_record_is_never_removed(
    unique: str, logs: Any
) -> None:
    """A container that only has the server's name (made by hand, or by another hub's
    DockerSpawner on the same engine) is not provably this server's: another image does not
    remove it, whatever on_config_change says."""
    name = f"jupyter-{unique}"
    docker("create", "--name", name, "-p", "127.0.0.1::8888", TINY_IMAGE)
    try:
        old = inspect("container", name)["Id"]
        s = make_spawner(unique, remove=False, image=image_id(), on_config_change="recreate")
        await s.start()
        assert inspect("container", name)["Id"] == old == s.object_id
        assert any("not provably this server's" in w for w in warnings_of(logs))
        await s.stop()
    finally:
        docker("rm", "-f", name, check=False)

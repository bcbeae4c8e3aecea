"""Volumes and mounts: `volumes`, `read_only_volumes`, `mounts`, volume names, persistence of
the user's files, and the internal-SSL certificates staged in a volume (move_certs)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from rustdocker import DockerSpawner
from rustdocker.volumenamingstrategy import default_format_volume_name

from conftest import (
    LABEL_HUB,
    SESSION_HUB_ID,
    TINY_IMAGE,
    container_exec,
    create_body,
    docker,
    exists,
    inspect,
    make_spawner,
)


def test_volume_names_strict_unknown_field_names_field_and_template() -> None:
    s = make_spawner("alice", volumes={"jupyterhub-user-{usrname}": "/home/jovyan/work"})
    with pytest.raises(ValueError) as info:
        _ = s.volume_binds
    message = str(info.value)
    assert "DockerSpawner.volumes" in message
    assert "usrname" in message
    assert "jupyterhub-user-{usrname}" in message


def test_volume_binds_modes_and_read_only_override() -> None:
    s = make_spawner(
        "alice",
        volumes={
            "jupyterhub-user-{username}": "/home/jovyan/work",
            "/srv/shared": {"bind": "/shared", "mode": "rw", "propagation": "rshared"},
        },
        read_only_volumes={"/srv/shared": "/shared-ro", "/srv/data": "/data"},
    )
    assert s.volume_binds == {
        "jupyterhub-user-alice": {"bind": "/home/jovyan/work", "mode": "rw"},
        "/srv/shared": {"bind": "/shared-ro", "mode": "ro"},
        "/srv/data": {"bind": "/data", "mode": "ro"},
    }
    assert s.volume_mount_points == ["/data", "/home/jovyan/work", "/shared-ro"]


def test_format_volume_name_callable() -> None:
    s = make_spawner(
        "alice",
        volumes={"ignored": "/work"},
        format_volume_name=lambda template, spawner: "constant",
    )
    assert s.volume_binds == {"constant": {"bind": "constant", "mode": "rw"}}
    assert default_format_volume_name("v-{raw_username}", make_spawner("Al")) == "v-Al"


async def test_guide_conflict_keeps_volume() -> None:
    notebook_dir = "/home/jovyan/work"
    s = make_spawner(
        "frank",
        notebook_dir=notebook_dir,
        volumes={"jupyterhub-user-{username}": notebook_dir},
        mounts=[{"source": "/jupyterhub-user-{username}", "target": notebook_dir, "type": "bind"}],
    )
    body = create_body(await s.build_spec())
    assert "Mounts" not in body["HostConfig"]
    assert body["HostConfig"]["Binds"] == ["jupyterhub-user-frank:/home/jovyan/work:rw"]


async def test_mount_binds_engine_form_and_overridable() -> None:
    s = make_spawner(
        "hank",
        mounts=[
            {"source": "m-{username}", "target": "/m", "read_only": True},
            {"type": "tmpfs", "target": "/t", "tmpfs_size": 1024},
        ],
    )
    assert s.mount_binds == [
        {"Source": "m-hank", "Target": "/m", "Type": "volume", "ReadOnly": True},
        {"Target": "/t", "Type": "tmpfs", "TmpfsOptions": {"SizeBytes": 1024}},
    ]
    assert make_spawner().mount_binds == []

    class Extra(DockerSpawner):
        @property
        def mount_binds(self) -> list[dict[str, Any]]:
            return [*super().mount_binds, {"Type": "tmpfs", "Target": "/extra"}]

    spec = await make_spawner("hank", cls=Extra).build_spec()
    assert spec["mounts"] == [{"Type": "tmpfs", "Target": "/extra"}]
    with pytest.raises(ValueError, match=r"DockerSpawner\.mounts: .*'sauce'"):
        _ = make_spawner(mounts=[{"target": "/x", "sauce": "y"}]).mount_binds


# ------------------------------------------------------------------ on the engine


@pytest.mark.docker
async def test_persistence_round_trip_named_volume(unique: str) -> None:
    notebook_dir = "/home/jovyan/work"
    settings: dict[str, Any] = {
        "notebook_dir": notebook_dir,
        "volumes": {"jupyterhub-user-{username}": notebook_dir},
        "remove": True,
    }
    s = make_spawner(unique, **settings)
    await s.start()
    volume = f"jupyterhub-user-{unique}"
    vinfo = inspect("volume", volume)
    assert vinfo["Labels"]["org.rustdocker.user"] == unique
    assert vinfo["Labels"][LABEL_HUB] == SESSION_HUB_ID
    cinfo = inspect("container", s.object_name)
    assert f"{volume}:{notebook_dir}:rw" in cinfo["HostConfig"]["Binds"]
    env = dict(e.split("=", 1) for e in cinfo["Config"]["Env"])
    assert env["JUPYTERHUB_ROOT_DIR"] == notebook_dir
    container_exec(s.object_name, f"echo precious > {notebook_dir}/data.txt")
    await s.stop()
    assert not exists("container", s.object_name)
    assert exists("volume", volume)  # never deleted

    # As after a hub restart: a fresh spawner object, same config.
    s2 = make_spawner(unique, **settings)
    await s2.start()
    assert container_exec(s2.object_name, f"cat {notebook_dir}/data.txt").strip() == "precious"
    await s2.stop()
    assert exists("volume", volume)


@pytest.mark.docker
async def test_persistence_guide_config_unchanged(unique: str) -> None:
    """The persistence guide's example, exactly as written, on the real engine."""
    notebook_dir = os.environ.get("DOCKER_NOTEBOOK_DIR") or "/home/jovyan/work"
    s = make_spawner(
        unique,
        notebook_dir=notebook_dir,
        volumes={"jupyterhub-user-{username}": notebook_dir},
        mounts=[{"source": "/jupyterhub-user-{username}", "target": notebook_dir, "type": "bind"}],
        mem_limit="2G",
    )
    await s.start()
    info = inspect("container", s.object_name)
    assert info["HostConfig"]["Memory"] == 2 * 1024**3
    assert info["HostConfig"]["Binds"] == [f"jupyterhub-user-{unique}:{notebook_dir}:rw"]
    container_exec(s.object_name, f"echo kept > {notebook_dir}/f")
    await s.stop()
    await s.start()
    assert container_exec(s.object_name, f"cat {notebook_dir}/f").strip() == "kept"
    await s.stop()
    docker("rm", "-f", s.object_name)


@pytest.mark.docker
async def test_bind_mounts_and_read_only(unique: str) -> None:
    with tempfile.TemporaryDirectory(prefix="rustdocker-test-") as host:
        hostdir = Path(host) / unique
        hostdir.mkdir()
        ro = Path(host) / "ro"
        ro.mkdir()
        (ro / "readme").write_text("shared\n")
        s = make_spawner(
            unique,
            mounts=[
                {
                    "source": f"{host}/{{raw_username}}",
                    "target": "/home/jovyan/work",
                    "type": "bind",
                    "propagation": "rprivate",
                },
                {"source": "mnt-{username}", "target": "/mnt/vol", "type": "volume"},
                {"type": "tmpfs", "target": "/scratch", "tmpfs_size": 1048576},
            ],
            read_only_volumes={str(ro): "/shared"},
            volumes={str(ro): {"bind": "/shared-rw-overridden", "mode": "rw"}},
            remove=True,
        )
        await s.start()
        info = inspect("container", s.object_name)
        assert info["HostConfig"]["Binds"] == [f"{ro}:/shared:ro"]
        mounts = {m["Target"]: m for m in info["HostConfig"]["Mounts"]}
        assert mounts["/home/jovyan/work"]["Source"] == str(hostdir)
        assert mounts["/home/jovyan/work"]["BindOptions"]["Propagation"] == "rprivate"
        assert mounts["/mnt/vol"]["Source"] == f"mnt-{unique}"
        assert mounts["/scratch"]["TmpfsOptions"]["SizeBytes"] == 1048576
        assert inspect("volume", f"mnt-{unique}")["Labels"]["org.rustdocker.user"] == unique
        container_exec(s.object_name, "echo from-container > /home/jovyan/work/out")
        assert (hostdir / "out").read_text() == "from-container\n"
        assert container_exec(s.object_name, "cat /shared/readme") == "shared\n"
        r = docker("exec", s.object_name, "sh", "-c", "echo x > /shared/nope", check=False)
        assert r.returncode != 0
        await s.stop()


@pytest.mark.docker
async def test_bad_volume_template_creates_nothing(unique: str) -> None:
    s = make_spawner(unique, volumes={"vol-{nosuchfield}": "/w"})
    with pytest.raises(ValueError, match="nosuchfield"):
        await s.start()
    assert not exists("container", s.object_name)


@pytest.mark.docker
async def test_internal_ssl_certs_staged_in_a_labelled_volume(unique: str, tmp_path: Path) -> None:
    """move_certs copies the hub's certificate files into the user's certs volume through a
    helper container; the server mounts that volume read-only at /certs."""
    paths = {}
    for key, name in (("keyfile", "user.key"), ("certfile", "user.crt"), ("cafile", "ca.crt")):
        (tmp_path / name).write_text(f"{key} of {unique}\n")
        paths[key] = str(tmp_path / name)
    s = make_spawner(unique, move_certs_image=TINY_IMAGE, remove=True)
    s.internal_ssl = True
    moved = await s.move_certs(paths)
    assert moved == {
        "keyfile": "/certs/user.key",
        "certfile": "/certs/user.crt",
        "cafile": "/certs/ca.crt",
    }
    volume = f"jupyterssl-{unique}"
    assert inspect("volume", volume)["Labels"]["org.rustdocker.user"] == unique
    # The helper container is gone again.
    helpers = docker("ps", "-aq", "--filter", f"name={s.object_name}-certs-").stdout.split()
    assert helpers == []
    await s.start()
    info = inspect("container", s.object_name)
    assert f"{volume}:/certs:ro" in info["HostConfig"]["Binds"]
    listing = container_exec(s.object_name, "ls -l /certs; cat /certs/user.crt")
    assert "-rw-r--r--" in listing
    assert f"certfile of {unique}" in listing
    r = docker("exec", s.object_name, "sh", "-c", "echo x > /certs/new", check=False)
    assert r.returncode != 0  # read-only
    await s.stop()
    assert exists("volume", volume)

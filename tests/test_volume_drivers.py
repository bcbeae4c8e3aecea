"""Volumes are made as the configuration describes them: a `mounts` entry's `driver_config`
(templated) and `labels`, `extra_host_config`'s `volume_driver`; an existing volume is used as it
is, with a warning when it differs. Checked with `docker volume inspect` and by the files a
server writes."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    LABEL_HUB,
    SESSION_HUB_ID,
    container_exec,
    docker,
    inspect,
    make_spawner,
    warnings_of,
)

pytestmark = pytest.mark.docker


def tmpfs_mount(size: str = "16m") -> dict[str, Any]:
    return {
        "type": "volume",
        "source": "scratch-{username}",
        "target": "/scratch",
        "labels": {"purpose": "scratch-{username}"},
        "driver_config": {
            "name": "local",
            "options": {"type": "tmpfs", "device": "tmpfs", "o": f"size={size}"},
        },
    }


async def test_a_mounts_volume_gets_its_driver_options_and_labels(unique: str) -> None:
    s = make_spawner(unique, mounts=[tmpfs_mount()])
    await s.start()
    vol = inspect("volume", f"scratch-{unique}")
    assert vol["Driver"] == "local"
    assert vol["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=16m"}
    assert vol["Labels"]["purpose"] == f"scratch-{unique}"  # templated
    assert vol["Labels"][LABEL_HUB] == SESSION_HUB_ID
    # The engine mounted a tmpfs there, not a directory on the Docker host's disk.
    mounts = container_exec(s.object_name, "cat /proc/mounts")
    assert any(line.split()[1] == "/scratch" and line.split()[0] == "tmpfs" for line in
               mounts.splitlines()), mounts  # fmt: skip
    await s.stop()


async def test_a_bind_backed_volume_puts_files_in_the_host_directory(unique: str) -> None:
    with tempfile.TemporaryDirectory() as root:
        Path(root, unique).mkdir()
        mount = {
            "type": "volume",
            "source": "home-{username}",
            "target": "/home/jovyan/work",
            "driver_config": {
                "name": "local",
                "options": {"type": "none", "o": "bind", "device": f"{root}/{{username}}"},
            },
        }
        s = make_spawner(unique, mounts=[mount], remove=True)
        await s.start()
        vol = inspect("volume", f"home-{unique}")
        assert vol["Options"]["device"] == f"{root}/{unique}"
        container_exec(s.object_name, "echo hello > /home/jovyan/work/note.txt")
        assert Path(root, unique, "note.txt").read_text() == "hello\n"
        await s.stop()
        docker("volume", "rm", f"home-{unique}", check=False)


async def test_volumes_take_the_volume_driver_of_extra_host_config(unique: str) -> None:
    s = make_spawner(
        unique,
        volumes={"data-{username}": "/data"},
        extra_host_config={"volume_driver": "local"},
    )
    await s.start()
    assert inspect("volume", f"data-{unique}")["Driver"] == "local"
    assert inspect("container", s.object_name)["HostConfig"]["VolumeDriver"] == "local"
    await s.stop()


async def test_an_existing_volume_is_used_as_it_is_with_a_warning(unique: str, logs: Any) -> None:
    docker("volume", "create", "--label", f"{LABEL_HUB}={SESSION_HUB_ID}",
           f"scratch-{unique}")  # fmt: skip
    s = make_spawner(unique, mounts=[tmpfs_mount()])
    await s.start()
    vol = inspect("volume", f"scratch-{unique}")
    assert vol["Options"] in (None, {})  # untouched
    warnings = warnings_of(logs)
    assert any(f"the volume 'scratch-{unique}' exists with other driver options" in w
               for w in warnings), warnings  # fmt: skip
    # The values (which may hold credentials) are not in the warning, only the keys.
    assert not any("size=16m" in w for w in warnings), warnings
    await s.stop()

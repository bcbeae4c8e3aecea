"""What users name and read: the public names, the entry points, and the help text of every
setting."""

from __future__ import annotations

import pytest

import rustdocker
from rustdocker import DockerSpawner, SystemUserSpawner


def test_public_names() -> None:
    assert rustdocker.Spawner is rustdocker.DockerSpawner
    from jupyterhub.spawner import Spawner

    assert issubclass(rustdocker.DockerSpawner, Spawner)


def test_entry_point() -> None:
    from importlib.metadata import entry_points

    eps = {ep.name: ep for ep in entry_points(group="jupyterhub.spawners")}
    assert eps["rustdocker"].load() is rustdocker.DockerSpawner
    assert eps["rustdocker-system-user"].load() is rustdocker.SystemUserSpawner


@pytest.mark.parametrize("cls", [DockerSpawner, SystemUserSpawner])
def test_every_own_trait_is_documented_with_an_example(cls: type[DockerSpawner]) -> None:
    from jupyterhub.spawner import Spawner

    base = set(Spawner.class_traits(config=True))
    own = {n: t for n, t in cls.class_traits(config=True).items() if n not in base}
    assert {"allowed_images", "use_internal_hostname", "image_whitelist", "tls"} <= set(own)
    undocumented = [n for n, t in own.items() if "Example" not in (t.help or "")]
    assert undocumented == []
    # What `jupyterhub --help-all` prints for the class renders.
    text = cls.class_get_help()
    assert f"--{cls.__name__}.allowed_images" in text
    if cls is SystemUserSpawner:
        assert "--SystemUserSpawner.run_as_root" in text

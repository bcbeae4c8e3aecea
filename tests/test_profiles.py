"""Per-user settings: `environment` (callables and overrides) and `group_overrides` applied to
rustdocker's own settings."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from traitlets import TraitError

from conftest import create_body, env_of, inspect, make_spawner


async def test_environment_callables_and_overrides() -> None:
    s = make_spawner(
        "eve",
        mem_limit="1G",
        environment={"WHO": lambda spawner: spawner.user.name.upper(), "MEM_LIMIT": "custom"},
    )
    env = (await s.build_spec())["env"]
    assert env["WHO"] == "EVE"
    assert env["MEM_LIMIT"] == "custom"  # `environment` wins over the computed value


async def test_group_overrides_with_our_traits() -> None:
    s = make_spawner(
        "gina",
        volumes={"home-{username}": "/home/jovyan"},
        group_overrides={
            "01-big": {
                "groups": ["big"],
                "spawner_override": {
                    "mem_limit": "2G",
                    "cpu_limit": lambda spawner: 1.5,
                    "volumes": {"/srv/data": {"bind": "/data", "mode": "ro"}},
                },
            },
            "02-other": {"groups": ["other"], "spawner_override": {"mem_limit": "8G"}},
        },
    )
    s.user.groups = [SimpleNamespace(name="big")]
    await s.apply_group_overrides()
    assert s.mem_limit == 2 * 1024**3
    assert s.cpu_limit == 1.5
    spec = await s.build_spec()
    assert spec["mem_limit"] == 2 * 1024**3
    assert {source: b["bind"] for source, b in s.volume_binds.items()} == {
        "home-gina": "/home/jovyan",
        "/srv/data": "/data",
    }
    body = create_body(spec)
    assert body["HostConfig"]["Binds"] == [
        "home-gina:/home/jovyan:rw",
        "/srv/data:/data:ro",
    ]
    # Another spawner with the same configuration is not affected (the dict was merged into
    # this spawner's copy).
    assert make_spawner("gina", volumes={"home-{username}": "/home/jovyan"}).volumes == {
        "home-{username}": "/home/jovyan"
    }
    with pytest.raises(TraitError, match="mem_limit"):
        bad = make_spawner(
            group_overrides={"1": {"groups": ["big"], "spawner_override": {"mem_limit": "2g"}}}
        )
        bad.user.groups = [SimpleNamespace(name="big")]
        await bad.apply_group_overrides()


# ------------------------------------------------------------------ on the engine


@pytest.mark.docker
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

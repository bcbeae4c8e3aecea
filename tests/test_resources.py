"""Resources and pass-through Docker settings: memory and CPU limits, extra_create_kwargs and
extra_host_config, docker-py's keyword names, and the HostConfig they give."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from traitlets import TraitError

from rustdocker import _core

from conftest import container_exec, exists, inspect, make_spawner


async def test_callable_limits_resolved_per_start() -> None:
    calls = []

    def limit(spawner: Any) -> str:
        calls.append(spawner.user.name)
        return "1G"

    s = make_spawner("carol", mem_limit=limit, cpu_limit=lambda sp: 0.5)
    # Evaluated when the spawner is made (the setting reads as its value, as in DockerSpawner)
    # and again by the start.
    assert calls == ["carol"]
    spec = await s.build_spec()
    assert spec["mem_limit"] == 1073741824
    assert spec["cpu_limit"] == 0.5
    assert spec["env"]["MEM_LIMIT"] == "1073741824"
    assert calls == ["carol", "carol"]

    s = make_spawner("carol", mem_limit=lambda sp: "2g")
    with pytest.raises(TraitError, match="mem_limit"):
        await s.build_spec()


async def test_spec_defaults_send_no_limits() -> None:
    s = make_spawner("dave")
    spec = await s.build_spec()
    body = json.loads(_core.build_create_body(json.dumps(spec)))
    host = body["HostConfig"]
    for field in ("Memory", "MemoryReservation", "CpuQuota", "CpuPeriod"):
        assert field not in host or host[field] in (None, 0), (field, host)
    assert host["PortBindings"] == {"8888/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
    assert host["NetworkMode"] == "bridge"
    assert spec["env"]["JUPYTER_IMAGE_SPEC"] == s.image
    assert "MEM_LIMIT" not in spec["env"]


@pytest.mark.parametrize(
    ("extra", "refused_by", "needle"),
    [
        ({"extra_host_config": {"ShmSise": 1}}, "core", "HostConfig.ShmSise"),
        ({"mounts": [{"target": "/x", "sauce": "y"}]}, "core", "'sauce'"),
        ({"cpu_limit": 0.001}, "core", "cpu_limit"),
    ],
)
async def test_invalid_settings_are_named(
    extra: dict[str, Any], refused_by: str, needle: str
) -> None:
    """Refused on the way in, by the spawner's spec or by the core's conversion of it to the
    create body, with the setting named."""
    s = make_spawner(**extra)
    if refused_by == "spec":
        with pytest.raises(ValueError, match=re.escape(needle)):
            await s.build_spec()
        return
    spec = await s.build_spec()
    with pytest.raises(ValueError, match=re.escape(needle)):
        _core.build_create_body(json.dumps(spec))


GIB = 1024**3

# DockerSpawner configurations (reference §1 and §2.6) and the HostConfig fields they must give.
CONFIG_TABLE: list[tuple[dict[str, Any], dict[str, Any]]] = [
    # The verified payload example: mem 1.5G, cpu 0.5, period 50000, GPU, shm 1g.
    (
        {
            "mem_limit": "1.5G",
            "cpu_limit": 0.5,
            "extra_host_config": {
                "cpu_period": 50000,
                "device_requests": [{"count": -1, "capabilities": [["gpu"]]}],
                "shm_size": "1g",
            },
        },
        {
            "Memory": 1610612736,
            "CpuPeriod": 50000,
            "CpuQuota": 25000,
            "ShmSize": GIB,
            "DeviceRequests": [{"Count": -1, "Capabilities": [["gpu"]]}],
        },
    ),
    # docker-py helper objects arrive as dicts with Engine keys.
    (
        {
            "extra_host_config": {
                "device_requests": [
                    {"Driver": "nvidia", "DeviceIDs": ["1"], "Capabilities": [["gpu"]]}
                ]
            }
        },
        {"DeviceRequests": [{"Driver": "nvidia", "DeviceIDs": ["1"], "Capabilities": [["gpu"]]}]},
    ),
    ({"links": {"db": "database"}}, {"Links": ["db:database"]}),
    ({"extra_host_config": {"memswap_limit": "2g"}}, {"MemorySwap": 2 * GIB}),
    ({"extra_host_config": {"network_mode": "jhub"}}, {"NetworkMode": "jhub"}),
    ({"network_name": "jhub"}, {"NetworkMode": "jhub", "PortBindings": None}),
    (
        {"host_ip": "0.0.0.0"},
        {"PortBindings": {"8888/tcp": [{"HostIp": "0.0.0.0", "HostPort": ""}]}},
    ),
    ({"port": 9999}, {"PortBindings": {"9999/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}}),
    (
        {"extra_host_config": {"network_mode": "host"}},
        {"NetworkMode": "host", "PortBindings": None},
    ),
    (
        {"volumes": {"/srv/{raw_username}": {"bind": "/data", "mode": "z"}}},
        {"Binds": ["/srv/dave:/data:z"]},
    ),
    (
        {"extra_host_config": {"privileged": True, "cap_add": ["SYS_ADMIN"], "init": True}},
        {"Privileged": True, "CapAdd": ["SYS_ADMIN"], "Init": True},
    ),
    ({"extra_create_kwargs": {"host_config": {"Runtime": "runc"}}}, {"Runtime": "runc"}),
]


@pytest.mark.parametrize(("settings", "expected"), CONFIG_TABLE)
async def test_dockerspawner_configs_give_host_config(
    settings: dict[str, Any], expected: dict[str, Any]
) -> None:
    spec = await make_spawner("dave", **settings).build_spec()
    host = json.loads(_core.build_create_body(json.dumps(spec)))["HostConfig"]
    for field, value in expected.items():
        assert host.get(field) == value, (field, host)


# ------------------------------------------------------------------ on the engine


@pytest.mark.docker
async def test_resources_on_the_engine(unique: str) -> None:
    s = make_spawner(
        unique,
        mem_limit="1.5G",
        mem_guarantee="512M",
        cpu_limit=0.5,
        extra_host_config={"CpuPeriod": 50000},
        remove=True,
    )
    await s.start()
    host = inspect("container", s.object_name)["HostConfig"]
    assert host["Memory"] == 1610612736
    assert host["MemoryReservation"] == 536870912
    assert host["CpuPeriod"] == 50000
    assert host["CpuQuota"] == 25000
    await s.stop()


@pytest.mark.docker
async def test_docker_py_keywords_on_the_engine(unique: str) -> None:
    """DockerSpawner configurations use docker-py's keyword names; the engine shows the result."""
    s = make_spawner(
        unique,
        extra_create_kwargs={
            "labels": {"team": "{username}-team"},
            "environment": {"EXTRA": "1", "JUPYTERHUB_USER": "overridden"},
            "working_dir": "/tmp",
            "user": "1000",
        },
        extra_host_config={
            "shm_size": "64m",
            "cap_drop": ["NET_RAW"],
            "pids_limit": 200,
            "ulimits": [{"name": "nofile", "soft": 1024, "hard": 2048}],
            "tmpfs": ["/scratch:size=1m"],
            "restart_policy": {"Name": "no"},
            "sysctls": {"net.ipv4.ip_unprivileged_port_start": 0},
        },
        remove=True,
    )
    await s.start()
    info = inspect("container", s.object_name)
    config, host = info["Config"], info["HostConfig"]
    assert config["Labels"]["team"] == f"{unique}-team"
    assert config["Labels"]["org.rustdocker.user"] == unique  # added to, not replaced
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["EXTRA"] == "1"
    assert env["JUPYTERHUB_USER"] == "overridden"
    assert "JUPYTERHUB_API_TOKEN" in env
    assert config["WorkingDir"] == "/tmp"
    assert config["User"] == "1000"
    assert host["ShmSize"] == 64 * 1024 * 1024
    assert host["CapDrop"] == ["NET_RAW"]
    assert host["PidsLimit"] == 200
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    assert host["Tmpfs"] == {"/scratch": "size=1m"}
    assert host["Sysctls"] == {"net.ipv4.ip_unprivileged_port_start": "0"}
    assert container_exec(s.object_name, "id -u").strip() == "1000"
    await s.stop()


@pytest.mark.docker
async def test_unknown_docker_py_keyword_creates_nothing(unique: str) -> None:
    s = make_spawner(unique, extra_host_config={"shm_sise": "1g"})
    with pytest.raises(ValueError, match="shm_sise"):
        await s.start()
    assert not exists("container", s.object_name)


@pytest.mark.docker
async def test_unknown_engine_field_creates_nothing(unique: str) -> None:
    s = make_spawner(unique, extra_host_config={"NotAField": 1})
    with pytest.raises(ValueError, match="NotAField"):
        await s.start()
    assert not exists("container", s.object_name)

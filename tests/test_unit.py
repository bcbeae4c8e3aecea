"""Pure logic through the Python surface: no Docker engine needed."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from traitlets import TraitError

import rustdocker
from rustdocker import _core
from rustdocker.volumenamingstrategy import default_format_volume_name

from conftest import make_spawner


def test_public_names() -> None:
    assert rustdocker.Spawner is rustdocker.DockerSpawner
    from jupyterhub.spawner import Spawner

    assert issubclass(rustdocker.DockerSpawner, Spawner)


def test_entry_point() -> None:
    from importlib.metadata import entry_points

    eps = {ep.name: ep for ep in entry_points(group="jupyterhub.spawners")}
    assert eps["rustdocker"].load() is rustdocker.DockerSpawner
    assert eps["rustdocker-system-user"].load() is rustdocker.SystemUserSpawner


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


def test_legacy_escape_and_custom_escape() -> None:
    s = make_spawner("Alice@x.org-a_b", escape="legacy")
    assert s.object_name == "jupyter-Alice_40x_2Eorg-a_5Fb"
    s = make_spawner("Bob", escape=lambda name: name.upper())
    assert s.object_name == "jupyter-BOB"
    with pytest.raises(TraitError, match="escape"):
        make_spawner("Bob", escape=42)


def test_template_namespace() -> None:
    s = make_spawner("Bob.Smith", "Lab1", image="localhost:5000/org/img:tag", prefix="hub")
    assert s.template_namespace() == {
        "username": "-42ob-2e-53mith",
        "safe_username": "-42ob-2e-53mith",
        "raw_username": "Bob.Smith",
        "servername": "lab1",
        "raw_servername": "Lab1",
        "imagename": "localhost-5000-org-img-tag",
        "prefix": "hub",
    }


def test_volume_names_strict_unknown_field_names_field_and_template() -> None:
    s = make_spawner("alice", volumes={"jupyterhub-user-{usrname}": "/home/jovyan/work"})
    with pytest.raises(ValueError) as info:
        _ = s.volume_binds
    message = str(info.value)
    assert "DockerSpawner.volumes" in message
    assert "usrname" in message
    assert "jupyterhub-user-{usrname}" in message


def test_extra_templates_are_lenient() -> None:
    s = make_spawner("Alice")
    assert s._render_lenient({"owner": "{username}", "x": ["{nope}", 1]}) == {
        "owner": "-41lice",
        "x": ["{nope}", 1],
    }


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


# Every string row of the reference's ByteSpecification table, plus the rows where rustdocker
# refuses what JupyterHub would turn into a crash or a negative limit.
MEMORY_OK: list[tuple[Any, int | None]] = [
    ("1.5G", 1610612736),
    ("512M", 536870912),
    ("1G", 1073741824),
    ("1K", 1024),
    ("1T", 1099511627776),
    ("0.5K", 512),
    ("1.9K", 1945),
    (".5G", 536870912),
    ("1.M", 1048576),
    ("+2G", 2147483648),
    ("1e3M", 1048576000),
    ("1E3M", 1048576000),
    ("1_000M", 1048576000),
    (" 1G", 1073741824),
    ("1 G", 1073741824),
    (1024, 1024),
    (0, 0),
    (1.7, 1),
    (True, 1),
    (False, 0),
    (None, None),
]
MEMORY_BAD = [
    "1G ", "-1G", "2g", "1k", "1Ki", "1GB", "1B", "1P", "GG", "M", "",
    "1024", "0", "-5", "0x10M", "nanG", "infG", "1e400T", -5, -1.0,
    float("nan"), float("inf"), b"1G",
]  # fmt: skip


@pytest.mark.parametrize(("value", "expected"), MEMORY_OK)
def test_mem_limit_values(value: Any, expected: int | None) -> None:
    assert make_spawner(mem_limit=value).mem_limit == expected


@pytest.mark.parametrize("value", MEMORY_BAD)
def test_mem_limit_bad_values_name_setting_and_value(value: Any) -> None:
    with pytest.raises(TraitError) as info:
        make_spawner(mem_limit=value)
    message = str(info.value)
    assert "mem_limit" in message, message
    if isinstance(value, str) and value:
        assert repr(value) in message or value in message, message


def test_mem_guarantee_uses_the_same_rules() -> None:
    assert make_spawner(mem_guarantee="512M").mem_guarantee == 536870912
    with pytest.raises(TraitError, match="mem_guarantee"):
        make_spawner(mem_guarantee="-1G")


async def test_callable_limits_resolved_per_start() -> None:
    calls = []

    def limit(spawner: Any) -> str:
        calls.append(spawner.user.name)
        return "1G"

    s = make_spawner("carol", mem_limit=limit, cpu_limit=lambda sp: 0.5)
    spec = await s.build_spec()
    assert spec["mem_limit"] == 1073741824
    assert spec["cpu_limit"] == 0.5
    assert spec["env"]["MEM_LIMIT"] == "1073741824"
    assert calls == ["carol"]

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


async def test_notebook_dir_becomes_root_dir() -> None:
    s = make_spawner("Bob.Smith", notebook_dir="/home/jovyan/work/{username}")
    spec = await s.build_spec()
    assert spec["env"]["JUPYTERHUB_ROOT_DIR"] == "/home/jovyan/work/-42ob-2e-53mith"


def test_use_internal_ip_dynamic_default() -> None:
    assert make_spawner().use_internal_ip is False
    assert make_spawner(network_name="host").use_internal_ip is False
    assert make_spawner(network_name="jhub").use_internal_ip is True
    assert make_spawner(network_name="jhub", use_internal_ip=False).use_internal_ip is False


def test_base_trait_defaults() -> None:
    s = make_spawner()
    assert s.port == 8888
    assert s.ip == "0.0.0.0"
    assert s.cmd is None
    assert s.env_keep == []
    assert s.will_resume is True
    assert make_spawner(remove=True).will_resume is False
    assert s.pull_policy == "ifnotpresent"
    assert make_spawner(pull_policy="IfNotPresent").pull_policy.lower() == "ifnotpresent"
    with pytest.raises(TraitError):
        make_spawner(pull_policy="sometimes")


def test_state_keys_and_legacy_container_id() -> None:
    s = make_spawner("erin")
    assert s.get_state() == {}
    s.load_state({"container_id": "abc", "object_name": "jupyter-erin-old"})
    assert s.object_id == "abc"
    assert s.object_name == "jupyter-erin-old"
    assert s.get_state() == {"object_id": "abc", "object_name": "jupyter-erin-old"}
    s2 = make_spawner("erin")
    s2.load_state(s.get_state())
    assert (s2.object_id, s2.object_name) == ("abc", "jupyter-erin-old")
    s2.clear_state()
    # Kept so that the stopped container is found again at the next start.
    assert s2.get_state()["object_id"] == "abc"


async def test_guide_conflict_keeps_volume() -> None:
    notebook_dir = "/home/jovyan/work"
    s = make_spawner(
        "frank",
        notebook_dir=notebook_dir,
        volumes={"jupyterhub-user-{username}": notebook_dir},
        mounts=[{"source": "/jupyterhub-user-{username}", "target": notebook_dir, "type": "bind"}],
    )
    spec = await s.build_spec()
    assert spec["mounts"] == []
    assert spec["binds"][0]["source"] == "jupyterhub-user-frank"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"extra_host_config": {"ShmSise": 1}}, "HostConfig.ShmSise"),
        ({"mounts": [{"target": "/x", "sauce": "y"}]}, "'sauce'"),
        ({"cpu_limit": 0.001}, "cpu_limit"),
    ],
)
async def test_invalid_settings_are_named(extra: dict[str, Any], needle: str) -> None:
    s = make_spawner(**extra)
    with pytest.raises(ValueError, match=r".") as info:
        spec = await s.build_spec()
        _core.build_create_body(json.dumps(spec))
    assert needle in str(info.value)


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


@pytest.mark.parametrize(("budget", "distinct_iterations"), [(0.0, 5), (60.0, 1)])
async def test_loop_share_spreads_simultaneous_starts(
    budget: float, distinct_iterations: int
) -> None:
    """A storm of starts takes turns across loop iterations once the budget is spent."""
    from rustdocker.spawner import _LoopShare

    share = _LoopShare(budget)
    loop = asyncio.get_running_loop()
    iteration = 0
    running = True

    def count() -> None:
        nonlocal iteration
        iteration += 1
        if running:
            loop.call_soon(count)

    loop.call_soon(count)
    await asyncio.sleep(0)
    passed_at: list[int] = []

    async def start() -> None:
        await share.turn()
        passed_at.append(iteration)

    await asyncio.gather(*(start() for _ in range(5)))
    running = False
    assert len(set(passed_at)) == distinct_iterations, passed_at

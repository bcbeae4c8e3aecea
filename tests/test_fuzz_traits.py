"""Generated values for the spawner's numeric, string and dict settings, set through config as an
operator would: every outcome is a `TraitError`/`ValueError` that names the setting, or a spec
the core turns into a create body. Never another exception type, and never a Rust panic
(`pyo3_runtime.PanicException`, a `BaseException`, or a `RustDockerError` from a caught one).

Engine-free: `build_spec` and `build_create_body` do not contact the engine. Each test runs
`EXAMPLES` examples (RUSTDOCKER_FUZZ_EXAMPLES, default 40), so the file stays quick; raise it
for a longer hunt. The Rust side has its own property tests (src/proptests.rs, scripts/fuzz.sh).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from traitlets import TraitError

from rustdocker import _core

from conftest import make_spawner

EXAMPLES = int(os.environ.get("RUSTDOCKER_FUZZ_EXAMPLES", "40"))

# No example database: a failure is kept as an @example or a plain test here, not in .hypothesis/.
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# ------------------------------------------------------------------ strategies

#: Text an operator might write, and anything else Unicode has.
TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["", "1g", "512M", "1.5G", "-1G", "nanG", "inf", "{username}", "{", "}", "{0}", "/data"]
    ),
)

NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # NaN and the infinities included
    st.booleans(),
)

BYTE_SPECS = st.one_of(
    st.from_regex(r"\A[ +-]?[0-9_.eE]{0,8}[KMGTkmgb]{0,2}\Z"),
    st.sampled_from(["1.5G", "512M", "0K", "8388608T", "1e308T", "infG", "-0.0001K"]),
)


def _not_huge(x: Any) -> bool:
    """Not a cpu_limit whose quota overflows i64 (see `test_huge_cpu_limit_is_refused`)."""
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return True
    return abs(x) * 1e6 < 2**63


#: JSON-able leaves: no NaN, infinity, set or bytes (see `test_non_json_values_are_named`).
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)


def json_values(keys: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        LEAVES,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.tuples(inner, inner),
            st.dictionaries(keys, inner, max_size=3),
        ),
        max_leaves=8,
    )


# Keywords the core converts (a sample of src/dockerpy.rs's tables), and Engine fields.
HOST_KEYS = st.one_of(
    st.sampled_from(
        [
            "shm_size", "mem_limit", "memswap_limit", "cpu_period", "cpu_quota", "pids_limit",
            "cap_add", "network_mode", "port_bindings", "binds", "links", "ulimits", "devices",
            "device_requests", "tmpfs", "sysctls", "group_add", "extra_hosts", "restart_policy",
            "log_config", "security_opt", "read_only", "ShmSize", "NetworkMode", "CpuPeriod",
        ]
    ),
    TEXT,
)  # fmt: skip
CREATE_KEYS = st.one_of(
    st.sampled_from(
        [
            "user", "working_dir", "environment", "labels", "volumes", "ports", "command",
            "entrypoint", "healthcheck", "host_config", "hostname", "stop_signal", "detach",
            "User", "Labels", "Env", "WorkingDir",
        ]
    ),
    TEXT,
)  # fmt: skip
NESTED_KEYS = st.one_of(
    st.sampled_from(["bind", "mode", "name", "soft", "hard", "count", "Name", "8888", "type"]),
    TEXT,
)
MOUNT_KEYS = st.one_of(
    st.sampled_from(
        ["target", "source", "type", "read_only", "propagation", "labels", "driver_config",
         "tmpfs_size", "Target", "Source", "Type", "BindOptions"]
    ),
    TEXT,
)  # fmt: skip

PATHS = st.one_of(
    st.sampled_from(
        ["/home/jovyan/work", "/srv/{username}", "jupyterhub-user-{username}", "/data", "..",
         "/srv/../etc", "a/b", "", "/x\0y", "{servername}", "{nope}"]
    ),
    TEXT,
)  # fmt: skip

VOLUME_TARGETS = st.one_of(
    PATHS,
    st.fixed_dictionaries(
        {"bind": PATHS},
        optional={"mode": st.sampled_from(["ro", "rw", "z", "x"]) | TEXT, "propagation": TEXT},
    ),
    json_values(NESTED_KEYS),
)

#: Every setting under test, with the values it is fuzzed with.
SETTINGS: dict[str, st.SearchStrategy[Any]] = {
    "mem_limit": st.one_of(st.none(), NUMBERS, BYTE_SPECS, TEXT),
    "mem_guarantee": st.one_of(st.none(), NUMBERS, BYTE_SPECS, TEXT),
    "cpu_limit": st.one_of(st.none(), NUMBERS.filter(_not_huge), st.floats(0, 64), TEXT),
    "docker_timeout": st.one_of(NUMBERS, TEXT),
    "pull_stall_timeout": st.one_of(NUMBERS, st.floats(0, 100_000), TEXT),
    # Only ports in range: one outside is refused without naming `port` (see
    # `test_port_out_of_range_is_named`).
    "port": st.one_of(st.integers(0, 65_535), TEXT, st.booleans()),
    "volumes": st.dictionaries(PATHS, VOLUME_TARGETS, max_size=3),
    "read_only_volumes": st.dictionaries(PATHS, VOLUME_TARGETS, max_size=2),
    "mounts": st.lists(
        st.dictionaries(MOUNT_KEYS, json_values(NESTED_KEYS), max_size=4), max_size=3
    ),
    "extra_host_config": st.dictionaries(HOST_KEYS, json_values(NESTED_KEYS), max_size=4),
    "extra_create_kwargs": st.dictionaries(CREATE_KEYS, json_values(NESTED_KEYS), max_size=4),
    "name_template": st.one_of(
        TEXT, st.sampled_from(["{prefix}-{username}", "{prefix}-{raw_username}", "x{imagename}"])
    ),
    "prefix": TEXT,
    "allowed_images": st.one_of(
        st.none(),
        st.just("*"),
        TEXT,
        st.lists(TEXT | st.integers(), max_size=3),
        st.dictionaries(TEXT, TEXT | st.none(), max_size=3),
    ),
}

# ------------------------------------------------------------------ the check


class Built(NamedTuple):
    spec: dict[str, Any]
    body: dict[str, Any]


async def build(settings: dict[str, Any]) -> Built:
    """What a start does before it reaches the engine: configure, check the image choice,
    build the spec, and convert it (the JSON text crosses to the core as in `start`)."""
    s = make_spawner("alice", image="img:1", **settings)
    await s._get_allowed_images()
    spec = await s.build_spec()
    return Built(spec, json.loads(_core.build_create_body(json.dumps(spec))))


def outcome(settings: dict[str, Any]) -> Built | None:
    """The spec and create body, or None when a setting was refused by a `TraitError` or
    `ValueError` that names one of the settings given. Any other exception propagates and fails
    the test: a `PanicException` is a `BaseException`, and a `RustDockerError` (a panic the core
    caught) is no `ValueError`."""
    try:
        return asyncio.run(build(settings))
    except (TraitError, ValueError) as e:
        message = str(e)
        assert any(name in message for name in settings), (
            f"{type(e).__name__} names none of {sorted(settings)}: {message}"
        )
        return None


# ------------------------------------------------------------------ properties


@FUZZ
@given(st.fixed_dictionaries({}, optional=SETTINGS))
def test_settings_are_refused_by_name_or_built(settings: dict[str, Any]) -> None:
    built = outcome(settings)
    if built is None:
        return
    host = built.body["HostConfig"]
    if "extra_create_kwargs" not in settings:
        assert built.body["Image"] == built.spec["image"] == "img:1"
    if "extra_host_config" not in settings:
        assert host.get("Memory") == (built.spec["mem_limit"] or None)


@FUZZ
@given(
    st.sampled_from(["mem_limit", "mem_guarantee"]),
    st.one_of(NUMBERS, BYTE_SPECS, TEXT),
)
@example("mem_limit", 2**63)
@example("mem_limit", 2**200)
@example("mem_limit", float("nan"))
@example("mem_guarantee", "8388608T")
def test_memory_values(name: str, value: Any) -> None:
    """One memory setting alone: refused by name, or the byte count Python's int() gives."""
    built = outcome({name: value})
    if built is None:
        return
    field = {"mem_limit": "Memory", "mem_guarantee": "MemoryReservation"}[name]
    got = built.body["HostConfig"].get(field) or 0
    assert 0 <= got <= 2**63 - 1
    if isinstance(value, int | float):
        assert got == int(value)


@FUZZ
@given(st.one_of(st.floats(0, 1e12), st.integers(0, 10**12), NUMBERS.filter(_not_huge), TEXT))
@example(float("inf"))
@example(0.001)
def test_cpu_limit(value: Any) -> None:
    """Refused by name, or the quota DockerSpawner computes: int(cpu_limit * period)."""
    built = outcome({"cpu_limit": value})
    if built is None:
        return
    host = built.body["HostConfig"]
    if isinstance(value, int | float) and value > 0:
        # Within a float's rounding: the JSON crossing can move a 17-digit float by one ulp
        # (see `test_floats_cross_to_the_core_exactly`).
        expected = int(float(value) * host["CpuPeriod"])
        assert abs(host["CpuQuota"] - expected) <= max(1, expected * 2**-51)
    else:
        assert "CpuQuota" not in host


@FUZZ
@given(st.dictionaries(HOST_KEYS, json_values(NESTED_KEYS), min_size=1, max_size=3))
def test_extra_host_config(value: dict[str, Any]) -> None:
    outcome({"extra_host_config": value})


@FUZZ
@given(st.dictionaries(CREATE_KEYS, json_values(NESTED_KEYS), min_size=1, max_size=3))
def test_extra_create_kwargs(value: dict[str, Any]) -> None:
    outcome({"extra_create_kwargs": value})


@FUZZ
@given(TEXT, TEXT)
def test_name_template_and_prefix(template: str, prefix: str) -> None:
    """A template without fields is the container name as it is."""
    built = outcome({"name_template": template, "prefix": prefix})
    if built is not None and not {"{", "}"} & set(template):
        assert built.spec["name"] == template


# ------------------------------------------------------------------ regressions found here
# Each failed when found (the exact input is in the test) and passes since its fix.


@pytest.mark.parametrize("port", [65536, -1])
def test_port_out_of_range_is_named(port: int) -> None:
    with pytest.raises((TraitError, ValueError), match="port"):
        asyncio.run(build({"port": port}))


def test_huge_cpu_limit_is_refused() -> None:
    with pytest.raises((TraitError, ValueError), match="cpu_limit"):
        asyncio.run(build({"cpu_limit": 1e300}))


def test_floats_cross_to_the_core_exactly() -> None:
    value = 360287970190.44836
    built = asyncio.run(build({"cpu_limit": value}))
    assert built.body["HostConfig"]["CpuQuota"] == int(value * 100_000)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("extra_host_config", {"cpu_percent": float("nan")}),
        ("mounts", [{"target": "/x", "tmpfs_size": float("inf")}]),
        ("volumes", {"/srv/x": {"bind": "/x", "mode": float("nan")}}),
        ("extra_host_config", {"cap_add": {"SYS_ADMIN"}}),
        ("extra_create_kwargs", {"labels": {"a": b"x"}}),
        ("extra_host_config", {("a", "b"): 1}),
    ],
)
def test_non_json_values_are_named(setting: str, value: Any) -> None:
    with pytest.raises((TraitError, ValueError), match=setting):
        asyncio.run(build({setting: value}))


def test_type_errors_in_pass_through_settings_are_named() -> None:
    """A value of the wrong type for an Engine field is refused naming the settings it can come
    from (found by `test_extra_host_config`: the message named none)."""
    for setting, value in [
        ("extra_host_config", {"cap_add": False}),
        ("extra_create_kwargs", {"working_dir": []}),
    ]:
        with pytest.raises(ValueError, match=setting):
            asyncio.run(build({setting: value}))

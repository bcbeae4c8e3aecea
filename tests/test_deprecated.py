"""Deprecated names: DockerSpawner's renamed settings and methods, which still work and say
what replaces them, and the settings rustdocker ignores, which say so."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from rustdocker import DockerSpawner

from conftest import TINY_IMAGE, make_spawner, warnings_of

ALIASES = [
    ("container_ip", "host_ip", "0.0.0.0", "0.9.*"),
    ("container_port", "port", 9999, "0.9.*"),
    ("container_image", "image", "old/image:1", "0.9.*"),
    ("container_prefix", "prefix", "hub", "0.10.0"),
    ("container_name_template", "name_template", "{prefix}-x-{username}", "0.10.0*"),
    ("remove_containers", "remove", True, "0.10.0"),
    ("image_whitelist", "allowed_images", ["a:1"], "12.0"),
]


@pytest.mark.parametrize(("old", "new", "value", "version"), ALIASES)
def test_deprecated_aliases(
    logs: pytest.LogCaptureFixture, old: str, new: str, value: Any, version: str
) -> None:
    settings: dict[str, Any] = {old: value}
    if new == "image":
        settings["image"] = TINY_IMAGE
    s = make_spawner(**settings)
    expected = {"a:1": "a:1"} if new == "allowed_images" else value
    assert getattr(s, new) == expected
    assert (
        f"DockerSpawner.{old} is deprecated in DockerSpawner {version}, "
        f"use DockerSpawner.{new} instead"
    ) in warnings_of(logs)


def test_deprecated_alias_text_uses_runtime_class_and_same_value_is_quiet(
    logs: pytest.LogCaptureFixture,
) -> None:
    class MySpawner(DockerSpawner):
        pass

    make_spawner(cls=MySpawner, image_whitelist=["a:1"])
    assert (
        "MySpawner.image_whitelist is deprecated in DockerSpawner 12.0, "
        "use MySpawner.allowed_images instead"
    ) in warnings_of(logs)
    logs.clear()
    s = make_spawner(remove=True, remove_containers=True)
    assert s.remove is True
    assert not any("deprecated" in m for m in warnings_of(logs))


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("use_docker_client_env", False, "use_docker_client_env is deprecated and ignored"),
        ("tls", True, "tls config ignored, use DockerSpawner.tls_config dict"),
        ("tls_verify", True, "tls_verify config ignored"),
        ("tls_ca", "/ca.pem", "tls_ca config ignored"),
        ("tls_cert", "/cert.pem", "tls_cert config ignored"),
        ("tls_key", "/key.pem", "tls_key config ignored"),
        ("tls_assert_hostname", False, "tls_assert_hostname config ignored"),
        ("hub_ip_connect", "10.0.0.1", "Use c.JupyterHub.hub_connect_ip instead"),
    ],
)
def test_deprecated_and_ignored(
    logs: pytest.LogCaptureFixture, name: str, value: Any, needle: str
) -> None:
    s = make_spawner(**{name: value})
    assert any(needle in m for m in warnings_of(logs)), warnings_of(logs)
    assert s.host_ip == "127.0.0.1"  # nothing else changed


async def test_check_image_whitelist_is_a_deprecated_wrapper() -> None:
    s = make_spawner(allowed_images={"A": "a:1"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert await s.check_image_whitelist("A") == "a:1"
    assert [str(w.message) for w in caught if w.category is DeprecationWarning] == [
        "DockerSpawner.check_image_whitelist is deprecated in DockerSpawner 12.0. "
        "Please use DockerSpawner.check_allowed instead."
    ]

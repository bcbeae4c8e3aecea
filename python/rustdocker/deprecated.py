"""Deprecated and removed DockerSpawner settings: old names copied to their new ones with
DockerSpawner's warnings, and settings that are accepted but only warn.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

from traitlets import Any as AnyTrait
from traitlets import Bool, Dict, Int, List, TraitType, Unicode, Union, observe

from .traits import SpawnerPart


def _ignored_tls_trait(name: str) -> AnyTrait:
    return AnyTrait(
        help=f"""Deprecated and ignored (as in DockerSpawner): setting `{name}` only logs a
        warning. TLS to the engine is set with `tls_config`.

        Example: `c.DockerSpawner.tls_config = {{"ca_cert": "/certs/ca.pem"}}`
        """,
    ).tag(config=True)


# Old name -> (new name, the DockerSpawner version that renamed it). A value set under the old
# name is copied to the new one, with DockerSpawner's warning when they differ.
_DEPRECATED_ALIASES: dict[str, tuple[str, str]] = {
    "container_ip": ("host_ip", "0.9.*"),
    "container_port": ("port", "0.9.*"),
    "container_image": ("image", "0.9.*"),
    "container_prefix": ("prefix", "0.10.0"),
    "container_name_template": ("name_template", "0.10.0*"),
    "remove_containers": ("remove", "0.10.0"),
    "image_whitelist": ("allowed_images", "12.0"),
}


def _renamed(make: Callable[..., TraitType[Any, Any]], old: str, example: str) -> Any:
    """A deprecated alias trait, documented from `_DEPRECATED_ALIASES`."""
    new, version = _DEPRECATED_ALIASES[old]
    since = version.rstrip("*").removesuffix(".")
    return make(
        help=f"""Deprecated since DockerSpawner {since}: use `{new}`, which a value set here is
        copied to (with a warning).

        Example: `{example}`
        """,
    ).tag(config=True)


class DeprecatedSettings(SpawnerPart):
    """DockerSpawner's old setting names, kept working with a warning."""

    _deprecated_aliases: ClassVar[dict[str, tuple[str, str]]] = _DEPRECATED_ALIASES

    container_ip = _renamed(
        partial(Unicode, "127.0.0.1"), "container_ip", 'c.DockerSpawner.host_ip = "0.0.0.0"'
    )
    container_port = _renamed(partial(Int, 8888), "container_port", "c.DockerSpawner.port = 8888")
    container_image = _renamed(
        partial(Unicode, ""),
        "container_image",
        'c.DockerSpawner.image = "quay.io/jupyter/base-notebook:2024-12-02"',
    )
    container_prefix = _renamed(
        partial(Unicode, ""), "container_prefix", 'c.DockerSpawner.prefix = "hub"'
    )
    container_name_template = _renamed(
        partial(Unicode, ""),
        "container_name_template",
        'c.DockerSpawner.name_template = "{prefix}-{username}"',
    )
    remove_containers = _renamed(
        partial(Bool, False), "remove_containers", "c.DockerSpawner.remove = True"
    )
    image_whitelist = _renamed(
        partial(Union, [AnyTrait(), Dict(), List()], default_value={}),
        "image_whitelist",
        'c.DockerSpawner.allowed_images = ["quay.io/jupyter/base-notebook:2024-12-02"]',
    )

    @observe(*_deprecated_aliases)
    def _deprecated_alias_set(self, change: Any) -> None:
        new_name, version = self._deprecated_aliases[change.name]
        if getattr(self, new_name) != change.new:
            # Setting both names to the same value (configs written for old and new versions
            # alike) is not warned about.
            cls = type(self).__name__
            self.log.warning(
                f"{cls}.{change.name} is deprecated in DockerSpawner {version}, "
                f"use {cls}.{new_name} instead"
            )
            setattr(self, new_name, change.new)

    use_docker_client_env = Bool(
        True,
        help="""Deprecated and ignored: the `DOCKER_HOST` environment variable is always used
        when `docker_host` is empty; setting this only logs a warning.

        Example: `c.DockerSpawner.docker_host = "tcp://10.0.0.5:2375"`
        """,
    ).tag(config=True)

    @observe("use_docker_client_env")
    def _use_docker_client_env_set(self, change: Any) -> None:
        self.log.warning(
            f"{type(self).__name__}.use_docker_client_env is deprecated and ignored."
            "  Docker environment variables are always used if defined."
        )

    tls = _ignored_tls_trait("tls")
    tls_verify = _ignored_tls_trait("tls_verify")
    tls_ca = _ignored_tls_trait("tls_ca")
    tls_cert = _ignored_tls_trait("tls_cert")
    tls_key = _ignored_tls_trait("tls_key")
    tls_assert_hostname = _ignored_tls_trait("tls_assert_hostname")

    @observe("tls", "tls_verify", "tls_ca", "tls_cert", "tls_key", "tls_assert_hostname")
    def _ignored_tls_set(self, change: Any) -> None:
        self.log.warning(
            "%s config ignored, use %s.tls_config dict to set full TLS configuration.",
            change.name,
            type(self).__name__,
        )

    hub_ip_connect = Unicode(
        "",
        help="""Removed in DockerSpawner 13 (deprecated since JupyterHub 0.8): setting it only
        logs a warning. The address containers reach the hub at is JupyterHub's
        `hub_connect_ip` (or `hub_connect_url`).

        Example: `c.JupyterHub.hub_connect_ip = "jupyterhub"`
        """,
    ).tag(config=True)

    @observe("hub_ip_connect")
    def _hub_ip_connect_set(self, change: Any) -> None:
        self.log.warning(
            f"Ignoring {type(self).__name__}.hub_ip_connect={change.new!r}, which has been "
            "deprecated since JupyterHub 0.8. Use c.JupyterHub.hub_connect_ip instead."
        )

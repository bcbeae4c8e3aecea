"""rustdocker's spawner: DockerSpawner's configuration, a Rust core underneath.

This module holds the traits, the spawner's state and the orchestration. Every Docker Engine call,
the template rendering and the container spec live in the native module ``rustdocker._core``.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import io
import json
import math
import os
import secrets
import shlex
import socket
import tarfile
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlparse

from jupyterhub.spawner import Spawner
from jupyterhub.traitlets import Callable as CallableTrait
from jupyterhub.utils import fmt_ip_url
from tornado import web
from traitlets import (
    Any as AnyTrait,
)
from traitlets import (
    Bool,
    CaselessStrEnum,
    Dict,
    Float,
    Int,
    List,
    TraitError,
    TraitType,
    Unicode,
    Union,
    default,
    observe,
    validate,
)

from . import _core
from .imagechoice import (
    AllowedImages,
    image_from_form,
    normalize_allowed_images,
    options_form_html,
    refusal,
)
from .traits import ByteSpecification, UnicodeOrFalse, memory_bytes
from .volumenamingstrategy import default_format_volume_name

_T = TypeVar("_T")

#: Label keys set on every container and volume rustdocker creates.
LABEL_MANAGED_BY = "org.rustdocker.managed-by"
LABEL_HUB = "org.rustdocker.hub"
LABEL_USER = "org.rustdocker.user"
LABEL_SERVER = "org.rustdocker.server"


def _default_image() -> str:
    import jupyterhub

    major, minor = jupyterhub.version_info[:2]
    return f"quay.io/jupyterhub/singleuser:{major}.{minor}"


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


def _ignored_tls_trait(name: str) -> AnyTrait:
    return AnyTrait(
        help=f"""Deprecated and ignored (as in DockerSpawner): setting `{name}` only logs a
        warning. TLS to the engine is set with `tls_config`.

        Example: `c.DockerSpawner.tls_config = {{"ca_cert": "/certs/ca.pem"}}`
        """,
    ).tag(config=True)


async def _image_options_form(spawner: DockerSpawner) -> str:
    """`options_form` when `allowed_images` is a callable: built at every display."""
    return options_form_html(await spawner._get_allowed_images(), spawner.image)


class _AsServer:
    """A spawner seen as if it were the server `name`: for asking whether a template's result
    depends on the server's name."""

    def __init__(self, spawner: DockerSpawner, name: str) -> None:
        self._spawner = spawner
        self.name = name

    def template_namespace(self) -> dict[str, str]:
        namespace = dict(self._spawner.template_namespace())
        namespace["servername"] = str(self._spawner.escape(self.name.lower()))
        namespace["raw_servername"] = self.name
        return namespace

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._spawner, attr)


class _ClientPool:
    """One connected, version-negotiated Docker client per (host, timeout) per hub process.

    A client is not tied to an event loop, so it is cached as an object. Two spawners that race
    to make the first connection may both connect; the first to finish is kept.
    """

    def __init__(self) -> None:
        self._clients: dict[Any, _core.DockerClient] = {}

    async def get(
        self, host: str | None, timeout: float, tls: tuple[str, str, str] | None
    ) -> _core.DockerClient:
        key = (host, timeout, tls)
        client = self._clients.get(key)
        if client is None:
            ca, cert, keyfile = tls or (None, None, None)
            client = await _core.DockerClient.connect(
                host, timeout, tls_ca=ca, tls_cert=cert, tls_key=keyfile
            )
            client = self._clients.setdefault(key, client)
        return client


_clients = _ClientPool()


class _LoopShare:
    """Spreads the synchronous part of many simultaneous starts over event-loop iterations.

    Building a start's spec (JupyterHub's environment, templates, volumes) takes a fraction of
    a millisecond, but a hundred starts requested at once would run back to back and stall
    the hub's event loop (its HTTP handlers, the proxy, other users' polls) for tens of
    milliseconds. A start takes its turn here first: once `budget` seconds of set-up have run
    in one loop iteration, the next starts wait for the following iteration.
    """

    def __init__(self, budget: float = 0.002) -> None:
        self.budget = budget
        self._window: tuple[asyncio.AbstractEventLoop, float] | None = None

    def _close(self) -> None:
        self._window = None

    async def turn(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            window = self._window
            if window is None or window[0] is not loop:
                # A new iteration (or a window left by another loop): open a window, closed
                # by a callback that runs in the next iteration.
                self._window = (loop, time.perf_counter())
                loop.call_soon(self._close)
                return
            if time.perf_counter() - window[1] <= self.budget:
                return
            await asyncio.sleep(0)


_loop_share = _LoopShare()


def _tar_for_certs(paths: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """A tar of the certificate files (by basename, mode 0644) and where each lands in /certs."""
    archive = io.BytesIO()
    moved = {}
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for key, path in paths.items():
            name = os.path.basename(path)
            with open(path, "rb") as f:
                data = f.read()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = int(os.stat(path).st_mtime)
            tar.addfile(info, io.BytesIO(data))
            moved[key] = f"/certs/{name}"
    return archive.getvalue(), moved


def _tls_files(value: Any, setting: str) -> tuple[str, str, str]:
    """(ca, cert, key) from docker-py TLSConfig keywords or a TLSConfig-like object."""
    if isinstance(value, dict):
        client_cert = value.get("client_cert")
        ca = value.get("ca_cert") or value.get("verify")
    else:
        client_cert = getattr(value, "cert", None)
        ca = getattr(value, "ca_cert", None) or getattr(value, "verify", None)
    if not (isinstance(client_cert, list | tuple) and len(client_cert) == 2):
        raise ValueError(
            f"DockerSpawner.{setting}: client_cert={client_cert!r} is not allowed: "
            "use client_cert=(cert_path, key_path); the engine's --tlsverify needs a client "
            "certificate"
        )
    if not isinstance(ca, str) or not ca:
        raise ValueError(
            f"DockerSpawner.{setting}: ca_cert={ca!r} is not allowed: use ca_cert=path to the CA "
            "that signed the engine's certificate"
        )
    for path in (ca, *client_cert):
        if not os.path.isfile(str(path)):
            raise ValueError(f"DockerSpawner.{setting}: certificate file {path!r} does not exist")
    return (ca, str(client_cert[0]), str(client_cert[1]))


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


class DockerSpawner(Spawner):
    """A JupyterHub spawner that runs each user's server in a Docker container.

    A drop-in replacement for ``dockerspawner.DockerSpawner``: it reads the same
    ``c.DockerSpawner.*`` settings, names containers and volumes the same way, and keeps the same
    state keys, so an existing deployment finds its existing containers and volumes.
    """

    # ------------------------------------------------------------------ image and naming

    image = Unicode(
        help="""The image the user's server runs in.

        The default follows the running JupyterHub's version,
        `quay.io/jupyterhub/singleuser:<major>.<minor>`, so hub and server match. The image must
        start `jupyterhub-singleuser` (its CMD, or `cmd`). Changing it affects new containers
        only: with `remove = False` an existing stopped container is restarted as it is.
        An `image` user option allowed by `allowed_images` replaces it for that start.

        Example: `c.DockerSpawner.image = "quay.io/jupyter/scipy-notebook:2024-12-02"`
        """,
    ).tag(config=True)

    @default("image")
    def _image_default(self) -> str:
        return _default_image()

    allowed_images = Union(
        [AnyTrait(), Dict(), List()],
        default_value={},
        help="""Images users may choose from when they start a server, as `{key: image}`.

        Users choose with the `image` user option: the spawn form (shown when there are two or
        more images), the REST API (`{"user_options": {"image": "<key>"}}`) or
        `/hub/spawn?opt-image=<key>`. The key is what users see and send, the value the image
        that runs, so a dict gives images friendly names; a list is short for `{image: image}`.
        `"*"` allows any image: only for hubs whose users may run anything. A callable
        `f(spawner)`, possibly async, returning any of these (or None) is called, and its result
        checked, at every form display and every start, so it can depend on the user's groups.

        Empty (the default): users cannot choose, and a request naming any image other than
        `image` fails with HTTP 400. A refused request is told the allowed keys. A string other
        than `"*"` is an error when the configuration is loaded.

        Example::

            c.DockerSpawner.allowed_images = {
                "Python": "quay.io/jupyter/scipy-notebook:2024-12-02",
                "R": "quay.io/jupyter/r-notebook:2024-12-02",
            }
        """,
    ).tag(config=True)

    @validate("allowed_images")
    def _validate_allowed_images(self, proposal: Any) -> Any:
        value = proposal["value"]
        if callable(value):
            return value
        return normalize_allowed_images(value, f"{type(self).__name__}.allowed_images")

    async def _get_allowed_images(self) -> AllowedImages:
        """`allowed_images` now: a callable is called (and awaited) and its result validated."""
        value = self.allowed_images
        if callable(value):
            value = normalize_allowed_images(
                await _maybe_await(value(self)),
                f"{type(self).__name__}.allowed_images (the callable's result)",
            )
        return value

    @default("options_form")
    def _options_form_default(self) -> Any:
        # A static list gives the form once, as DockerSpawner; a callable list is asked at every
        # display, which the hub supports through a callable options_form.
        if callable(self.allowed_images):
            return _image_options_form
        return options_form_html(self.allowed_images, self.image)

    @default("options_from_form")
    def _options_from_form_default(self) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return image_from_form

    async def check_allowed(self, image: Any) -> str:
        """The image to launch for a requested `image` user option.

        A key of `allowed_images` gives its image, and an allowed image itself is accepted
        (DockerSpawner refuses the real name of an aliased image). The image this start runs
        without the option (`image`, after `group_overrides`) is always accepted: asking for
        the default is not a choice (DockerSpawner refuses it when `allowed_images` is empty).
        Anything else raises `SpawnException` (HTTP 400) naming the allowed keys.
        """
        if isinstance(image, list | tuple) and len(image) == 1:
            image = image[0]  # a form's value, through options_from_form = "passthrough"
        if not isinstance(image, str) or not image:
            raise refusal(
                f"The image option must be the name of an image, not {image!r}", reason="image"
            )
        allowed = await self._get_allowed_images()
        if isinstance(allowed, str):  # "*"
            return image
        if image in allowed:
            return allowed[image]
        default_image = self._image_without_option or self.image
        if image in allowed.values() or image == default_image:
            return image
        if not allowed:
            raise refusal("Specifying image to launch is not allowed", reason="image")
        raise refusal(
            f"Image {image!r} is not allowed: choose one of: {', '.join(allowed)}", reason="image"
        )

    def check_image_whitelist(self, image: Any) -> Awaitable[str]:
        """Deprecated since DockerSpawner 12.0: use `check_allowed`."""
        cls = type(self).__name__
        warnings.warn(
            f"{cls}.check_image_whitelist is deprecated in DockerSpawner 12.0. "
            f"Please use {cls}.check_allowed instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.check_allowed(image)

    # The image a start runs without the `image` user option (noted after group_overrides), and
    # (that image, the chosen one) of the last start that applied the option: the choice holds
    # for that start only, as it would after a hub restart.
    _image_without_option: str | None = None
    _image_option_applied: tuple[str, str] | None = None

    def _undo_image_option(self) -> None:
        applied, self._image_option_applied = self._image_option_applied, None
        if applied is not None and self.image == applied[1]:
            self.image = applied[0]

    async def apply_group_overrides(self) -> None:
        # The hub's first step of every spawn (JupyterHub >= 5).
        self._undo_image_option()
        await super().apply_group_overrides()
        self._image_without_option = self.image

    async def _run_apply_user_options(self, user_options: Any) -> None:
        # JupyterHub >= 5.3 warns about user options its `apply_user_options` does not handle;
        # `image` is handled by start(), so it is not passed to the hub's handling unless an
        # `apply_user_options` callable (which sees every option) or dict entry asks for it.
        run = getattr(super(), "_run_apply_user_options", None)
        if run is None:  # pragma: no cover - JupyterHub < 5.3 does not call this
            return
        hook = self.apply_user_options
        if (
            isinstance(user_options, dict)
            and "image" in user_options
            and (not hook or (isinstance(hook, dict) and "image" not in hook))
        ):
            user_options = {k: v for k, v in user_options.items() if k != "image"}
        await run(user_options)

    async def _apply_image_option(self) -> None:
        """start()'s first step: the `image` user option, checked, becomes `image`."""
        if self._image_without_option is None:
            # start() without the hub's preparation.
            self._undo_image_option()
            self._image_without_option = self.image
        try:
            options = self.user_options if isinstance(self.user_options, dict) else {}
            requested = options.get("image")
            if requested:
                chosen = await self.check_allowed(requested)
                self.log.info(
                    "%s runs image %s (user option image=%r)", self._log_name, chosen, requested
                )
                self._image_option_applied = (self._image_without_option, chosen)
                self.image = chosen
        finally:
            self._image_without_option = None

    pull_policy = CaselessStrEnum(
        ["always", "ifnotpresent", "never", "skip"],
        default_value="ifnotpresent",
        help="""When to pull the image before a start (case-insensitive).

        - `ifnotpresent` (default): pull only when the engine does not have it;
        - `always`: pull on every start (picks up a moved tag, costs a registry round trip);
        - `never`: fail the start when the image is missing;
        - `skip`: do not look at the image at all.

        An error the registry reports during the pull fails the start with that error.

        Example: `c.DockerSpawner.pull_policy = "always"`
        """,
    ).tag(config=True)

    prefix = Unicode(
        "jupyter",
        help="""Prefix of container names, available as `{prefix}` in templates.

        Example: `c.DockerSpawner.prefix = "hub"` names containers `hub-<user>`.
        """,
    ).tag(config=True)

    name_template = Unicode(
        help="""Template of the container name.

        Default: `{prefix}-{username}` for a user's default server and
        `{prefix}-{username}--{servername}` for a named server. The separator between the
        username and the server name must not occur in an escaped username; `--` is safe because
        the escape character `-` is always followed by hex digits. A name already recorded in the
        server's state is kept, so changing this does not orphan existing containers.

        Fields: `{username}`, `{safe_username}` (escaped), `{raw_username}`, `{servername}`
        (escaped, lower-cased), `{raw_servername}`, `{imagename}`, `{prefix}`.

        Example: `c.DockerSpawner.name_template = "{prefix}-{username}-{imagename}"`
        """,
    ).tag(config=True)

    @default("name_template")
    def _name_template_default(self) -> str:
        if self.name:
            return "{prefix}-{username}--{servername}"
        return "{prefix}-{username}"

    escape = AnyTrait(
        help="""How `{username}` and `{servername}` are escaped in names.

        The default is DockerSpawner's (since 12.0): characters outside `[a-z0-9]` become `-` and
        their hex code, and the result is lower-cased (`Alice@x.org` -> `-41lice-40x-2eorg`).
        `"legacy"` restores the pre-12 scheme (`_` and hex, case kept), for deployments whose
        containers and volumes were named by an older DockerSpawner. A callable `str -> str`
        may be given. Changing it renames containers and volumes: existing data is not found
        under the new names.

        Example: `c.DockerSpawner.escape = "legacy"`
        """,
    ).tag(config=True)

    @default("escape")
    def _escape_default(self) -> Callable[[str], str]:
        return _core.escape

    @validate("escape")
    def _validate_escape(self, proposal: Any) -> Callable[[str], str]:
        value = proposal["value"]
        if value == "legacy":
            return _core.escape_legacy
        if not callable(value):
            raise TraitError(
                f"DockerSpawner.escape = {value!r} is not allowed: use a callable taking and "
                "returning a string, or 'legacy'"
            )
        return value

    # ------------------------------------------------------------------ persistence

    volumes = Dict(
        help="""Docker volumes and host directories to mount, `{source: target}`.

        A source that is an absolute path is bind-mounted from the Docker host; anything else is
        a named volume, which rustdocker creates (labelled with the user, server and hub) if it
        does not exist, and never deletes. The value may be a dict
        `{"bind": target, "mode": "rw"|"ro"|"z"|"Z", "propagation": "rshared"|...}`.
        Keys and targets go through `format_volume_name`; an unknown `{field}` is an error.

        Example: `c.DockerSpawner.volumes = {"jupyterhub-user-{username}": "/home/jovyan/work"}`
        """,
    ).tag(config=True)

    read_only_volumes = Dict(
        help="""Like `volumes`, but mounted read-only (unless an entry's dict gives `mode`).

        Applied after `volumes`, so the same source here replaces its `volumes` entry.

        Example: `c.DockerSpawner.read_only_volumes = {"/srv/datasets": "/home/jovyan/data"}`
        """,
    ).tag(config=True)

    mounts = List(
        Dict(),
        help="""Mounts in docker-py `Mount` form: `target`, `source`, `type` (`volume`, `bind`,
        `tmpfs`), `read_only`, `propagation`, `no_copy`, `labels`, `driver_config`,
        `tmpfs_size`, `tmpfs_mode`, `subpath`. Every string value is templated with
        `format_volume_name`. Named volumes of `type: volume` are created and labelled like
        those of `volumes`.

        Example::

            c.DockerSpawner.mounts = [
                {"source": "/srv/home/{username}", "target": "/home/jovyan/work", "type": "bind"}
            ]
        """,
    ).tag(config=True)

    format_volume_name = AnyTrait(
        help="""Callable `(template, spawner) -> str` that renders volume names and paths.

        The default renders the template strictly with the spawner's template namespace (an
        unknown field is an error naming it). `rustdocker.volumenamingstrategy` also has
        `escaped_format_volume_name`, identical since DockerSpawner 12.

        Example::

            def volume_name(template, spawner):
                return template.format(username=spawner.user.name)

            c.DockerSpawner.format_volume_name = volume_name
        """,
    ).tag(config=True)

    @default("format_volume_name")
    def _format_volume_name_default(self) -> Callable[[str, Any], str]:
        return default_format_volume_name

    remove = Bool(
        False,
        help="""Remove the container when the server stops (and a leftover one at start).

        With `False` (the default) a stopped container is kept and restarted at the next start,
        so changes outside the mounted volumes survive, but so does the old configuration.
        Named volumes and host directories are never removed either way.

        Example: `c.DockerSpawner.remove = True`
        """,
    ).tag(config=True)

    @property
    def will_resume(self) -> bool:
        # A kept container is resumed, so the hub keeps its API token across stops.
        return not self.remove

    # ------------------------------------------------------------------ resources

    mem_limit = Union(
        [CallableTrait(), ByteSpecification()],
        default_value=None,
        allow_none=True,
        help="""Memory limit of the container (Docker `Memory`): bytes, or a string with suffix
        K, M, G or T. Unset (the default) or 0 sends no limit. A callable `f(spawner)` is
        evaluated at every start. Negative, NaN or infinite values are refused.

        Example: `c.Spawner.mem_limit = "2G"`
        """,
    ).tag(config=True)

    mem_guarantee = Union(
        [CallableTrait(), ByteSpecification()],
        default_value=None,
        allow_none=True,
        help="""Memory reservation of the container (Docker `MemoryReservation`, a soft limit the
        kernel reclaims down to under memory pressure). Same syntax as `mem_limit`.

        Example: `c.Spawner.mem_guarantee = "512M"`
        """,
    ).tag(config=True)

    cpu_limit = Union(
        [CallableTrait(), Float(allow_none=True)],
        default_value=None,
        allow_none=True,
        help="""CPU limit in cores, as Docker `CpuQuota` over `CpuPeriod` (100 000 µs, or the
        `cpu_period` of `extra_host_config`). Unset or 0 sends no limit. A callable
        `f(spawner)` is evaluated at every start.

        Example: `c.Spawner.cpu_limit = 1.5`
        """,
    ).tag(config=True)

    # ------------------------------------------------------------------ networking

    network_name = Unicode(
        "bridge",
        help="""Docker network the container joins (its `NetworkMode`).

        With a user-defined network the hub connects to the container's IP on it
        (`use_internal_ip` defaults to True), which needs the hub on the same network.

        Example: `c.DockerSpawner.network_name = "jupyterhub"`
        """,
    ).tag(config=True)

    use_internal_ip = Bool(
        help="""Connect to the container's IP on `network_name` instead of a published port.

        Defaults to True when `network_name` is a user-defined network, False for `bridge` and
        `host`. With False the server port is published on `host_ip` on a random host port.

        Example: `c.DockerSpawner.use_internal_ip = True`
        """,
    ).tag(config=True)

    @default("use_internal_ip")
    def _use_internal_ip_default(self) -> bool:
        return self.network_name not in {"bridge", "host"}

    use_internal_hostname = Bool(
        help="""Connect to the container by its name (`internal_hostname`) and `port`, instead of
        an IP address. Takes precedence over `use_internal_ip`.

        The hub must resolve container names: it runs in a container on the same user-defined
        `network_name` (Docker's DNS does not serve the default `bridge` network). Defaults to
        True with `c.JupyterHub.internal_ssl`, whose server certificates name the container
        (`ssl_alt_names`), False otherwise.

        Example: `c.DockerSpawner.use_internal_hostname = True`
        """,
    ).tag(config=True)

    @default("use_internal_hostname")
    def _use_internal_hostname_default(self) -> bool:
        return bool(self.internal_ssl)

    @property
    def internal_hostname(self) -> str:
        """The name the hub reaches the container by with `use_internal_hostname`."""
        return self.object_name

    @default("ssl_alt_names")
    def _ssl_alt_names_default(self) -> list[str]:
        # With internal SSL the server's certificate must name the host the hub connects to.
        return ["DNS:" + self.internal_hostname]

    host_ip = Unicode(
        help="""Host interface the server port is published on when `use_internal_ip` is False.

        Default: the host of `DOCKER_HOST` when it is a `tcp://` URL, else `127.0.0.1`, so
        servers are not exposed beyond the machine. `0.0.0.0` publishes on every interface
        (the hub then connects through the Docker host's name).

        Example: `c.DockerSpawner.host_ip = "0.0.0.0"`
        """,
    ).tag(config=True)

    @default("host_ip")
    def _host_ip_default(self) -> str:
        docker_host = os.environ.get("DOCKER_HOST", "")
        if docker_host.startswith("tcp://"):
            return urlparse(docker_host).hostname or "127.0.0.1"
        return "127.0.0.1"

    links = Dict(
        help="""Legacy Docker links `{container_name: alias}`.

        Example: `c.DockerSpawner.links = {"postgres": "db"}`
        """,
    ).tag(config=True)

    # ------------------------------------------------------------------ pass-through

    extra_create_kwargs = Union(
        [CallableTrait(), Dict()],
        help="""Extra settings of the container create request, deep-merged over the computed
        ones: `labels` and `environment` add to rather than replace rustdocker's. Every string
        is templated leniently (`{username}` works; an unknown field is left as it is). May be
        a callable `f(spawner)`, possibly async.

        docker-py's `create_container` keywords are accepted as DockerSpawner configs use them
        (`user`, `labels`, `environment`, `working_dir`, `entrypoint`, `hostname`,
        `healthcheck`, `stop_signal`, `stop_timeout`, ...), and so are Engine API fields
        (`User`, `Labels`, ...). A `host_config` key holds raw Engine `HostConfig` fields, which
        the computed host config overrides. An unknown key is an error naming it.

        Example::

            c.DockerSpawner.extra_create_kwargs = {"user": "root", "labels": {"team": "{username}"}}
        """,
    ).tag(config=True)

    extra_host_config = Union(
        [CallableTrait(), Dict()],
        help="""Extra `HostConfig` settings, deep-merged over the computed ones: they win, except
        `network_mode`, which only replaces `network_name`. Its `cpu_period` is also the period
        `cpu_limit` is computed against. Templated leniently; may be a callable `f(spawner)`,
        possibly async (e.g. to give each user a different GPU).

        docker-py's `create_host_config` keywords are accepted with docker-py's conversions
        (`shm_size="1g"`, `mem_reservation`, `memswap_limit`, `cap_add`, `device_requests`,
        `ulimits`, `tmpfs`, `restart_policy`, `log_config`, `devices`, `sysctls`, `pids_limit`,
        `security_opt`, ...), and so are Engine API fields (`ShmSize`, `DeviceRequests`, ...)
        and docker-py's helper objects. An unknown key is an error naming it.

        Example::

            c.DockerSpawner.extra_host_config = {
                "shm_size": "1g",
                "device_requests": [{"count": -1, "capabilities": [["gpu"]]}],
            }
        """,
    ).tag(config=True)

    certs_volume_name = Unicode(
        "{prefix}ssl-{username}",
        help="""Named volume holding a user's internal-SSL certificates
        (`c.JupyterHub.internal_ssl = True`), mounted read-only at `/certs`. One per user,
        shared by their named servers, created and labelled by rustdocker and never deleted.
        Templated like `volumes`.

        Example: `c.DockerSpawner.certs_volume_name = "{prefix}-certs-{username}"`
        """,
    ).tag(config=True)

    move_certs_image = Unicode(
        "busybox:1.30.1",
        help="""Image of the short-lived helper container that copies the internal-SSL
        certificates into `certs_volume_name`. It is created but never started, so any small
        image works; it is pulled according to `pull_policy`.

        Example: `c.DockerSpawner.move_certs_image = "registry.example.org/busybox:1.36"`
        """,
    ).tag(config=True)

    post_start_cmd = UnicodeOrFalse(
        False,
        help="""A command run in the container (`docker exec`, as its default user, no shell)
        right after it starts, e.g. to fix permissions. It is split like a shell line, waited
        for, and counts against `start_timeout`. Its stdout is logged at DEBUG, its stderr and
        a non-zero exit code at WARNING; a failing command does not fail the spawn.

        Example: `c.DockerSpawner.post_start_cmd = "sh -c 'chmod 700 /home/jovyan/work'"`
        """,
    ).tag(config=True)

    # ------------------------------------------------------------------ rustdocker's own

    hub_id = Unicode(
        help="""Identity of this hub, stored in the `org.rustdocker.hub` label of every
        container and volume rustdocker creates, so several hubs can share one Docker engine and
        each finds exactly its own objects.

        Default: derived from the machine's hostname and the hub's database URL, stable across
        hub restarts.

        Example: `c.DockerSpawner.hub_id = "prod-hub"`
        """,
    ).tag(config=True)

    @default("hub_id")
    def _hub_id_default(self) -> str:
        db_url = ""
        try:
            from jupyterhub.app import JupyterHub

            if JupyterHub.initialized():
                db_url = JupyterHub.instance().db_url
        except Exception:  # pragma: no cover - only outside a running hub
            db_url = ""
        if db_url.startswith("sqlite:///") and not db_url.startswith("sqlite:////"):
            db_url = "sqlite:///" + os.path.abspath(db_url[len("sqlite:///") :])
        seed = f"{socket.gethostname()}|{db_url or os.getcwd()}"
        return hashlib.sha256(seed.encode()).hexdigest()[:16]

    docker_host = Unicode(
        "",
        help="""Docker engine to use, e.g. `unix:///var/run/docker.sock` or `tcp://10.0.0.5:2375`.

        Empty (the default) uses `DOCKER_HOST`, then the local socket.

        Example: `c.DockerSpawner.docker_host = "unix:///run/user/1000/docker.sock"`
        """,
    ).tag(config=True)

    tls_config = Dict(
        help="""TLS settings for a remote engine (`dockerd --tlsverify`), as docker-py's
        `TLSConfig` keywords: `client_cert=(cert_path, key_path)` and `ca_cert=path` (or
        `verify=path`). The engine's certificate is verified against that CA and the client
        certificate is presented, so all three files are needed. `DOCKER_TLS_VERIFY` with
        `DOCKER_CERT_PATH` (`ca.pem`, `cert.pem`, `key.pem`) overrides this, and `client_kwargs`
        override both.

        Example::

            c.DockerSpawner.tls_config = {
                "client_cert": ("/etc/docker-client/cert.pem", "/etc/docker-client/key.pem"),
                "ca_cert": "/etc/docker-client/ca.pem",
            }
        """,
    ).tag(config=True)

    client_kwargs = Dict(
        help="""Connection settings, applied last: `base_url` (the Docker host), `tls` (a dict of
        `TLSConfig` keywords, a docker-py `TLSConfig` object, or False) and `timeout` (seconds).
        Other docker-py `APIClient` keywords (`version`, `user_agent`, ...) are accepted and
        ignored: the API version is always negotiated with the engine.

        Example: `c.DockerSpawner.client_kwargs = {"base_url": "tcp://10.0.0.5:2376"}`
        """,
    ).tag(config=True)

    docker_timeout = Float(
        120.0,
        help="""Seconds one Docker API request may take before it fails (pulls stream, so a long
        pull is not cut short while data flows).

        Example: `c.DockerSpawner.docker_timeout = 300`
        """,
    ).tag(config=True)

    stop_timeout = Int(
        None,
        allow_none=True,
        help="""Seconds `docker stop` waits after SIGTERM before SIGKILL. None (the default)
        uses the container's own setting (Docker's default is 10 s).

        Example: `c.DockerSpawner.stop_timeout = 30`
        """,
    ).tag(config=True)

    # ------------------------------------------------------------------ deprecated names

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

    # ------------------------------------------------------------------ base trait defaults

    @default("cmd")
    def _cmd_default(self) -> None:
        # The image's own CMD, as DockerSpawner.
        return None

    @default("port")
    def _port_default(self) -> int:
        return 8888

    @default("ip")
    def _ip_default(self) -> str:
        return "0.0.0.0"

    @default("env_keep")
    def _env_keep_default(self) -> list[str]:
        # Nothing of the hub's own environment leaks into users' containers.
        return []

    # ------------------------------------------------------------------ state

    object_type: ClassVar[str] = "container"
    #: The field of the engine's inspect reply holding the object's id.
    object_id_key: ClassVar[str] = "Id"
    object_id = Unicode("")
    _persisted_name = Unicode("")

    # The names the volume sources (`volumes`/`read_only_volumes` keys, `mounts` sources) got,
    # `{template: name}`, and the server name they were rendered for. Kept in state (keys
    # `volume_names`, `volume_names_server`) so that tools can find a server's volumes, and so
    # that a renamed server keeps its volumes: see `_volume_source`.
    _volume_names = Dict()
    _volume_names_server = Unicode(None, allow_none=True)

    @property
    def object_name(self) -> str:
        """The container name: the one recorded in state, else `name_template` rendered."""
        if self._persisted_name:
            return self._persisted_name
        return self._render_strict(self.name_template, "name_template")

    @property
    def container_id(self) -> str:
        return self.object_id

    @property
    def container_name(self) -> str:
        return self.object_name

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        # `container_id` is the key DockerSpawner < 0.10 wrote.
        self.object_id = state.get("container_id") or state.get("object_id", "") or ""
        self._persisted_name = state.get("object_name", "") or ""
        names = state.get("volume_names")
        server = state.get("volume_names_server")
        if isinstance(names, dict) and isinstance(server, str):
            self._volume_names = {str(k): str(v) for k, v in names.items()}
            self._volume_names_server = server
        else:
            self._volume_names = {}
            self._volume_names_server = None

    def get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = super().get_state()
        if self.object_id:
            state["object_id"] = self.object_id
            state["object_name"] = self.object_name
        if self._volume_names and self._volume_names_server is not None:
            state["volume_names"] = dict(self._volume_names)
            state["volume_names_server"] = self._volume_names_server
        return state

    # The base clear_state runs before every start; object_id/object_name deliberately survive
    # it, so the kept container is found again (as in DockerSpawner).

    # ------------------------------------------------------------------ templates

    @property
    def escaped_name(self) -> str:
        return str(self.escape(self.user.name))

    def template_namespace(self) -> dict[str, str]:
        servername = self.name or ""
        escaped_server = str(self.escape(servername.lower())) if servername else ""
        return {
            "username": self.escaped_name,
            "safe_username": self.escaped_name,
            "raw_username": self.user.name,
            "servername": escaped_server,
            "raw_servername": servername,
            "imagename": _core.imagename(self.image),
            "prefix": self.prefix,
        }

    def _render_strict(self, template: str, setting: str) -> str:
        try:
            return _core.format_template(template, self.template_namespace())
        except ValueError as e:
            raise ValueError(f"{type(self).__name__}.{setting}: {e}") from None

    def format_string(self, s: str) -> str:
        return self._render_strict(s, "notebook_dir/default_url")

    def _render_lenient(self, value: Any) -> Any:
        """DockerSpawner's `_render_templates`: every string in nested dicts (keys and values),
        lists and tuples is templated; a string that fails to render is left as it is."""
        if isinstance(value, str):
            return _core.format_template_lenient(value, self.template_namespace())
        if isinstance(value, dict):
            return {self._render_lenient(k): self._render_lenient(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._render_lenient(v) for v in value]
        return value

    # ------------------------------------------------------------------ volumes

    def _format_volume(self, template: str, setting: str) -> str:
        try:
            return str(self.format_volume_name(template, self))
        except (KeyError, ValueError, IndexError) as e:
            message = e.args[0] if e.args else e
            raise ValueError(f"{type(self).__name__}.{setting}: {message}") from None

    def _volumes_to_binds(
        self, volumes: dict[str, Any], binds: dict[str, dict[str, str]], mode: str, setting: str
    ) -> dict[str, dict[str, str]]:
        for source, target in volumes.items():
            entry_mode = mode
            propagation = None
            if isinstance(target, dict):
                if "bind" not in target:
                    raise ValueError(
                        f"{type(self).__name__}.{setting}[{source!r}] = {target!r} has no 'bind': "
                        "use {'bind': '/path/in/container', 'mode': 'rw'}"
                    )
                entry_mode = target.get("mode", mode)
                propagation = target.get("propagation")
                target = target["bind"]
            if not isinstance(target, str):
                raise ValueError(
                    f"{type(self).__name__}.{setting}[{source!r}] = {target!r} is not allowed: "
                    "use a container path or {'bind': path, 'mode': 'rw'|'ro'}"
                )
            bind = {"bind": self._format_volume(target, setting), "mode": entry_mode}
            if propagation:
                bind["propagation"] = propagation
            binds[self._volume_source(source, setting)] = bind
        return binds

    def _volume_source(self, template: str, setting: str) -> str:
        """The name of a volume source (a named volume or host path) of `setting`.

        Rendered from the template, except after the server was renamed (by `rename`, or by
        JupyterHub 6's `allow_existing_invalid_named_servers = "autorename"`): then the name
        recorded for the server's old name is kept, so `{servername}` in a template does not
        move the server to new, empty volumes. Changing the template itself gives new names.
        """
        if (
            self._volume_names_server is not None
            and self._volume_names_server != (self.name or "")
            and template in self._volume_names
        ):
            return str(self._volume_names[template])
        return self._format_volume(template, setting)

    def _volume_sources(self) -> dict[str, str]:
        """`{template: name}` of every templated volume source."""
        sources: dict[str, str] = {}
        for setting in ("volumes", "read_only_volumes"):
            for template in getattr(self, setting):
                sources[template] = self._volume_source(template, setting)
        for mount in self.mounts:
            for key in ("source", "Source"):
                template = mount.get(key)
                if isinstance(template, str) and template:
                    sources[template] = self._volume_source(template, "mounts")
        return sources

    def _record_volume_names(self) -> None:
        """Note the volume names of this start in the state."""
        sources = self._volume_sources()
        if self._volume_names_server is not None and self._volume_names_server != (self.name or ""):
            # Renamed: the old names stay, with the name they were rendered for.
            self._volume_names = {**self._volume_names, **sources}
        else:
            self._volume_names = sources
            self._volume_names_server = self.name or ""

    @property
    def volume_binds(self) -> dict[str, dict[str, str]]:
        """`{source: {"bind": target, "mode": mode[, "propagation": p]}}` after templating."""
        binds = self._volumes_to_binds(self.volumes, {}, "rw", "volumes")
        if self.internal_ssl:
            # The certificates move_certs staged, read-only where the environment points.
            certs = self._format_volume(self.certs_volume_name, "certs_volume_name")
            binds[certs] = {"bind": "/certs", "mode": "ro"}
        return self._volumes_to_binds(self.read_only_volumes, binds, "ro", "read_only_volumes")

    async def move_certs(self, paths: dict[str, str]) -> dict[str, str]:
        """Stages the internal-SSL certificates JupyterHub made on its own host into the
        user's certs volume (through a helper container, so the engine may be remote), and
        returns where the server finds them: `/certs/<file>`."""
        volume = self._format_volume(self.certs_volume_name, "certs_volume_name")
        # A few kilobytes of the hub's own files: read in place rather than in a thread.
        archive, moved = _tar_for_certs(paths)
        client = await self.docker_client()
        await client.stage_files(
            volume,
            "/certs",
            self.move_certs_image,
            self.pull_policy.lower() in ("ifnotpresent", "always"),
            f"{self.object_name}-certs-{secrets.token_hex(4)}",
            self._labels(),
            archive,
        )
        self.log.info("Staged %d certificate files in volume %s", len(moved), volume)
        return moved

    @property
    def volume_mount_points(self) -> list[str]:
        return sorted(b["bind"] for b in self.volume_binds.values())

    def _rendered_mounts(self) -> list[dict[str, Any]]:
        def render(value: Any) -> Any:
            if isinstance(value, str):
                return self._format_volume(value, "mounts")
            if isinstance(value, dict):
                return {k: render(v) for k, v in value.items()}
            return value

        rendered = []
        for mount in self.mounts:
            out = render(dict(mount))
            for key in ("source", "Source"):
                if isinstance(mount.get(key), str) and mount[key]:
                    out[key] = self._volume_source(mount[key], "mounts")
            rendered.append(out)
        return rendered

    @property
    def mount_binds(self) -> list[dict[str, Any]]:
        """`mounts` after templating, as Engine-API `Mount` objects (`Target`, `Source`, `Type`,
        `ReadOnly`, `BindOptions`, ...), the form of docker-py's `Mount`. DockerSpawner <= 14.0
        had this property; the container is created with what it returns, so a subclass may
        override it."""
        mounts = self._rendered_mounts()
        if not mounts:
            return []
        probe = {"name": "probe", "image": "probe", "port": 1, "mounts": mounts}
        try:
            body = json.loads(_core.build_create_body(json.dumps(probe)))
        except ValueError as e:
            raise ValueError(f"{type(self).__name__}.mounts: {e}") from None
        return list(body["HostConfig"]["Mounts"])

    def _mounts_without_conflicts(
        self, volume_binds: dict[str, dict[str, str]]
    ) -> list[dict[str, Any]]:
        """`mounts`, less any entry whose target a `volumes` entry already mounts.

        Docker refuses two mounts at one path ("Duplicate mount point"). The persistence guide's
        example sets both for the notebook directory; the named volume is kept because the
        engine gives it the image's ownership of that directory, so the user can write to it,
        which a bind-mounted host directory created by root would not allow.
        """
        taken = {b["bind"].rstrip("/") or "/": source for source, b in volume_binds.items()}
        kept = []
        for mount in self.mount_binds:
            target = str(mount.get("target", mount.get("Target", ""))).rstrip("/") or "/"
            if target in taken:
                self.log.warning(
                    "DockerSpawner.mounts entry %s is skipped: %s is already mounted there "
                    "from DockerSpawner.volumes (%r)",
                    mount,
                    target,
                    taken[target],
                )
                continue
            kept.append(mount)
        return kept

    # ------------------------------------------------------------------ environment

    async def _resolve(self, name: str) -> Any:
        value = getattr(self, name)
        if callable(value):
            value = await _maybe_await(value(self))
        return value

    def get_env(self) -> dict[str, str]:
        env: dict[str, str] = super().get_env()
        env["JUPYTER_IMAGE_SPEC"] = self.image
        # Callables are resolved at start; the base class would stringify the function. An
        # `environment` entry of the same name wins, as over every other variable.
        for key, attr in (
            ("MEM_LIMIT", "mem_limit"),
            ("MEM_GUARANTEE", "mem_guarantee"),
            ("CPU_LIMIT", "cpu_limit"),
        ):
            if key in self.environment:
                continue
            env.pop(key, None)
            value = self._resolved.get(attr)
            if value:
                env[key] = str(value)
        return {str(k): str(v) for k, v in env.items()}

    # mem_limit, mem_guarantee and cpu_limit as resolved for the current start.
    _resolved = Dict()

    # ------------------------------------------------------------------ the spec

    def _labels(self) -> dict[str, str]:
        return {
            LABEL_MANAGED_BY: "rustdocker",
            LABEL_HUB: self.hub_id,
            LABEL_USER: self.user.name,
            LABEL_SERVER: self.name or "",
        }

    def create_kwargs_defaults(self) -> dict[str, Any]:
        """Container create settings that apply unless `extra_create_kwargs` sets the same one,
        in docker-py keyword form (`user`, `working_dir`, ...). None here; `SystemUserSpawner`
        gives the user's uid and home directory."""
        return {}

    # docker-py keyword -> Engine field, for the settings `create_kwargs_defaults` may give.
    _CREATE_FIELDS: ClassVar[dict[str, str]] = {"user": "User", "working_dir": "WorkingDir"}

    def _with_create_defaults(self, extra_create: dict[str, Any]) -> dict[str, Any]:
        # `extra_create_kwargs` (or a callable's result) is not mutated: the defaults fill in
        # what it leaves unset, under either spelling of the key.
        merged = dict(extra_create)
        for key, value in self.create_kwargs_defaults().items():
            if key not in merged and self._CREATE_FIELDS.get(key, key) not in merged:
                merged[key] = value
        return merged

    async def build_spec(self) -> dict[str, Any]:
        """The plain dict handed to the Rust core. Resolves callables; validates values."""
        self._resolved = {}
        mem_limit = memory_bytes(await self._resolve("mem_limit"), "DockerSpawner.mem_limit")
        mem_guarantee = memory_bytes(
            await self._resolve("mem_guarantee"), "DockerSpawner.mem_guarantee"
        )
        cpu_limit = await self._resolve("cpu_limit")
        if cpu_limit is not None:
            if isinstance(cpu_limit, bool) or not isinstance(cpu_limit, int | float):
                raise TraitError(
                    f"DockerSpawner.cpu_limit = {cpu_limit!r} is not allowed: use a number of cores"
                )
            if not math.isfinite(cpu_limit) or cpu_limit < 0:
                raise TraitError(
                    f"DockerSpawner.cpu_limit = {cpu_limit!r} is not allowed: "
                    "use a finite number of cores >= 0"
                )
        self._resolved = {
            "mem_limit": mem_limit,
            "mem_guarantee": mem_guarantee,
            "cpu_limit": cpu_limit,
        }
        extra_create = self._render_lenient(await self._resolve("extra_create_kwargs") or {})
        extra_host = self._render_lenient(await self._resolve("extra_host_config") or {})
        for setting, value in (
            ("extra_create_kwargs", extra_create),
            ("extra_host_config", extra_host),
        ):
            if not isinstance(value, dict):
                raise TraitError(f"DockerSpawner.{setting} returned {value!r}: a dict is required")
        extra_create = self._with_create_defaults(extra_create)
        labels = self._labels()
        volume_binds = self.volume_binds
        mounts = self._mounts_without_conflicts(volume_binds)
        binds = [
            {
                "source": source,
                "target": b["bind"],
                "mode": b.get("mode", "rw"),
                "propagation": b.get("propagation"),
            }
            for source, b in volume_binds.items()
        ]
        cmd = self.cmd
        return {
            "name": self.object_name,
            "image": self.image,
            "pull_policy": self.pull_policy.lower(),
            "cmd": list(cmd) if cmd else None,
            "args": list(self.get_args()),
            "env": self.get_env(),
            "labels": labels,
            "volume_labels": labels,
            "port": int(self.port),
            "binds": binds,
            "mounts": mounts,
            "mem_limit": mem_limit,
            "mem_guarantee": mem_guarantee,
            "cpu_limit": cpu_limit,
            "network_name": self.network_name,
            "use_internal_ip": self.use_internal_ip,
            "host_ip": self.host_ip,
            "links": dict(self.links),
            "remove": self.remove,
            "extra_create": extra_create,
            "extra_host_config": extra_host,
        }

    # ------------------------------------------------------------------ names across servers

    async def _prepare_start(self) -> None:
        """start()'s steps before the spec: the image option, then the names."""
        await self._apply_image_option()
        self._record_volume_names()
        self._check_names_not_taken()

    def _check_names_not_taken(self) -> None:
        """Refuse to start on another server's container or volumes.

        A renamed server keeps its volumes' names (`_volume_source`); a new server given the
        old name would otherwise mount them, and with a name recorded in state adopt another
        server's kept container. The other servers' recorded names are in the hub's database.
        """
        orm_user = getattr(self.user, "orm_user", None)
        others = getattr(orm_user, "orm_spawners", None)
        if not isinstance(others, Mapping):
            return
        mine = self.name or ""
        container = self.object_name
        # Only volumes meant to be each server's own: one volume per user is shared by design.
        volumes = {
            template: name
            for template, name in self._volume_sources().items()
            if self._names_each_server(template)
        }
        for other_name, orm_spawner in others.items():
            state = getattr(orm_spawner, "state", None)
            if other_name == mine or not isinstance(state, dict):
                continue
            if state.get("object_name") == container:
                raise refusal(
                    f"Server {mine!r} cannot start: its container {container!r} belongs to the "
                    f"server {other_name!r}. Choose another server name (and check that "
                    "name_template gives each server its own container).",
                    reason="name-conflict",
                    status_code=409,
                )
            recorded = state.get("volume_names")
            if not isinstance(recorded, dict):
                continue
            for template, name in volumes.items():
                if recorded.get(template) == name:
                    old = state.get("volume_names_server")
                    was = f" (renamed from {old!r})" if old not in (None, other_name) else ""
                    raise refusal(
                        f"Server {mine!r} cannot start: the volume {name!r} (template "
                        f"{template!r}) holds the files of the server {other_name!r}{was}. "
                        "Choose another server name.",
                        reason="name-conflict",
                        status_code=409,
                    )

    def _names_each_server(self, template: str) -> bool:
        """Whether `template` gives another server another name (through `{servername}`, or a
        `format_volume_name` reading the server's name)."""
        try:
            here = str(self.format_volume_name(template, self))
            there = str(self.format_volume_name(template, _AsServer(self, "rustdocker-probe")))
        except Exception:
            return False
        return here != there

    async def rename(self, old_name: str, new_name: str) -> None:
        """Called by JupyterHub 6 before a stopped server is renamed; raising vetoes it.

        The volumes keep their names (`{servername}` in a template keeps rendering the old
        name), so the server keeps its files. The container is not kept: it was created with
        the old server's URL and OAuth settings and would not serve the new one. A container
        kept by `remove = False` therefore vetoes the rename, because files outside the volumes
        live in it; once it is removed (`docker rm`), the rename proceeds and the next start
        creates a container named after the new name. With `remove = True` a leftover stopped
        container is removed, as the next start would.
        """
        base = getattr(super(), "rename", None)
        if base is not None:
            await base(old_name, new_name)
        if self.object_id or self._persisted_name:
            client = await self.docker_client()
            container = self.object_id or self.object_name
            found = await client.container_status(container) is not None
            if found and self.remove:
                # Not forced: a container that is somehow running vetoes the rename instead.
                await client.remove_container(container, force=False)
            elif found:
                raise web.HTTPError(
                    409,
                    "%s",
                    f"Cannot rename {self._log_name} to {new_name!r}: its stopped container "
                    f"{self.object_name!r} was created for the name {old_name!r} and holds the "
                    "files outside its volumes (DockerSpawner.remove = False). An administrator "
                    f"can remove it (docker rm {self.object_name}) to allow the rename; the "
                    "volumes are kept.",
                )
            self.object_id = ""
            self._persisted_name = ""
        self._record_volume_names()  # under the old name, which is self.name until the hub commits
        if self.orm_spawner is not None:
            # The hub commits the orm row after this returns, but does not save the state itself.
            self.orm_spawner.state = self.get_state()
        self.log.info(
            "Renaming %s to %r: volumes keep their names %s",
            self._log_name,
            new_name,
            sorted(set(self._volume_names.values())),
        )

    async def delete_forever(self) -> None:
        """Called when the user or this named server is deleted: rustdocker deletes nothing.

        A container kept by `remove = False`, the volumes and the host directories stay; the
        log names them so that an administrator can remove them.
        """
        kept = []
        if self.object_id or self._persisted_name:
            kept.append(f"container {self.object_name}")
        try:
            names = self._volume_names or self._volume_sources()
        except Exception:  # a broken template must not block the deletion
            names = self._volume_names
        kept += [f"volume {name}" for name in sorted(set(names.values()))]
        self.log.info(
            "Deleting %s: nothing is removed; kept: %s",
            self._log_name,
            ", ".join(kept) if kept else "nothing recorded",
        )

    # ------------------------------------------------------------------ lifecycle

    def _connection(self) -> tuple[str | None, float, tuple[str, str, str] | None]:
        """(host, timeout, (ca, cert, key) or None) from the settings and the environment, in
        DockerSpawner's order: tls_config, then DOCKER_TLS_VERIFY/DOCKER_CERT_PATH, then
        client_kwargs."""
        host = self.docker_host or os.environ.get("DOCKER_HOST") or None
        timeout = self.docker_timeout
        tls = _tls_files(self.tls_config, "tls_config") if self.tls_config else None
        if os.environ.get("DOCKER_TLS_VERIFY", "") not in ("", "0"):
            cert_path = os.environ.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker")
            ca, cert, key = (os.path.join(cert_path, f) for f in ("ca.pem", "cert.pem", "key.pem"))
            tls = (ca, cert, key)
        kwargs = self.client_kwargs
        if kwargs.get("base_url"):
            host = str(kwargs["base_url"])
        if "tls" in kwargs:
            tls = _tls_files(kwargs["tls"], "client_kwargs['tls']") if kwargs["tls"] else None
        if kwargs.get("timeout"):
            timeout = float(kwargs["timeout"])
        if host and host.startswith("https://"):
            host = "tcp://" + host[len("https://") :]
        return host, timeout, tls

    async def docker_client(self) -> _core.DockerClient:
        """The hub process's shared client for this spawner's engine."""
        return await _clients.get(*self._connection())

    async def _start_spec(self) -> dict[str, Any]:
        """start()'s first steps, shared by the spawner classes: take a turn on the event loop
        (see `_LoopShare`), apply the image option and names, build the spec."""
        await _loop_share.turn()
        await self._prepare_start()
        return await self.build_spec()

    @staticmethod
    async def _until_done(client: _core.DockerClient, name: str, operation: Awaitable[_T]) -> _T:
        """Awaits a core start; if JupyterHub's start_timeout cancels it, waits until the core
        has undone the half-done start, so the next start finds a clean slate."""
        try:
            return await operation
        except asyncio.CancelledError:
            await client.wait_idle(name)
            raise

    async def start(self) -> tuple[str, int]:
        spec = await self._start_spec()
        client = await self.docker_client()
        name = spec["name"]
        result = await self._until_done(client, name, client.start_server(json.dumps(spec)))
        self.object_id = result.id
        self._persisted_name = result.name
        if result.created:
            self.log.info("Created container %s (id %s) from %s", name, result.id[:12], self.image)
        else:
            self.log.info("Found existing container %s (id %s)", name, result.id[:12])
            if result.api_token:
                # The kept container still has the token it was created with.
                self.api_token = result.api_token
        if self.post_start_cmd:
            await self.post_start_exec()
        if type(self).get_ip_and_port is not DockerSpawner.get_ip_and_port:
            # A subclass that chooses the address itself (DockerSpawner's documented hook).
            return await self.get_ip_and_port()
        if self.use_internal_hostname:
            # Docker's DNS resolves the container name on a user-defined network, and the
            # internal-SSL certificate names it (ssl_alt_names).
            return (self.internal_hostname, int(self.port))
        return (result.ip, result.port)

    async def get_ip_and_port(self) -> tuple[str, int]:
        """Where the running server is reached: `(ip, port)`, read from the engine.

        DockerSpawner's hook: a subclass that overrides it decides the address `start()`
        returns.
        """
        address = await self._engine_address()
        if address is None:
            raise RuntimeError(f"container {self.object_name!r} is not running")
        return address

    async def _engine_address(self) -> tuple[str, int] | None:
        """The running container's `(ip, port)` as the engine shows it now, or None."""
        client = await self.docker_client()
        return await client.container_address(
            self.object_id or self.object_name,
            int(self.port),
            self.network_name,
            self.use_internal_ip,
            self.host_ip,
        )

    async def get_command(self) -> list[str]:
        """The container's command: `cmd`, or the image's own CMD, followed by `args`."""
        cmd = list(self.cmd) if self.cmd else None
        if cmd is None:
            client = await self.docker_client()
            cmd = await client.image_cmd(self.image) or []
        return cmd + list(self.get_args())

    async def post_start_exec(self) -> None:
        """Runs `post_start_cmd` in the container and logs what it did."""
        cmd = str(self.post_start_cmd)
        client = await self.docker_client()
        exit_code, stdout, stderr = await client.exec_run(self.object_name, shlex.split(cmd))
        name = self.object_name
        if stdout:
            self.log.debug(
                "post_start stdout in %s:\n  %s", name, stdout.rstrip().replace("\n", "\n  ")
            )
        if stderr:
            self.log.warning(
                "post_start stderr in %s:\n  %s", name, stderr.rstrip().replace("\n", "\n  ")
            )
        if exit_code:
            self.log.warning("post_start_cmd %r in %s exited with code %s", cmd, name, exit_code)

    async def get_url(self) -> str:
        """The server's URL, re-read from the engine: after a hub restart the container may have a
        new IP (a restarted engine) or port, and the stored URL would point nowhere."""
        if self.server is None:
            return str(await super().get_url())
        address = await self._engine_address()
        if address is None:
            return str(await super().get_url())
        ip, port = address
        if self.use_internal_hostname:
            # As start() returns it: the name on the container's network, the server's own port.
            ip, port = self.internal_hostname, int(self.port)
        proto = "https" if self.internal_ssl else "http"
        return f"{proto}://{fmt_ip_url(ip)}:{port}{self.server.base_url}"

    async def stop(self, now: bool = False) -> None:
        client = await self.docker_client()
        target = self.object_id or self.object_name
        # `now` is ignored, as in DockerSpawner: killing without the grace period loses
        # whatever the server would have saved on SIGTERM.
        await client.stop_server(target, timeout=self.stop_timeout, remove=self.remove)
        if self.remove:
            self.object_id = ""
        self.clear_state()

    async def poll(self) -> int | None:
        client = await self.docker_client()
        key = self.object_id or self.object_name
        # A dict lookup in the hub-wide events-driven cache; an inspect only when the cache is
        # not synced or does not follow this container (one rustdocker did not create).
        status = client.cached_status(key)
        if status is None:
            status = await client.container_status(key)
        if status is None:
            return 0
        if status.running:
            return None
        return int(status.exit_code)

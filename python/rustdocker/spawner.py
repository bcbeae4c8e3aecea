"""rustdocker's spawner: DockerSpawner's configuration, a Rust core underneath.

This module holds the traits, the spawner's state and the orchestration. Every Docker Engine call,
the template rendering and the container spec live in the native module ``rustdocker._core``.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import math
import os
import socket
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import urlparse

from jupyterhub.spawner import Spawner
from jupyterhub.traitlets import Callable as CallableTrait
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
    Unicode,
    Union,
    default,
    validate,
)

from . import _core
from .traits import ByteSpecification, memory_bytes
from .volumenamingstrategy import default_format_volume_name

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


class _ClientPool:
    """One connected, version-negotiated Docker client per (host, timeout) per hub process.

    A client is not tied to an event loop, so it is cached as an object. Two spawners that race
    to make the first connection may both connect; the first to finish is kept.
    """

    def __init__(self) -> None:
        self._clients: dict[tuple[str | None, float], _core.DockerClient] = {}

    async def get(self, host: str | None, timeout: float) -> _core.DockerClient:
        key = (host, timeout)
        client = self._clients.get(key)
        if client is None:
            client = await _core.DockerClient.connect(host, timeout)
            client = self._clients.setdefault(key, client)
        return client


_clients = _ClientPool()


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

        Example: `c.DockerSpawner.image = "quay.io/jupyter/scipy-notebook:2024-12-02"`
        """,
    ).tag(config=True)

    @default("image")
    def _image_default(self) -> str:
        return _default_image()

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
    object_id = Unicode("")
    _persisted_name = Unicode("")

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

    def get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = super().get_state()
        if self.object_id:
            state["object_id"] = self.object_id
            state["object_name"] = self.object_name
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
            binds[self._format_volume(source, setting)] = bind
        return binds

    @property
    def volume_binds(self) -> dict[str, dict[str, str]]:
        """`{source: {"bind": target, "mode": mode[, "propagation": p]}}` after templating."""
        binds = self._volumes_to_binds(self.volumes, {}, "rw", "volumes")
        return self._volumes_to_binds(self.read_only_volumes, binds, "ro", "read_only_volumes")

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

        return [render(dict(m)) for m in self.mounts]

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
        for mount in self._rendered_mounts():
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
        # Callables are resolved at start; the base class would stringify the function.
        for key, attr in (
            ("MEM_LIMIT", "mem_limit"),
            ("MEM_GUARANTEE", "mem_guarantee"),
            ("CPU_LIMIT", "cpu_limit"),
        ):
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

    # ------------------------------------------------------------------ lifecycle

    async def docker_client(self) -> _core.DockerClient:
        """The hub process's shared client for this spawner's engine."""
        return await _clients.get(self.docker_host or None, self.docker_timeout)

    async def start(self) -> tuple[str, int]:
        spec = await self.build_spec()
        client = await self.docker_client()
        name = spec["name"]
        try:
            result = await client.start_server(json.dumps(spec))
        except asyncio.CancelledError:
            # JupyterHub's start_timeout cancelled us: the core undoes the half-done start;
            # wait for that so the next start finds a clean slate.
            await client.wait_idle(name)
            raise
        self.object_id = result.id
        self._persisted_name = result.name
        if result.created:
            self.log.info("Created container %s (id %s) from %s", name, result.id[:12], self.image)
        else:
            self.log.info("Found existing container %s (id %s)", name, result.id[:12])
            if result.api_token:
                # The kept container still has the token it was created with.
                self.api_token = result.api_token
        return (result.ip, result.port)

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

"""The container's own settings: resources, networking, Docker pass-through and what happens
around its start and stop.

`resolve_limits()` evaluates the resource settings for one start (callables included) through
the core's one check of each value (`_core.memory_bytes`, `_core.cpu_cores`).
"""

from __future__ import annotations

import contextlib
import inspect
import ipaddress
import re
import string
from typing import Any
from urllib.parse import urlsplit

from jupyterhub.traitlets import Callable as CallableTrait
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
    observe,
    validate,
)

from . import _core
from .imagechoice import maybe_await
from .naming import Naming
from .traits import ByteSpecification, UnicodeOrFalse

#: What a template field may bring into a network alias (see `_checked_alias`).
_ALIAS_FIELD = re.compile(r"[A-Za-z0-9_-]*")

#: Resource settings -> the environment variable JupyterHub sets from each.
LIMIT_ENV = {"mem_limit": "MEM_LIMIT", "mem_guarantee": "MEM_GUARANTEE", "cpu_limit": "CPU_LIMIT"}


class ContainerSettings(Naming):
    """Resources, networking and pass-through settings of the user's container."""

    remove = Bool(
        False,
        help="""Remove the container when the server stops (and a leftover one at start, such
        as a container that exited on its own), with its anonymous volumes (those an image's
        `VOLUME` makes, which nothing else would ever reuse).

        With `False` (the default) a stopped container is kept and restarted at the next start,
        so changes outside the mounted volumes survive; a kept container made from another
        configuration is handled as `on_config_change` says. Named volumes and host directories
        are never removed either way. Only this server's own container is ever removed (see
        `hub_id`).

        Example: `c.DockerSpawner.remove = True`
        """,
    ).tag(config=True)

    on_config_change = CaselessStrEnum(
        ["warn", "recreate"],
        default_value="warn",
        help="""What a start does with a kept container (`remove = False`) that was made from
        another configuration than the current one: another image, command, environment,
        limits, volumes, labels or any other create setting.

        rustdocker records on each container what it was made from (a digest of its spec, and
        one hash per field, in the labels `org.rustdocker.spec-digest` and
        `org.rustdocker.spec-fields`; the hub's API token is left out, and so are the values
        of environment variables and of volume driver options: the environment is compared
        with the container's own) and compares at the next start. A changed image always
        makes the container anew: the user asked for another image. For any other change:

        - `"warn"` (the default): the container is resumed as it is, and the hub's log names
          the fields that changed (`Env.FOO`, `HostConfig.Memory`, ...; never their values);
        - `"recreate"`: the container is removed and made anew from the current configuration.

        Making a container anew keeps its named volumes and host directories, and its anonymous
        volumes (an image's `VOLUME`) are left in place, not mounted again; every other file
        in the old container is lost. A container that is still running is never recreated
        (that would kill its user's work): it is at a start after it stops. A container made
        by DockerSpawner or by a rustdocker without this record is compared by its image only
        and otherwise resumed as it is (the log says so); remove it once (`docker rm`) to have
        it made anew, with a record. A container without rustdocker's labels that the server's
        state does not record (it only has the name) is never removed: it may not be this
        server's.

        Example: `c.DockerSpawner.on_config_change = "recreate"`
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
        help="""Docker network the container joins (its `NetworkMode`), and the one the hub
        reaches the server on.

        With a user-defined network the hub connects to the container's IP on it
        (`use_internal_ip` defaults to True), which needs the hub on the same network.
        Default: the first entry of `networks` when that is set, else `bridge`. Set to another
        network than the first of `networks`, the start is refused with an error naming both.

        Example: `c.DockerSpawner.network_name = "jupyterhub"`
        """,
    ).tag(config=True)

    @default("network_name")
    def _network_name_default(self) -> str:
        return str(self.networks[0]["name"]) if self.networks else "bridge"

    networks = List(
        Union([Unicode(), Dict()]),
        help="""Every Docker network the container joins, each a name or a dict
        `{"name": ..., "aliases": [...]}`. The first is the network the hub reaches the
        server on (`network_name` follows it; `use_internal_ip` then defaults to True for a
        user-defined network). Empty (the default): `network_name` alone.

        All are joined before the server starts: the first when the container is created,
        the others right after (Docker 20.10's API takes one network at create); if one is
        missing, the start fails with an error naming it and the container is removed. A kept
        container (`remove = False`) joins the networks it is not on yet at its next start,
        and leaves none. Aliases are extra DNS names of the container on that network, for
        other containers there (a database, a proxy); they are templates, with the fields of
        `name_template` (`{username}` escaped). An alias answers for its name to every container
        on the network, so a field may bring only letters, digits, `-` and `_` into it (a raw
        name with a dot, say `{raw_username}` of a user `pypi.org`, fails the start), and an
        alias equal to the hub's host name is refused; still, `{username}` alone lets a user
        named `db` answer as `db`: give aliases a prefix or suffix no service on the network
        uses. Docker gives aliases only on user-defined networks, and `host` or `none` cannot
        be combined with others: both are refused.
        SwarmSpawner attaches a service to the same list (its networks must be swarm-scoped,
        e.g. overlay networks).

        Example::

            c.DockerSpawner.networks = [
                {"name": "jupyterhub-net", "aliases": ["{username}-nb"]},
                "data-net",
            ]
        """,
    ).tag(config=True)

    @validate("networks")
    def _validate_networks(self, proposal: Any) -> list[dict[str, Any]]:
        """Each entry as `{"name": str, "aliases": [str, ...]}`; `TraitError` names the entry."""
        entries = []
        for i, entry in enumerate(proposal["value"]):
            where = f"{type(self).__name__}.networks[{i}] = {entry!r} is not allowed"
            if isinstance(entry, str):
                entry = {"name": entry}
            unknown = sorted(str(k) for k in entry if k not in {"name", "aliases"})
            if unknown:
                raise TraitError(f"{where}: unknown keys {unknown}; use 'name' and 'aliases'")
            name = entry.get("name")
            if not isinstance(name, str) or not name:
                raise TraitError(f"{where}: 'name' must be the name of a Docker network")
            aliases = entry.get("aliases", [])
            if not isinstance(aliases, list | tuple) or not all(
                isinstance(a, str) and a for a in aliases
            ):
                raise TraitError(f"{where}: 'aliases' must be a list of non-empty strings")
            entries.append({"name": name, "aliases": list(aliases)})
        return entries

    def network_spec(self) -> list[dict[str, Any]]:
        """`networks` for the core, the aliases rendered (strictly: an unknown field is an
        error naming the entry) and checked (`_checked_alias`)."""
        return [
            {
                "name": net["name"],
                "aliases": [
                    self._checked_alias(alias, f"networks[{i}] aliases") for alias in net["aliases"]
                ],
            }
            for i, net in enumerate(self.networks)
        ]

    def _checked_alias(self, template: str, setting: str) -> str:
        """An alias rendered for this server, refused (`ValueError` naming the setting, the
        field and its value) when a user could use it to take a name other containers on the
        network rely on: a template field whose value (a raw user or server name) brings a dot
        or a character outside letters, digits, `-` and `_` (a user named `pypi.org` would
        answer for pypi.org to every container on the network), or an alias that is the hub's
        own host name (a user named after it would receive other servers' API calls, tokens
        included)."""
        alias = self._render_strict(template, setting)
        where = f"{type(self).__name__}.{setting}: the alias {template!r}"
        namespace = self.template_namespace()
        for _, field, _, _ in string.Formatter().parse(template):
            key = re.split(r"[.\[!:]", field or "", maxsplit=1)[0]
            value = str(namespace.get(key, ""))
            if not _ALIAS_FIELD.fullmatch(value):
                raise ValueError(
                    f"{where} would take {{{key}}} = {value!r} into a DNS name on the network; "
                    "a user's or server's name may bring only letters, digits, '-' and '_' "
                    "into an alias: use {username} or {servername} (escaped)"
                )
        if alias.lower() in self._hub_host_names():
            raise ValueError(
                f"{where} renders to {alias!r}, the host name servers reach the hub by: "
                "this server would receive other servers' calls to the hub; give aliases a "
                "prefix or suffix no other name on the network has (e.g. '{username}-nb')"
            )
        return alias

    def _hub_host_names(self) -> set[str]:
        """The host name the servers reach the hub API by, and its first label (what a
        container on the network resolves it by), lower-cased; none for an IP address."""
        host = (urlsplit(self.hub.api_url).hostname or "") if self.hub else ""
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(host)
            return set()
        return {host.lower(), host.lower().split(".")[0]} - {""}

    use_internal_ip = Bool(
        help="""Connect to the container's IP on `network_name` (the first of `networks`)
        instead of a published port.

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
        # The engine's own host for a tcp:// DOCKER_HOST, else loopback.
        return _core.docker_host(None)[1]

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

    post_start_cmd = UnicodeOrFalse(
        False,
        help="""A command run in the container (`docker exec`, as its default user, no shell)
        right after it starts, e.g. to fix permissions. It is split like a shell line, waited
        for, and counts against `start_timeout`. Its stdout is logged at DEBUG, its stderr and
        a non-zero exit code at WARNING; a failing command does not fail the spawn.

        Example: `c.DockerSpawner.post_start_cmd = "sh -c 'chmod 700 /home/jovyan/work'"`
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

    @validate("port")
    def _validate_port(self, proposal: Any) -> int:
        value = proposal["value"]
        if not 0 < int(value) < 65536:
            raise TraitError(
                f"{type(self).__name__}.port = {value!r} is not allowed: use a TCP port from 1 "
                "to 65535"
            )
        return int(value)

    @validate("cpu_limit")
    def _validate_cpu_limit(self, proposal: Any) -> Any:
        value = proposal["value"]
        if value is None or callable(value):
            return value
        try:
            return _core.cpu_cores(value, f"{type(self).__name__}.cpu_limit")
        except ValueError as e:
            raise TraitError(str(e)) from None

    # The callables behind `mem_limit`, `mem_guarantee` and `cpu_limit`: the settings read as
    # their evaluated value (as in DockerSpawner, which evaluates them when the spawner is
    # made), and every start evaluates them again.
    _limit_sources = Dict()
    _setting_evaluated_limit = False

    @observe(*LIMIT_ENV)
    def _limit_set(self, change: Any) -> None:
        if self._setting_evaluated_limit:
            return
        if callable(change.new):
            self._limit_sources = {**self._limit_sources, change.name: change.new}
            self._evaluate_limit_now(change.name, change.new)
        else:
            # A plain value set after a callable replaces it.
            self._limit_sources = {k: v for k, v in self._limit_sources.items() if k != change.name}

    def _set_evaluated_limit(self, name: str, value: Any) -> None:
        self._setting_evaluated_limit = True
        try:
            setattr(self, name, value)
        finally:
            self._setting_evaluated_limit = False

    def _evaluate_limit_now(self, name: str, source: Any) -> None:
        """Reads a limit's callable when it is set, so the setting shows its value. One that
        cannot answer yet (async, or failing before the hub prepared the spawn) stays a
        callable until the next start evaluates it."""
        try:
            value = source(self)
        except Exception as e:
            self.log.debug("%s.%s is evaluated at the next start: %s", type(self).__name__, name, e)
            return
        if inspect.isawaitable(value):
            if inspect.iscoroutine(value):
                value.close()
            return
        # An invalid value is reported by the start, naming the setting.
        with contextlib.suppress(TraitError):
            self._set_evaluated_limit(name, value)

    async def resolve_limits(self) -> dict[str, Any]:
        """`mem_limit`, `mem_guarantee` and `cpu_limit` for this start: callables evaluated (and
        awaited), every value checked by the core; `TraitError` names the setting."""
        cls = type(self).__name__
        limits: dict[str, Any] = {}
        for name in LIMIT_ENV:
            source = self._limit_sources.get(name)
            value = getattr(self, name)
            if source is None and callable(value):
                source = value
            if source is not None:
                value = await maybe_await(source(self))
            check = _core.cpu_cores if name == "cpu_limit" else _core.memory_bytes
            try:
                limits[name] = check(value, f"{cls}.{name}")
            except ValueError as e:
                raise TraitError(str(e)) from None
            if source is not None:
                self._set_evaluated_limit(name, limits[name])
        return limits

    def limits_env(self, env: dict[str, str], limits: dict[str, Any]) -> dict[str, str]:
        """`env` with MEM_LIMIT, MEM_GUARANTEE and CPU_LIMIT from the resolved `limits` (the base
        class would stringify a callable); an `environment` entry of the same name wins."""
        env = dict(env)
        for name, key in LIMIT_ENV.items():
            if key in self.environment:
                continue
            env.pop(key, None)
            if limits.get(name):
                env[key] = str(limits[name])
        return env

    def create_kwargs_defaults(self) -> dict[str, Any]:
        """Container create settings that apply unless `extra_create_kwargs` sets the same one,
        in docker-py keyword form (`user`, `working_dir`, ...). None here; `SystemUserSpawner`
        gives the user's uid and home directory."""
        return {}

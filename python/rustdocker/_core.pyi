"""The native core of rustdocker (Rust, PyO3). Its export list is this whole file.

Every Docker call returns an awaitable running on one process-wide tokio runtime; cancelling
the await drops the Rust future, and a cancelled `start_server` undoes what it had done.
"""

from collections.abc import Awaitable
from typing import Any, Protocol, final, type_check_only

__all__ = [
    "LABEL_HUB",
    "LABEL_MANAGED_BY",
    "LABEL_MANAGED_VALUE",
    "LABEL_SCOPE",
    "LABEL_SERVER",
    "LABEL_SPEC_DIGEST",
    "LABEL_USER",
    "MAX_DOCKER_TIMEOUT",
    "ConflictError",
    "ContainerStatus",
    "DockerApiError",
    "DockerClient",
    "DockerConnectionError",
    "NotFoundError",
    "RustDockerError",
    "ServiceStartResult",
    "StartResult",
    "__version__",
    "build_create_body",
    "cpu_cores",
    "docker_host",
    "engine_mounts",
    "escape",
    "escape_legacy",
    "format_template",
    "format_template_lenient",
    "imagename",
    "memory_bytes",
    "metrics_snapshot",
    "node_local_volumes",
    "parse_byte_specification",
    "parse_docker_bytes",
    "set_logger",
    "volume_binds",
]

__version__: str

#: Label keys (and the managed-by value) on every object rustdocker creates.
LABEL_MANAGED_BY: str
LABEL_MANAGED_VALUE: str
LABEL_HUB: str
LABEL_USER: str
LABEL_SERVER: str
#: On a named volume: whose it is, `server`, `user` or `shared`.
LABEL_SCOPE: str
#: On a container: the digest of the spec it was made from (`sha256:<hex>`).
LABEL_SPEC_DIGEST: str

#: The largest `docker_timeout` (seconds) the client accepts.
MAX_DOCKER_TIMEOUT: int

class RustDockerError(Exception):
    """Base class of every error raised by the Docker layer."""

class DockerConnectionError(RustDockerError):
    """The engine could not be reached; the message names the Docker host tried."""

class DockerApiError(RustDockerError):
    """The engine answered with an error status; the message carries verb, object and reply."""

    status_code: int

class NotFoundError(DockerApiError):
    """404 from the engine."""

class ConflictError(DockerApiError):
    """409 from the engine."""

@final
class StartResult:
    """What `DockerClient.start_server` did."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def created(self) -> bool:
        """True when the container was created by this call, False when an existing one was
        re-used."""
    @property
    def api_token(self) -> str | None:
        """The API token found in a re-used container's environment."""
    @property
    def ip(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def warnings(self) -> list[str]:
        """What the spec left out and why (a `mounts` entry at a path a volume already mounts),
        for the spawner's log."""
    @property
    def config_changes(self) -> list[str]:
        """The fields a kept container's configuration changed in since it was made, by name
        (`Image`, `Env.FOO`, `HostConfig.Memory (added)`); never values."""
    @property
    def recreated(self) -> bool:
        """Whether a kept container made from another configuration was removed and made anew
        (its named volumes and host directories kept)."""
    @property
    def config_note(self) -> str | None:
        """What to log about a kept container's configuration: what changed and what was done,
        or that it carries no record; None when there is nothing to say."""

@final
class ServiceStartResult:
    """What `DockerClient.start_service` did."""

    @property
    def id(self) -> str: ...
    @property
    def ip(self) -> str:
        """The address the hub reaches the server at."""
    @property
    def port(self) -> int: ...
    @property
    def warnings(self) -> list[str]:
        """What the spec left out and why, for the spawner's log."""
    @property
    def node_id(self) -> str:
        """The id of the swarm node that runs the task."""
    @property
    def node_hostname(self) -> str:
        """That node's hostname."""

@final
class ContainerStatus:
    """A container's state."""

    @property
    def id(self) -> str: ...
    @property
    def running(self) -> bool: ...
    @property
    def exit_code(self) -> int: ...
    @property
    def status(self) -> str:
        """Docker's status word: running, exited, created, paused, ..."""
    @property
    def managed(self) -> bool:
        """Whether rustdocker made it (it carries the rustdocker labels)."""
    def owned_by(
        self, labels: dict[str, str], adopt_unlabelled: bool, state_id: str | None = None
    ) -> bool:
        """Whether the server whose object labels are `labels` may act on it: made for that
        server (same hub, user and server), or unlabelled and `adopt_unlabelled`, or the
        container whose id the server's state records (`state_id`)."""

@final
class DockerClient:
    """A connected, version-negotiated Docker engine, shared by a hub's spawners."""

    @staticmethod
    def connect(
        host: str | None = None,
        timeout: float = 120.0,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> Awaitable[DockerClient]:
        """Connect to `host` (default `DOCKER_HOST`, else the local socket) and negotiate the
        API version; with the three TLS files, over mutual TLS (`tcp://` hosts). Raises
        `DockerConnectionError` naming the host when it is unreachable or refuses us."""
    @property
    def host(self) -> str: ...
    @property
    def api_version(self) -> str: ...
    def start_server(self, spec_json: str, ticket: str) -> Awaitable[StartResult]:
        """Pull per policy, find or create, start, and return where the server listens.
        `ValueError` for an invalid spec (nothing is created)."""
    def stop_server(
        self,
        name: str,
        labels: dict[str, str],
        target: str | None = None,
        timeout: int | None = None,
        remove: bool = False,
        adopt_unlabelled: bool = False,
    ) -> Awaitable[bool]:
        """Stop the server's container `target` (id or name; default `name`) under the lock of
        its name, if it is that server's (`ContainerStatus.owned_by`); with `remove`, remove it
        (never its volumes). Missing or stopped is fine. Whether it acted."""
    def remove_stopped_server(
        self,
        name: str,
        labels: dict[str, str],
        target: str | None = None,
        adopt_unlabelled: bool = False,
    ) -> Awaitable[bool]:
        """Remove the server's stopped container under the lock of its name; a running one or
        a failed removal raises. Whether it removed one."""
    def delete_volumes(
        self,
        labels: dict[str, str],
        names: list[str],
        renamed_from: str | None = None,
        user_deleted: bool = False,
        other_servers: list[str] = ...,
        other_users: list[str] = ...,
    ) -> Awaitable[list[tuple[str, bool, str]]]:
        """Remove the named volumes that provably belong to the deleted server whose labels are
        `labels`: those `names` lists and those labelled as its own (`LABEL_SCOPE` `server`,
        its user and server; after a rename, labelled with `renamed_from` and listed in
        `names`), and with `user_deleted` the user's own (`user`). Never one another server's
        (`other_servers`) or user's (`other_users`) state records, another hub's, an
        unlabelled one or a host path; never forced. `(name, removed, why kept)` for each
        volume looked at."""
    def remove_container(self, name: str, force: bool = True) -> Awaitable[None]:
        """Remove a container, never its volumes; a missing container is fine."""
    def container_status(self, name: str) -> Awaitable[ContainerStatus | None]:
        """The container's state, or None when it does not exist."""
    def polled_status(self, name: str) -> Awaitable[ContainerStatus | None]:
        """The container's state for a poll: from the events cache once it is synced (a new
        connection's first sync is awaited, up to 10 s), else inspected; None when it does not
        exist."""
    def inspect_container(
        self, name: str, labels: dict[str, str], adopt_unlabelled: bool = False
    ) -> Awaitable[str | None]:
        """The engine's inspect of the container as JSON, or None when it does not exist or is
        not the server's whose labels are `labels` (`ContainerStatus.owned_by`)."""
    def cached_status(self, name: str) -> ContainerStatus | None:
        """The state from the events-driven cache, with no API call: None when the cache is not
        synced or does not know the container (then await `container_status`)."""
    @property
    def cache_synced(self) -> bool:
        """Whether the events-driven cache currently mirrors the engine."""
    @property
    def cache_stats(self) -> dict[str, int]:
        """Counters: `events` applied, `resyncs` (full listings), `disconnects`."""
    def container_address(
        self, name: str, port: int, network_name: str, use_internal_ip: bool, host_ip: str
    ) -> Awaitable[tuple[str, int] | None]:
        """Where a running container's server is reached now; None when it is missing or not
        running."""
    def start_service(
        self, spec_json: str, swarm_json: str, ticket: str
    ) -> Awaitable[ServiceStartResult]:
        """Replace any service of the name, create it, wait until its task runs: where the
        server is reached and the node that runs it. A start held to a node (`pin_node`) that
        cannot take it fails before anything is made; a rejected or failed task fails with the
        swarm's reason and the node's name. Safe to cancel."""
    def service_status(
        self, name: str, labels: dict[str, str], adopt_unlabelled: bool = False
    ) -> Awaitable[tuple[bool, str, int, str] | None]:
        """A swarm service's newest task `(running, state, exit_code, node)`; None when the
        service does not exist or is not the server's whose labels are `labels`. `state` is
        `node-down` (not running) for a task on a node that is down."""
    def service_address(
        self,
        name: str,
        labels: dict[str, str],
        port: int,
        publish_mode: str,
        use_internal_ip: bool,
        host_ip: str,
        adopt_unlabelled: bool = False,
    ) -> Awaitable[tuple[str, int] | None]:
        """Where the server's running task is reached now (`publish_mode` `host`: its node's
        address and the port it published); None without a running task of the server's."""
    def swarm_node(self) -> Awaitable[tuple[str, str] | None]:
        """The swarm node of the engine this client talks to (the hub's), `(id, hostname)`;
        None when the engine is in no swarm."""
    def remove_service(
        self,
        name: str,
        labels: dict[str, str],
        adopt_unlabelled: bool = False,
        wait_tasks: bool = True,
    ) -> Awaitable[bool]:
        """Remove the server's swarm service (missing is fine), if it is that server's; whether
        it removed it. With `wait_tasks`, return once the swarm has ended its tasks (at most
        45 s), so that their node's resources are free."""
    def stage_files(
        self,
        volume: str,
        path: str,
        image: str,
        may_pull: bool,
        helper_name: str,
        labels: dict[str, str],
        tar: bytes,
        scope: str = "shared",
    ) -> Awaitable[None]:
        """Copy the tar archive into the named volume at `path` through a helper container of
        `image`, created (never started) and removed again; the volume is created with `labels`
        and the `scope` label (`server`, `user` or `shared`) if missing."""
    def image_cmd(self, image: str) -> Awaitable[list[str] | None]:
        """The image's own CMD. `NotFoundError` when the image is missing."""
    def exec_run(self, name: str, cmd: list[str]) -> Awaitable[tuple[int | None, str, str]]:
        """Run `cmd` (no shell) in the container as its default user; `(exit_code, stdout,
        stderr)`."""
    def settle(self, ticket: str, claimed: bool) -> bool:
        """Settle the result of the start made with `ticket` (unique per call): `claimed` right
        after the await returned it, or abandoned (the await was cancelled), which undoes the
        start. A result not claimed within a minute is undone too. Whether this call decided
        it: False for a claim that came too late (the start is being undone)."""
    def pre_pull(
        self, images: list[str], stall_timeout: float, always: bool, credentials_json: str
    ) -> bool:
        """Pull `images` one at a time in the background, progress in the hub's log; starts
        needing one of them meanwhile join its pull. Images the engine has are skipped unless
        `always`; `credentials_json` is `{registry: {username, password} | {identitytoken}}`.
        Returns at once: False when a pre-pull is already running in this process."""
    def start_progress(self, ticket: str) -> str | None:
        """What the start with `ticket` is doing now, as JSON: `phase` (`queued`, `volumes`,
        `create`, `pull`, `start`, `task`), `phase_seconds`, `detail` (a swarm task's state),
        `pull` (during a pull: `image`, `elapsed`, `layers`, `layers_done`, `sizes_unknown`,
        `total`, `downloaded`, `extracted`, in compressed bytes) and `joined` (the pull is
        another start's); None once its steps have ended."""
    def wait_idle(self, name: str) -> Awaitable[None]:
        """Wait until no start or stop of container `name` is in progress."""

def escape(text: str) -> str:
    """DockerSpawner's default escaping (`[a-z0-9]` kept, `-XX` hex, lower-cased)."""

def escape_legacy(text: str) -> str:
    """DockerSpawner's pre-12 escaping (`[A-Za-z0-9-]` kept, `_XX` hex)."""

def imagename(image: str) -> str:
    """`image` with `/` and `:` replaced by `-`."""

def format_template(template: str, namespace: dict[str, str]) -> str:
    """`template.format(**namespace)`; `ValueError` naming an unknown field or bad syntax."""

def format_template_lenient(template: str, namespace: dict[str, str]) -> str:
    """Like `format_template`, but the template is returned unchanged on any error."""

def parse_byte_specification(value: str) -> int:
    """JupyterHub `ByteSpecification` for a string (`'1.5G'`); `ValueError` when invalid,
    negative, NaN, infinite or too large."""

def parse_docker_bytes(value: str) -> int:
    """docker-py `parse_bytes` for a string (`'1g'`, `'512m'`, `'100'`)."""

def build_create_body(spec_json: str) -> str:
    """The Engine-API create body a spec produces, as JSON, without contacting the engine."""

@type_check_only
class SupportsLog(Protocol):
    def log(self, level: int, msg: str) -> object: ...

def set_logger(logger: SupportsLog | None) -> None:
    """Where the core's log lines go (e.g. the hub's `logging.Logger`); None: nowhere. The last
    call wins for the whole process. `ValueError` for an object without a callable `log`."""

def memory_bytes(value: Any, setting: str) -> int | None:
    """The one check of `mem_limit`/`mem_guarantee` values: int, float or `ByteSpecification`
    string in, bytes out (None stays None); `ValueError` names `setting` and the value."""

def cpu_cores(value: Any, setting: str) -> float | None:
    """The one check of `cpu_limit` values: a finite number of cores >= 0 (None stays None);
    `ValueError` names `setting` and the value."""

def volume_binds(volumes_json: str) -> str:
    """DockerSpawner's `volume_binds` (JSON) from rendered `volumes` rows (JSON)."""

def engine_mounts(mounts_json: str) -> str:
    """Rendered `mounts` entries (JSON) as Engine `Mount` objects (JSON)."""

def node_local_volumes(spec_json: str, swarm_json: str) -> list[str]:
    """The user's own named volumes of a swarm start (its spec and swarm settings, JSON) that
    stay on the node that made them (a `local` volume mounting no file server)."""

def docker_host(host: str | None = None) -> tuple[str, str]:
    """`(the Docker host to use, its hostname)`: `host`, else `DOCKER_HOST`, else the local
    socket; the hostname is `127.0.0.1` for a local socket."""

def metrics_snapshot(hub_ids: list[str]) -> str:
    """The core's metrics as JSON (Engine API calls by verb, spawn phases, pulls, the events
    cache, and the containers of the hubs `hub_ids` in the caches by state), for the
    Prometheus collector in `rustdocker.metrics`."""

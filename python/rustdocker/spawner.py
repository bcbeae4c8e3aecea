"""rustdocker's spawner: DockerSpawner's configuration and JupyterHub's contract, a Rust core
underneath.

`DockerSpawner` is assembled from one class per concept, each in its own module:

| module | what it holds |
| --- | --- |
| `connection.py` | the engine (`docker_host`, TLS, `docker_timeout`) and the shared client |
| `imagechoice.py` | `image`, `allowed_images`, the spawn form, `pull_policy` |
| `profiles.py` | `profile_list`: profiles and their options, applied for one start |
| `progress.py` | `progress()`: what the spawn page shows while a server starts |
| `prepull.py` | `pre_pull`: the images users may choose, pulled when the hub starts |
| `naming.py` | the template namespace, container names, labels, the container in state |
| `volumes.py` | `volumes`, `read_only_volumes`, `mounts`, certificates, volume names in state |
| `servers.py` | servers among each other: name conflicts, `rename()`, `delete_forever()` |
| `container.py` | resources, networking and Docker pass-through settings |
| `deprecated.py` | DockerSpawner's old setting names |
| `spawner.py` | this module: the spec handed to the core, and start, stop, poll, get_url |

A start builds one plain dict (`build_spec`) and hands it to the core once
(`DockerClient.start_server`); every Docker Engine call, the template rendering and the
container spec's rules live in the native module ``rustdocker._core``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import shlex
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from jupyterhub.spawner import Spawner
from jupyterhub.utils import fmt_ip_url
from traitlets import TraitError, default

from . import _core, metrics
from .container import ContainerSettings
from .deprecated import DeprecatedSettings
from .imagechoice import maybe_await
from .loopshare import _loop_share
from .prepull import PrePull, schedule_at_hub_start
from .progress import Progress
from .servers import Servers

_T = TypeVar("_T")

#: Seconds a cancelled start waits for the core to undo it before the cancellation goes on
#: (the undo goes on under the lock of the container's name).
CANCEL_GRACE = 0.5


class DockerSpawner(PrePull, Progress, Servers, ContainerSettings, DeprecatedSettings, Spawner):
    """A JupyterHub spawner that runs each user's server in a Docker container.

    A drop-in replacement for ``dockerspawner.DockerSpawner``: it reads the same
    ``c.DockerSpawner.*`` settings, names containers and volumes the same way, and keeps the same
    state keys, so an existing deployment finds its existing containers and volumes.
    """

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

    async def docker_client(self) -> _core.DockerClient:
        # The metrics count this hub's servers among the engine's containers.
        metrics.follow_hub(self.hub_id)
        return await super().docker_client()

    # ------------------------------------------------------------------ the spec

    def get_env(self) -> dict[str, str]:
        env: dict[str, str] = super().get_env()
        env["JUPYTER_IMAGE_SPEC"] = self.image
        # The resource variables are set by build_spec from the values resolved for the start.
        for key in ("MEM_LIMIT", "MEM_GUARANTEE", "CPU_LIMIT"):
            if key not in self.environment:
                env.pop(key, None)
        return {str(k): str(v) for k, v in env.items()}

    async def _rendered_extra(self, setting: str) -> dict[str, Any]:
        """`extra_create_kwargs`/`extra_host_config`: a callable evaluated, every string
        rendered leniently; the core converts and checks the keys."""
        value = getattr(self, setting)
        if callable(value):
            value = await maybe_await(value(self))
        value = self._render_lenient(value or {})
        if not isinstance(value, dict):
            raise TraitError(
                f"{type(self).__name__}.{setting} returned {value!r}: a dict is required"
            )
        self._check_plain_data(setting, value)
        return value

    def _check_plain_data(self, setting: str, value: Any) -> None:
        """A setting's value must be plain JSON data to reach the core: no NaN or infinity, no
        sets, bytes or non-string keys. `TraitError` names the setting."""
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise TraitError(
                f"{type(self).__name__}.{setting} is not allowed: {e} (use strings, numbers, "
                "booleans, lists and dicts with string keys)"
            ) from None

    async def build_spec(self) -> dict[str, Any]:
        """The plain dict handed to the core: every setting rendered and resolved for this start,
        nothing converted. The core applies the rules (value forms, conversions, checks)."""
        limits = await self.resolve_limits()
        for setting in ("volumes", "read_only_volumes", "mounts"):
            self._check_plain_data(setting, getattr(self, setting))
        labels = self._labels()
        cmd = self.cmd
        return {
            "name": self.object_name,
            "state_id": self.object_id,
            "image": self.image,
            "pull_policy": self.pull_policy.lower(),
            "pull_stall_timeout": self.pull_stall_timeout,
            "registry_credentials": self.resolved_registry_credentials(),
            "cmd": list(cmd) if cmd else None,
            "args": list(self.get_args()),
            "env": self.limits_env(self.get_env(), limits),
            "labels": labels,
            "volume_labels": labels,
            "port": int(self.port),
            **self._mount_spec(),
            "user_volumes": self._user_volumes(),
            "server_volumes": self._server_volumes(),
            "on_config_change": self.on_config_change.lower(),
            **limits,
            "network_name": self.network_name,
            "networks": self.network_spec(),
            "use_internal_ip": self.use_internal_ip,
            "host_ip": self.host_ip,
            "links": dict(self.links),
            "remove": self.remove,
            "extra_create": await self._rendered_extra("extra_create_kwargs"),
            "extra_host_config": await self._rendered_extra("extra_host_config"),
            "create_defaults": self.create_kwargs_defaults(),
        }

    # ------------------------------------------------------------------ lifecycle

    async def _prepare_start(self) -> None:
        """start()'s steps before the spec: the image option, then the names."""
        await self._apply_image_option()
        self._record_volume_names()
        self._check_names_not_taken()

    async def _start_spec(self) -> dict[str, Any]:
        """start()'s first steps, shared by the spawner classes: take a turn on the event loop
        (see `_LoopShare`), apply the image option and names, build the spec."""
        self._set_start_stage("preparing")
        try:
            await _loop_share.turn()
            await self._prepare_start()
            return await self.build_spec()
        except BaseException:
            self._set_start_stage(None)
            raise

    async def _until_done(
        self,
        client: _core.DockerClient,
        name: str,
        start: Callable[[str], Awaitable[_T]],
    ) -> _T:
        """Runs a core start (`start(ticket)`) and claims its result at once (no await in
        between), so the core knows the spawner has it. If JupyterHub's start_timeout (or the
        user) cancels the start, even after the core finished it, the result is abandoned: the
        core undoes the start under the lock of the container's name, which the next start or
        stop of the server takes, so it finds a clean slate. The cancellation waits for the
        undo at most `CANCEL_GRACE` seconds: JupyterHub's DELETE of a pending spawn gives the
        cancellation 1 s, then stops the server, and if the spawn is still pending then it
        answers 500 and keeps the server as running with no container (bench/soak.py found it
        on a loaded machine, where an undo takes seconds). The ticket is this call's own:
        another server's start of a container of the same name (a collision of templates)
        never settles this one. The start's progress is readable by the ticket while it runs
        (see progress.py)."""
        ticket = secrets.token_hex(16)
        self._set_start_stage("core", ticket, client)
        try:
            result = await start(ticket)
        except asyncio.CancelledError:
            self._set_start_stage(None)
            client.settle(ticket, False)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(client.wait_idle(name), CANCEL_GRACE)
            raise
        except BaseException:
            self._set_start_stage(None)
            raise
        if not client.settle(ticket, True):
            self._set_start_stage(None)
            raise RuntimeError(
                f"the start of {name!r} was handed over too late (the hub's event loop stalled "
                "for a minute) and has been undone; start the server again"
            )
        self._set_start_stage("waiting")
        return result

    async def start(self) -> tuple[str, int]:
        spec = await self._start_spec()
        client = await self.docker_client()
        name = spec["name"]
        spec_json = json.dumps(spec)
        result = await self._until_done(
            client, name, lambda ticket: client.start_server(spec_json, ticket)
        )
        for warning in result.warnings:
            self.log.warning("%s: %s", self._log_name, warning)
        if result.config_note:
            # A kept container made from another configuration: recreated (info), or resumed
            # with the fields that changed (warning).
            changed_and_kept = result.config_changes and not result.recreated
            level = logging.WARNING if changed_and_kept else logging.INFO
            self.log.log(level, "%s: %s", self._log_name, result.config_note)
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

    async def get_object(self) -> dict[str, Any] | None:
        """The server's container as the engine's inspect shows it (a dict), or None when it
        does not exist or is not this server's: DockerSpawner's hook for subclasses."""
        client = await self.docker_client()
        found = await client.inspect_container(
            self.object_id or self.object_name, self._labels(), self._state_records_container
        )
        return None if found is None else dict(json.loads(found))

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
        if self.api_token:
            # The command may print its environment: the hub's log is no place for the token.
            stdout = stdout.replace(self.api_token, "[redacted]")
            stderr = stderr.replace(self.api_token, "[redacted]")
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
        new IP (a restarted engine) or port, and the stored URL would point nowhere.

        JupyterHub calls this at start-up for every server it believes running, outside any
        `try`: it never raises. When the engine cannot say (unreachable, the container gone, no
        longer on `network_name`, its port no longer published) the stored URL is returned,
        with a warning naming the server and the cause.
        """
        if self.server is None:
            return str(await super().get_url())
        try:
            address = await self._engine_address()
        except Exception as e:
            self.log.warning(
                "%s: using its stored URL; the engine could not give its address: %s",
                self._log_name,
                e,
            )
            address = None
        if address is None:
            return str(await super().get_url())
        ip, port = address
        if self.use_internal_hostname:
            # As start() returns it: the name on the container's network, the server's own port.
            ip, port = self.internal_hostname, int(self.port)
        proto = "https" if self.internal_ssl else "http"
        return f"{proto}://{fmt_ip_url(ip)}:{port}{self.server.base_url}"

    async def stop(self, now: bool = False) -> None:
        self._set_start_stage(None)
        client = await self.docker_client()
        # `now` is ignored, as in DockerSpawner: killing without the grace period loses
        # whatever the server would have saved on SIGTERM. Only this server's own container is
        # stopped: after a refused start (no container of its own yet) the hub still calls
        # stop(), and the container of the same name may be another server's.
        await client.stop_server(
            self.object_name,
            self._labels(),
            target=self.object_id or None,
            timeout=self.stop_timeout,
            remove=self.remove,
            adopt_unlabelled=self._state_records_container,
        )
        if self.remove:
            self.object_id = ""
        self.clear_state()
        self._stopped = True

    async def run_post_stop_hook(self) -> None:
        """JupyterHub runs this after every stop of the server, also after a server that died
        on its own, when it does not call `stop()` (its `User.stop` stops only a server that
        polls running). With `remove = True` the dead server's container is removed here, so the
        engine holds no container the hub has forgotten (DockerSpawner leaves it until the next
        start), as is the container of a start the hub was killed in the middle of. Never
        raises: an engine that does not answer leaves it to the next start."""
        stopped, self._stopped = self._stopped, False
        if self.remove and not stopped:
            # By its state's id or, after a start the hub never saw finish (it was killed),
            # by its name: only a container labelled as this server's is touched.
            try:
                await self.stop()
            except Exception as e:
                self.log.warning(
                    "%s: its stopped container is removed at its next start: %s",
                    self._log_name,
                    e,
                )
            # That stop() was this hook's, not the hub's: the server's next death (the hub keeps
            # this spawner object after an error stop) is removed by the next hook too.
            self._stopped = False
        await maybe_await(super().run_post_stop_hook())

    # Whether `stop()` ran since the last post-stop hook.
    _stopped = False

    async def poll(self) -> int | None:
        """None while the server runs, else its exit code (0 when it is gone or is not this
        server's). Never raises: while the engine cannot be reached the server is reported
        running (None), so the hub keeps tracking it through an engine outage, and a warning is
        logged once per outage."""
        try:
            status = await self._poll_engine()
        except Exception as e:
            if not self._poll_failing:
                self.log.warning(
                    "%s: cannot poll it (%s); reported running until the engine answers",
                    self._log_name,
                    e,
                )
            self._poll_failing = True
            return None
        if self._poll_failing:
            self.log.info("%s: the engine answers polls again", self._log_name)
            self._poll_failing = False
        return status

    _poll_failing = False

    async def _poll_engine(self) -> int | None:
        """`poll()`'s answer from the engine (which may raise): a dict lookup in the hub-wide
        events-driven cache; an inspect only when the cache is not synced or does not follow
        this container (one rustdocker did not create). Right after the hub (re)starts, the
        cache's first listing is awaited rather than inspecting every server."""
        client = await self.docker_client()
        key = self.object_id or self.object_name
        status = client.cached_status(key)
        if status is None:
            status = await client.polled_status(key)
        if status is None or not status.owned_by(
            self._labels(), self._state_records_container, self.object_id or None
        ):
            # No container, or only another server's of the same name: this one is not running.
            return 0
        if status.running:
            return None
        if self.remove:
            await self._remove_exited(status.id)
        return int(status.exit_code)

    async def _remove_exited(self, container_id: str) -> None:
        """With `remove`, a container that exited on its own (crashed, killed or stopped from
        outside) is removed, with its anonymous volumes, when a poll finds it: the hub calls
        stop() only for a server that poll() says is running, so nothing else would (DockerSpawner
        leaves it to the engine's AutoRemove). Under the lock of its name, so a start of the same
        server is never raced; its id, so only that container."""
        client = await self.docker_client()
        try:
            await client.remove_stopped_server(
                self.object_name,
                self._labels(),
                target=container_id,
                adopt_unlabelled=self._state_records_container,
            )
        except Exception as e:
            self.log.warning(
                "%s: its exited container %s was not removed: %s",
                self._log_name,
                container_id[:12],
                e,
            )


# A hub importing this module while it starts: its pre-pull, if configured (see prepull.py).
schedule_at_hub_start(DockerSpawner)

"""Volumes and mounts: `volumes`, `read_only_volumes`, `mounts`, the internal-SSL certificates
volume, and the names a server's volumes keep across renames.

Python renders the templates (`format_volume_name` may be an operator's callable) and hands the
rendered settings to the core once, as rows (`volume_rows()`, `rendered_mounts()`); the core
applies the rules: the value forms, read-only defaults, duplicate sources and targets, the
docker-py `Mount` keywords, and which named volumes to create and label.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import tarfile
from collections.abc import Callable
from typing import Any

from traitlets import Any as AnyTrait
from traitlets import Dict, List, Unicode, default

from . import _core
from .connection import EngineConnection
from .naming import Naming
from .volumenamingstrategy import default_format_volume_name


def tar_for_certs(paths: dict[str, str]) -> tuple[bytes, dict[str, str]]:
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


class Volumes(Naming, EngineConnection):
    """What is mounted into the container, and where its data lives."""

    volumes = Dict(
        help="""Docker volumes and host directories to mount, `{source: target}`.

        A source that is an absolute path is bind-mounted from the Docker host; anything else is
        a named volume, which rustdocker creates (labelled with the user, server and hub) if it
        does not exist. It is deleted only with `remove_on_delete`, and only when it is the
        deleted server's or user's own. The value may be a dict
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

    certs_volume_name = Unicode(
        "{prefix}ssl-{username}",
        help="""Named volume holding a user's internal-SSL certificates
        (`c.JupyterHub.internal_ssl = True`), mounted read-only at `/certs`. One per user,
        shared by their named servers, created and labelled by rustdocker, and deleted with the
        user only with `remove_on_delete`. Templated like `volumes`.

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

    # The names the volume sources (`volumes`/`read_only_volumes` keys, `mounts` sources) got,
    # `{template: name}`, and the server name they were rendered for. Kept in state (keys
    # `volume_names`, `volume_names_server`) so that tools can find a server's volumes, and so
    # that a renamed server keeps its volumes: see `_volume_source`.
    _volume_names = Dict()
    _volume_names_server = Unicode(None, allow_none=True)

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        names = state.get("volume_names")
        server = state.get("volume_names_server")
        if isinstance(names, dict) and isinstance(server, str):
            self._volume_names = {str(k): str(v) for k, v in names.items()}
            self._volume_names_server = server
            return
        self._volume_names = {}
        self._volume_names_server = None
        if state.get("object_name") or state.get("object_id") or state.get("container_id"):
            # A server from DockerSpawner (or an older rustdocker): note its volumes' names
            # now, under the name it has, so an automatic rename (JupyterHub 6) keeps its data.
            try:
                self._record_volume_names()
            except Exception as e:  # a broken template must not stop the hub loading state
                self.log.warning("%s: volume names not recorded: %s", self._log_name, e)

    def get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = super().get_state()
        if self._volume_names and self._volume_names_server is not None:
            state["volume_names"] = dict(self._volume_names)
            state["volume_names_server"] = self._volume_names_server
        return state

    def _volume_scope(self, template: str) -> str:
        """Whose the volume `template` names is: `server`, `user` or `shared` (its label
        `org.rustdocker.scope`); see `Servers._volume_scope`."""
        return "shared"

    def _format_volume(self, template: str, setting: str) -> str:
        try:
            return str(self.format_volume_name(template, self))
        except (KeyError, ValueError, IndexError) as e:
            message = e.args[0] if e.args else e
            raise ValueError(f"{type(self).__name__}.{setting}: {message}") from None

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

    def _rendered_target(self, target: Any, setting: str) -> Any:
        """A `volumes` value with its container path rendered; its form is the core's to check."""
        if isinstance(target, str):
            return self._format_volume(target, setting)
        if isinstance(target, dict) and isinstance(target.get("bind"), str):
            return {**target, "bind": self._format_volume(target["bind"], setting)}
        return target

    def volume_rows(self) -> list[dict[str, Any]]:
        """The rendered `volumes`, `read_only_volumes` and the certificates volume, as the rows
        the core parses (`setting`, `source`, `target`, `read_only`); a later row for the same
        source replaces an earlier one. Subclasses add their own (SystemUserSpawner's home)."""
        cls = type(self).__name__
        rows = [
            {
                "setting": f"{cls}.volumes",
                "source": self._volume_source(source, "volumes"),
                "target": self._rendered_target(target, "volumes"),
            }
            for source, target in self.volumes.items()
        ]
        if self.internal_ssl:
            # The certificates move_certs staged, read-only where the environment points.
            certs = self._format_volume(self.certs_volume_name, "certs_volume_name")
            rows.append(
                {
                    "setting": f"{cls}.certs_volume_name",
                    "source": certs,
                    "target": "/certs",
                    "read_only": True,
                }
            )
        rows += [
            {
                "setting": f"{cls}.read_only_volumes",
                "source": self._volume_source(source, "read_only_volumes"),
                "target": self._rendered_target(target, "read_only_volumes"),
                "read_only": True,
            }
            for source, target in self.read_only_volumes.items()
        ]
        return rows

    @property
    def volume_binds(self) -> dict[str, dict[str, str]]:
        """DockerSpawner's `{source: {"bind": target, "mode": mode[, "propagation": p]}}`, after
        templating. A subclass that overrides it decides what is mounted, as in DockerSpawner."""
        return json.loads(_core.volume_binds(json.dumps(self.volume_rows())))

    @property
    def volume_mount_points(self) -> list[str]:
        return sorted(b["bind"] for b in self.volume_binds.values())

    def rendered_mounts(self) -> list[dict[str, Any]]:
        """`mounts` with every string rendered, the sources by `_volume_source`."""

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
        had this property; a subclass that overrides it decides the container's mounts."""
        mounts = self.rendered_mounts()
        if not mounts:
            return []
        try:
            return json.loads(_core.engine_mounts(json.dumps(mounts)))
        except ValueError as e:
            raise ValueError(f"{type(self).__name__}.mounts: {e}") from None

    def _mount_spec(self) -> dict[str, Any]:
        """The spec's `volumes` and `mounts`: the rendered settings, or what an overriding
        `volume_binds`/`mount_binds` of a subclass returns."""
        if type(self).volume_binds is not Volumes.volume_binds:
            rows = [
                {
                    "setting": f"{type(self).__name__}.volume_binds",
                    "source": source,
                    "target": target,
                }
                for source, target in self.volume_binds.items()
            ]
        else:
            rows = self.volume_rows()
        if type(self).mount_binds is not Volumes.mount_binds:
            mounts = self.mount_binds
        else:
            mounts = self.rendered_mounts()
        return {"volumes": rows, "mounts": mounts}

    async def move_certs(self, paths: dict[str, str]) -> dict[str, str]:
        """Stages the internal-SSL certificates JupyterHub made on its own host into the
        user's certs volume (through a helper container, so the engine may be remote), and
        returns where the server finds them: `/certs/<file>`."""
        volume = self._format_volume(self.certs_volume_name, "certs_volume_name")
        # A few kilobytes of the hub's own files: read in place rather than in a thread.
        archive, moved = tar_for_certs(paths)
        client = await self.docker_client()
        await client.stage_files(
            volume,
            "/certs",
            self.move_certs_image,
            self.pull_policy.lower() in ("ifnotpresent", "always"),
            f"{self.object_name}-certs-{secrets.token_hex(4)}",
            self._labels(),
            archive,
            scope=self._volume_scope(self.certs_volume_name),
        )
        self.log.info("Staged %d certificate files in volume %s", len(moved), volume)
        return moved

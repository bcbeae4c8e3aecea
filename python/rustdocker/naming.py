"""Names: the template namespace, container names, labels and the container recorded in state.

`{username}`, `{servername}` and the other template fields are defined here
(`template_namespace`), and so is the one container a server owns: the name recorded in its
state, else `name_template` rendered. The escaping and the rendering themselves are the core's
(`_core.escape`, `_core.format_template`).

| field | value |
| --- | --- |
| `{username}`, `{safe_username}` | the user name, escaped (`escape`) |
| `{raw_username}` | the user name as it is |
| `{servername}` | the server name, lower-cased and escaped; empty for the default server |
| `{raw_servername}` | the server name as it is |
| `{imagename}` | `image` with `/` and `:` replaced by `-` |
| `{prefix}` | `prefix` |
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any, ClassVar

from traitlets import Any as AnyTrait
from traitlets import TraitError, Unicode, default, validate

from . import _core
from .imagechoice import ImageChoice


class Naming(ImageChoice):
    """Container names, the template namespace, this hub's identity and the object in state."""

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

    hub_id = Unicode(
        help="""Identity of this hub, stored in the `org.rustdocker.hub` label of every
        container and volume rustdocker creates, so several hubs can share one Docker engine and
        each finds exactly its own objects.

        A hub never resumes, stops, removes or renames a container, nor mounts a volume, that
        another hub's label marks as its own, with `remove` True or False: two hubs with the
        same `prefix` and templates (a staging hub beside production) would render the same
        names, and the second to start a server gets a clear error naming the other hub's id
        instead. Give each hub its own `prefix` (or `name_template` and volume names), or, for
        one hub that moved machine or database, set the same `hub_id` it had. Objects without
        rustdocker's labels (made by DockerSpawner or by hand) are adopted by name, as
        DockerSpawner does.

        Default: derived from the hub's database URL (an sqlite file by its absolute path),
        stable across hub restarts and across recreating a hub's container. Set it explicitly
        when the database moves, or when two hubs on different machines share one engine and
        a database URL. A container the server's state records by id is its own whatever its
        label says, so a changed `hub_id` never loses a running server; a volume labelled with
        the old id is refused until `hub_id` is set back to it (the error names it).

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
        # Not the hostname: in a container it is the container's id, which changes whenever
        # the hub's container is recreated (an upgrade), and every server would then look like
        # another hub's.
        seed = db_url or os.getcwd()
        return hashlib.sha256(seed.encode()).hexdigest()[:16]

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
            # Keys that are not strings are left as they are (the core names them).
            return {
                (self._render_lenient(k) if isinstance(k, str) else k): self._render_lenient(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._render_lenient(v) for v in value]
        return value

    def _labels(self) -> dict[str, str]:
        """The labels of every object made for this server: which hub, user and server."""
        return {
            _core.LABEL_MANAGED_BY: _core.LABEL_MANAGED_VALUE,
            _core.LABEL_HUB: self.hub_id,
            _core.LABEL_USER: self.user.name,
            _core.LABEL_SERVER: self.name or "",
        }

    # ------------------------------------------------------------------ the container in state

    object_type: ClassVar[str] = "container"
    #: The field of the engine's inspect reply holding the object's id.
    object_id_key: ClassVar[str] = "Id"
    object_id = Unicode("")
    _persisted_name = Unicode("")

    @property
    def object_name(self) -> str:
        """The container name: the one recorded in state, else `name_template` rendered."""
        if self._persisted_name:
            return self._persisted_name
        return self._render_strict(self.name_template, "name_template")

    @property
    def _state_records_container(self) -> bool:
        """Whether the server's state names its container: then an unlabelled container of
        that name (made by DockerSpawner) is adopted as the server's own."""
        return bool(self.object_id or self._persisted_name)

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

"""Servers among each other: one server never takes another's container or volumes, and a
renamed server keeps its volumes (JupyterHub 6's `rename`); what deleting a server or user
removes (`remove_on_delete`) and keeps.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from tornado import web
from traitlets import Bool

from ._core import RustDockerError
from .imagechoice import refusal
from .volumes import Volumes


class _AsServer:
    """A spawner seen as if it were the server `name`: for asking whether a template's result
    depends on the server's name."""

    def __init__(self, spawner: Servers, name: str) -> None:
        self._spawner = spawner
        self.name = name

    def template_namespace(self) -> dict[str, str]:
        namespace = dict(self._spawner.template_namespace())
        namespace["servername"] = str(self._spawner.escape(self.name.lower()))
        namespace["raw_servername"] = self.name
        return namespace

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._spawner, attr)


class _AsUser:
    """A spawner seen as if its user were `name`: for asking whether a template's result
    depends on the user's name."""

    def __init__(self, spawner: Servers, name: str) -> None:
        self._spawner = spawner
        self.user = SimpleNamespace(name=name, escaped_name=name)

    def template_namespace(self) -> dict[str, str]:
        namespace = dict(self._spawner.template_namespace())
        escaped = str(self._spawner.escape(self.user.name))
        namespace.update(username=escaped, safe_username=escaped, raw_username=self.user.name)
        return namespace

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._spawner, attr)


class Servers(Volumes):
    """Names across a user's servers: conflicts, `rename()` and `delete_forever()`."""

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
        return self._renders_differently_for(template, _AsServer(self, "rustdocker-probe"))

    def _names_each_user(self, template: str) -> bool:
        """Whether `template` gives another user another name (through `{username}`, or a
        `format_volume_name` reading the user's name)."""
        return self._renders_differently_for(template, _AsUser(self, "rustdocker-probe"))

    def _renders_differently_for(self, template: str, other: Any) -> bool:
        """Whether `format_volume_name` renders `template` differently for `other` (this
        spawner seen as another server or user); False when it cannot render."""
        try:
            here = str(self.format_volume_name(template, self))
            there = str(self.format_volume_name(template, other))
        except Exception:
            return False
        return here != there

    def _user_volumes(self) -> list[str]:
        """The named volumes meant to be this user's own (their template names each user its
        own): the core refuses one labelled as another user's, which only a collision of
        names (an `escape` or `{raw_username}` that maps two users to one name) can give."""
        return sorted(
            {
                name
                for template, name in self._volume_sources().items()
                if not name.startswith("/") and self._names_each_user(template)
            }
        )

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
        if self._state_records_container:
            await self._remove_container_for_rename(old_name, new_name)
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

    async def _remove_container_for_rename(self, old_name: str, new_name: str) -> None:
        """Removes the server's stopped container before a rename, or vetoes the rename (409):
        while the container runs, whatever `remove` is, and while `remove = False` keeps it."""
        client = await self.docker_client()
        target = self.object_id or self.object_name
        status = await client.container_status(target)
        if status is None or not status.owned_by(self._labels(), True, self.object_id or None):
            return  # gone, or another server's by now: the state no longer points at ours

        def veto(why: str) -> web.HTTPError:
            return web.HTTPError(
                409, "%s", f"Cannot rename {self._log_name} to {new_name!r}: {why}"
            )

        if status.running:
            raise veto(
                f"its container {self.object_name!r} is running. Stop the server first; its "
                "volumes are kept."
            )
        if not self.remove:
            raise veto(
                f"its stopped container {self.object_name!r} was created for the name "
                f"{old_name!r} and holds the files outside its volumes "
                "(DockerSpawner.remove = False). An administrator can remove it "
                f"(docker rm {self.object_name}) to allow the rename; the volumes are kept."
            )
        try:
            # Under the container's lock, checked again: a start that raced us wins.
            await client.remove_stopped_server(
                self.object_name,
                self._labels(),
                target=self.object_id or None,
                adopt_unlabelled=True,
            )
        except RustDockerError as e:
            raise veto(f"its container could not be removed: {e}") from None

    remove_on_delete = Bool(
        False,
        help="""Remove a deleted server's container and volumes: what rustdocker made for exactly
        that server (or, when the user is deleted, for that user).

        JupyterHub calls `delete_forever()` when a named server is deleted (the admin page,
        `DELETE /hub/api/users/<name>/servers/<server>` with `{"remove": true}`,
        jupyterhub-idle-culler's `--remove-named-servers`) and, for each of the user's servers,
        when a user is deleted (`DELETE /hub/api/users/<name>`, the admin page, the culler's
        `--cull-users`). With `False` (the default) nothing is removed and the log names what
        is kept. With `True` rustdocker removes:

        - the server's kept container (`remove = False`), with its anonymous volumes;
        - the named volumes it created for exactly that server: labelled with this hub, this
          user and this server, and marked as that server's own (`org.rustdocker.scope=server`:
          their template names a volume per user and server, like
          `"jupyterhub-user-{username}--{servername}"`);
        - when the user is deleted, also the user's own volumes (`org.rustdocker.scope=user`:
          their template names a volume per user but not per server, like
          `"jupyterhub-user-{username}"` and the internal-SSL `certs_volume_name`). Deleting
          one named server never removes them.

        Never removed: a volume shared by several users (`org.rustdocker.scope=shared`), one
        another server's or user's state records, one of another hub, one without rustdocker's
        labels (made by DockerSpawner or by hand), one made by a rustdocker before this setting
        existed (no `org.rustdocker.scope` label), and any host directory. A volume still in
        use by a container is kept (never forced). The log names what was removed and what was
        kept, and why. A failure (the engine unreachable, say) is logged as a warning and does
        not stop JupyterHub from deleting the user or server.

        Example: `c.DockerSpawner.remove_on_delete = True`
        """,
    ).tag(config=True)

    def _volume_scope(self, template: str) -> str:
        """`server` when `template` names a volume per user and server, `user` when per user
        only, else `shared` (one volume for several users): the `org.rustdocker.scope` label."""
        if not self._names_each_user(template):
            return "shared"
        return "server" if self._names_each_server(template) else "user"

    def _server_volumes(self) -> list[str]:
        """The named volumes meant to be this server's own (labelled `scope=server`)."""
        return sorted(
            {
                name
                for template, name in self._volume_sources().items()
                if not name.startswith("/") and self._volume_scope(template) == "server"
            }
        )

    def _volumes_recorded_elsewhere(self) -> tuple[list[str], list[str]]:
        """The volume names other servers' states record: `(this user's other servers',
        other users' servers')`, from the hub's database (or, without one, the user's
        servers)."""
        mine = self.name or ""
        user_id = getattr(self.user, "id", None)
        rows: list[tuple[Any, Any, Any]] = []
        try:
            from jupyterhub import orm
            from sqlalchemy.orm import object_session

            session = object_session(self.orm_spawner)
            if session is not None:
                rows = session.query(orm.Spawner.user_id, orm.Spawner.name, orm.Spawner.state).all()
        except Exception:  # not a database row (no hub): the user's own servers only
            rows = []
        if not rows:
            orm_user = getattr(self.user, "orm_user", None)
            others = getattr(orm_user, "orm_spawners", None)
            if isinstance(others, Mapping):
                rows = [(user_id, name, getattr(o, "state", None)) for name, o in others.items()]
        other_servers: set[str] = set()
        other_users: set[str] = set()
        for row_user, row_name, state in rows:
            recorded = state.get("volume_names") if isinstance(state, dict) else None
            if not isinstance(recorded, dict):
                continue
            names = {str(v) for v in recorded.values()}
            if row_user != user_id:
                other_users |= names
            elif (row_name or "") != mine:
                other_servers |= names
        return sorted(other_servers), sorted(other_users)

    def _volumes_shared_by_configuration(self) -> set[str]:
        """The named volumes the configuration mounts for every user (`shared` templates)."""
        try:
            return {
                name
                for template, name in self._volume_sources().items()
                if not name.startswith("/") and self._volume_scope(template) == "shared"
            }
        except Exception as e:  # a broken template: the labels and the states remain
            self.log.warning("Deleting %s: volume templates not rendered: %s", self._log_name, e)
            return set()

    def _volume_names_to_delete(self) -> list[str]:
        """The named volumes the server's state and configuration name, certificates included."""
        names = set(self._volume_names.values())
        try:
            names |= set(self._volume_sources().values())
            names.add(self._format_volume(self.certs_volume_name, "certs_volume_name"))
        except Exception as e:  # a broken template: the recorded names and the labels remain
            self.log.warning("Deleting %s: volume templates not rendered: %s", self._log_name, e)
        return sorted(n for n in names if n and not n.startswith("/"))

    async def delete_forever(self) -> None:
        """Called when the user or this named server is deleted (the server is stopped).

        With `remove_on_delete` (off by default) the server's kept container and the volumes
        that are provably its own (and, when the user is deleted, the user's own) are removed;
        otherwise nothing is. Either way the log says what was removed and what is kept. Never
        raises: JupyterHub would only log the error, and the deletion goes on regardless.
        """
        if not self.remove_on_delete:
            self._log_kept_on_delete()
            return
        try:
            await self._remove_forever()
        except Exception as e:
            self.log.warning(
                "Deleting %s: its container and volumes could not be removed, and are kept: %s",
                self._log_name,
                e,
            )

    def _log_kept_on_delete(self) -> None:
        kept = []
        if self.object_id or self._persisted_name:
            kept.append(f"container {self.object_name}")
        try:
            names = self._volume_names or self._volume_sources()
        except Exception:  # a broken template must not block the deletion
            names = self._volume_names
        kept += [f"volume {name}" for name in sorted(set(names.values()))]
        self.log.info(
            "Deleting %s: nothing is removed (remove_on_delete is off); kept: %s",
            self._log_name,
            ", ".join(kept) if kept else "nothing recorded",
        )

    async def _remove_forever(self) -> None:
        # JupyterHub refuses to delete a default server on its own (400): its deletion is the
        # user's, and so the user's own volumes go with it.
        user_deleted = not self.name
        client = await self.docker_client()
        removed: list[str] = []
        kept: list[str] = []
        # The container first: its volumes are in use while it exists.
        try:
            container = self.object_name
        except Exception:  # a broken name_template: no container of this server to find
            container = ""
        if container:
            try:
                if await client.remove_stopped_server(
                    container,
                    self._labels(),
                    target=self.object_id or None,
                    adopt_unlabelled=self._state_records_container,
                ):
                    removed.append(f"container {container}")
            except RustDockerError as e:
                kept.append(f"container {container} ({e})")
        other_servers, other_users = self._volumes_recorded_elsewhere()
        # A name the configuration mounts for every user (a template naming no user, such as
        # a teacher's home shared read-only) is not this user's alone, whatever its labels.
        other_users = sorted(set(other_users) | self._volumes_shared_by_configuration())
        renamed_from = self._volume_names_server
        fates = await client.delete_volumes(
            self._labels(),
            self._volume_names_to_delete(),
            renamed_from=renamed_from if renamed_from not in (None, self.name or "") else None,
            user_deleted=user_deleted,
            other_servers=other_servers,
            other_users=other_users,
        )
        for name, was_removed, why in fates:
            if was_removed:
                removed.append(f"volume {name}")
            else:
                kept.append(f"volume {name} ({why})")
        self.log.info(
            "Deleting %s%s (remove_on_delete): removed %s; kept %s",
            self._log_name,
            " with its user" if user_deleted else "",
            ", ".join(removed) if removed else "nothing",
            "; ".join(kept) if kept else "nothing",
        )

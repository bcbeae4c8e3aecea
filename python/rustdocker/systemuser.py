"""SystemUserSpawner: each user's server runs as their account on the hub host, with their home
directory from the Docker host mounted.

A drop-in replacement for ``dockerspawner.SystemUserSpawner``: the same ``c.SystemUserSpawner.*``
settings and the same state keys (`user_id`, `group_id`).
"""

from __future__ import annotations

import pwd
from typing import Any

from traitlets import Bool, Int, Unicode, default

from . import _core
from .spawner import DockerSpawner


class SystemUserSpawner(DockerSpawner):
    """Runs the container as the user's uid and gid from the hub host's passwd database, with
    the user's home directory on the Docker host bind-mounted as their home in the container.

    The image should handle `NB_USER`/`NB_UID`/`NB_GID` as the jupyter/docker-stacks images do
    (with `run_as_root`), or simply run as whichever uid it is started with.
    """

    host_homedir_format_string = Unicode(
        "/home/{username}",
        help="""The user's home directory on the Docker host, bind-mounted read-write at
        `image_homedir_format_string` in the container.

        `{username}` is the user name as it is, unescaped (system user names are safe as
        paths); it is the only field. Empty: the home directory of the user's account on the
        hub host (`pwd`), which must then also be the path on the Docker host.

        Example: `c.SystemUserSpawner.host_homedir_format_string = "/srv/homes/{username}"`
        """,
    ).tag(config=True)

    image_homedir_format_string = Unicode(
        "/home/{username}",
        help="""The user's home directory in the container: where the host home directory is
        mounted, the container's working directory and `HOME`.

        `{username}` is the user name as it is, unescaped; it is the only field.

        Example: `c.SystemUserSpawner.image_homedir_format_string = "/home/jovyan"`
        """,
    ).tag(config=True)

    homedir_bind_propagation = Unicode(
        "",
        help="""Mount propagation of the home directory bind (`rprivate`, `private`, `rshared`,
        `shared`, `rslave`, `slave`). Empty (the default) leaves Docker's default (`rprivate`).
        Propagation lets mounts made later under the host home directory (an automounter, say)
        appear in the container.

        Example: `c.SystemUserSpawner.homedir_bind_propagation = "rslave"`
        """,
    ).tag(config=True)

    run_as_root = Bool(
        False,
        help="""Start the container as root (`user` 0) and let the image switch to the user.

        For images that read `NB_USER`, `NB_UID` and `NB_GID` (the jupyter/docker-stacks
        images): their start script creates or renames the account, fixes ownership and drops
        to it, so user names and groups inside the container match the host's. Without such an
        image the user's server runs as root. With False (the default) the container runs
        directly as `uid:gid`.

        Example: `c.SystemUserSpawner.run_as_root = True`
        """,
    ).tag(config=True)

    user_id = Int(
        -1,
        help="""The uid the server runs as. Looked up by user name in the hub host's passwd
        database unless the server's state has one (an authenticator may put `user_id` there,
        for users that have no account on the hub host). Recorded in the state.""",
    )

    group_id = Int(
        -1,
        help="""The gid the server runs with, looked up and recorded like `user_id`.""",
    )

    def _passwd(self) -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(self.user.name)
        except KeyError:
            raise ValueError(
                f"{type(self).__name__}: the user {self.user.name!r} has no account on the hub "
                "host (pwd.getpwnam): create it, or have the authenticator store user_id and "
                "group_id in the server's state"
            ) from None

    @default("user_id")
    def _user_id_default(self) -> int:
        return self._passwd().pw_uid

    @default("group_id")
    def _group_id_default(self) -> int:
        return self._passwd().pw_gid

    def _format_home(self, template: str, setting: str) -> str:
        try:
            return _core.format_template(template, {"username": self.user.name})
        except ValueError as e:
            raise ValueError(f"{type(self).__name__}.{setting}: {e}") from None

    @property
    def host_homedir(self) -> str:
        """The user's home directory on the Docker host."""
        if self.host_homedir_format_string:
            return self._format_home(self.host_homedir_format_string, "host_homedir_format_string")
        return self._passwd().pw_dir

    @property
    def homedir(self) -> str:
        """The user's home directory in the container."""
        return self._format_home(self.image_homedir_format_string, "image_homedir_format_string")

    def volume_rows(self) -> list[dict[str, Any]]:
        # The home directory is mounted last, so it wins over a `volumes` entry of the same
        # host path. The user name is used as it is: it names a system account, not a Docker
        # object.
        home: dict[str, str] = {"bind": self.homedir, "mode": "rw"}
        if self.homedir_bind_propagation:
            home["propagation"] = self.homedir_bind_propagation
        setting = f"{type(self).__name__}.host_homedir_format_string"
        return [
            *super().volume_rows(),
            {"setting": setting, "source": self.host_homedir, "target": home},
        ]

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        # NB_* are read by the jupyter/docker-stacks start script; USER and USER_ID are older
        # names of the same.
        env["USER"] = env["NB_USER"] = self.user.name
        env["HOME"] = self.homedir
        if self.user_id >= 0:
            env["USER_ID"] = env["NB_UID"] = str(self.user_id)
        if self.group_id >= 0:
            env["NB_GID"] = str(self.group_id)
        return env

    def create_kwargs_defaults(self) -> dict[str, Any]:
        # Given as defaults, not written into extra_create_kwargs, so a callable
        # extra_create_kwargs works, and its own `user`/`working_dir` wins.
        defaults: dict[str, Any] = {**super().create_kwargs_defaults(), "working_dir": self.homedir}
        if self.run_as_root:
            defaults["user"] = "0"
        elif self.user_id >= 0:
            user = str(self.user_id)
            if self.group_id >= 0:
                user = f"{user}:{self.group_id}"
            defaults["user"] = user
        elif self.group_id >= 0:
            self.log.warning(
                "%s: group_id %s has no effect without a user_id",
                self._log_name,
                self.group_id,
            )
        return defaults

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        if "user_id" in state:
            self.user_id = state["user_id"]
        if "group_id" in state:
            self.group_id = state["group_id"]

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        # Only ids already known (looked up at start, or loaded): get_state must not fail for a
        # user without an account on the hub host.
        for key in ("user_id", "group_id"):
            if self.trait_has_value(key) and getattr(self, key) >= 0:
                state[key] = getattr(self, key)
        return state

"""Choosing the image: `image`, `allowed_images`, the spawn form, the `image` user option and
`pull_policy`.

The pure helpers at the top hold the rules; `ImageChoice` holds the settings and applies them at
each start.
"""

from __future__ import annotations

import html
import inspect
import warnings
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from tornado import web
from traitlets import Any as AnyTrait
from traitlets import (
    CaselessStrEnum,
    Dict,
    Float,
    List,
    TraitError,
    Unicode,
    Union,
    default,
    validate,
)

from .traits import SpawnerPart

try:  # JupyterHub >= 6: a policy refusal the hub logs without a traceback.
    from jupyterhub.spawner import SpawnException as _SpawnException
except ImportError:  # pragma: no cover - JupyterHub 5
    _SpawnException = None

#: `allowed_images` after validation: `"*"` (any image) or `{key shown to users: image}`.
AllowedImages = dict[str, str] | str


def normalize_allowed_images(value: Any, setting: str) -> AllowedImages:
    """Validate an `allowed_images` value (not a callable): `"*"`, a dict `{key: image}`, a list
    (cast to `{image: image}`) or None (nothing allowed). `ValueError` names the setting."""
    if value is None:
        return {}
    if isinstance(value, str):
        if value == "*":
            return value
        raise ValueError(
            f"{setting} = {value!r} is not allowed: '*' (any image) is the only string accepted; "
            f"use a list, e.g. [{value!r}], to allow one image"
        )
    if isinstance(value, list | tuple):
        if not all(isinstance(item, str) for item in value):
            raise ValueError(f"{setting} = {value!r} is not allowed: list images as strings")
        value = {item: item for item in value}
    if not isinstance(value, Mapping):
        raise ValueError(
            f"{setting} = {value!r} is not allowed: use a dict {{key: image}}, a list of images, "
            "'*' or a callable returning one of these"
        )
    for key, image in value.items():
        if not (isinstance(key, str) and key and isinstance(image, str) and image):
            raise ValueError(
                f"{setting}: the entry {key!r}: {image!r} is not allowed: keys and images must be "
                "non-empty strings"
            )
    return dict(value)


def options_form_html(allowed: AllowedImages, image: str) -> str:
    """The spawn form: a `<select name="image">` of the allowed keys, or '' when there is
    nothing to choose (`"*"`, or fewer than two images). The key of `image` is preselected."""
    if isinstance(allowed, str) or len(allowed) <= 1:
        return ""
    selected = next((key for key in allowed if key == image), None)
    if selected is None:
        selected = next((key for key, value in allowed.items() if value == image), None)
    options = "\n".join(
        '  <option value="{0}"{1}>{0}</option>'.format(
            html.escape(key, quote=True), " selected" if key == selected else ""
        )
        for key in allowed
    )
    return (
        '<label for="image">Select an image:</label>\n'
        '<select class="form-select" id="image" name="image" required autofocus>\n'
        f"{options}\n"
        "</select>\n"
    )


def image_from_form(form_data: dict[str, Any]) -> dict[str, Any]:
    """The default `options_from_form`: `{"image": <the selected key>}` when the form (or the
    query, `?opt-image=`) has an image, else `{}`; every other field is dropped."""
    image = form_data.get("image") if isinstance(form_data, Mapping) else None
    if isinstance(image, list | tuple):
        image = image[0] if image else None
    return {"image": image} if image else {}


DOCKER_HUB_NAMES = {"docker.io", "index.docker.io", "registry-1.docker.io"}
CREDENTIAL_KEYS = ({"username", "password"}, {"identitytoken"}, {"config"})


def registry_host(name: str) -> str:
    """A registry as images name it: no scheme or path; Docker Hub's names are `docker.io`."""
    host = name.split("://", 1)[-1].split("/", 1)[0]
    return "docker.io" if host in DOCKER_HUB_NAMES else host


def check_credentials_entry(setting: str, registry: Any, entry: Any) -> None:
    """One `registry_credentials` entry; `TraitError` names the registry and the keys, never
    a value."""
    if not isinstance(registry, str) or not registry:
        raise TraitError(f"{setting}: registry names must be non-empty strings, not {registry!r}")
    keys = set(entry) if isinstance(entry, Mapping) else None
    if keys not in CREDENTIAL_KEYS or not all(isinstance(v, str) and v for v in entry.values()):
        shown = sorted(map(str, keys)) if keys is not None else type(entry).__name__
        raise TraitError(
            f"{setting}[{registry!r}] has {shown}: use non-empty strings for either "
            "username and password, or identitytoken, or config (the path of a config.json)"
        )


def read_docker_config(setting: str, path: str, only: str | None) -> dict[str, dict[str, str]]:
    """The credentials in a Docker client `config.json` (`auths`: base64 `auth` of
    `user:password`, or `identitytoken`), by registry host; only `only` when given. An entry
    that needs a credential helper is an error naming the registry."""
    import base64
    import json

    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except OSError as e:
        raise TraitError(f"{setting}: cannot read {path}: {e.strerror}") from None
    except ValueError:
        raise TraitError(f"{setting}: {path} is not a JSON Docker client configuration") from None
    auths = config.get("auths") if isinstance(config, Mapping) else None
    out: dict[str, dict[str, str]] = {}
    for name, entry in (auths or {}).items():
        host = registry_host(str(name))
        if (only is not None and host != only) or not isinstance(entry, Mapping):
            continue
        if entry.get("identitytoken"):
            out[host] = {"identitytoken": str(entry["identitytoken"])}
            continue
        try:
            user, _, password = base64.b64decode(entry.get("auth", "")).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            user = password = ""
        if user and password:
            out[host] = {"username": user, "password": password}
    helpers = dict(config.get("credHelpers") or {}) if isinstance(config, Mapping) else {}
    wanted = [only] if only is not None else []
    for host in wanted + [h for h in map(registry_host, helpers) if only is None]:
        if host not in out and (host in map(registry_host, helpers) or config.get("credsStore")):
            raise TraitError(
                f"{setting}: {path} keeps the credentials of registry {host} in a credential "
                "helper, which rustdocker does not run: give them in registry_credentials"
            )
    return out


def refusal(message: str, *, reason: str, status_code: int = 400) -> web.HTTPError:
    """The exception that refuses a request: JupyterHub 6's `SpawnException` (shown to the user,
    logged without a traceback), else a `tornado.web.HTTPError` with the same status and message."""
    if _SpawnException is not None:
        error: web.HTTPError = _SpawnException(message, reason=reason, status_code=status_code)
        return error
    return web.HTTPError(status_code, "%s", message)


async def maybe_await(value: Any) -> Any:
    """`value`, awaited if it is awaitable (for settings that may be async callables)."""
    if inspect.isawaitable(value):
        return await value
    return value


def default_image() -> str:
    """The singleuser image matching the running JupyterHub's version."""
    import jupyterhub

    major, minor = jupyterhub.version_info[:2]
    return f"quay.io/jupyterhub/singleuser:{major}.{minor}"


async def _image_options_form(spawner: ImageChoice) -> str:
    """`options_form` when `allowed_images` is a callable: built at every display."""
    return options_form_html(await spawner._get_allowed_images(), spawner.image)


class ImageChoice(SpawnerPart):
    """The image a server runs, the choice users have, and when it is pulled."""

    image = Unicode(
        help="""The image the user's server runs in.

        The default follows the running JupyterHub's version,
        `quay.io/jupyterhub/singleuser:<major>.<minor>`, so hub and server match. The image must
        start `jupyterhub-singleuser` (its CMD, or `cmd`). With `remove = False`, a kept
        container made from another image is made anew at its next start (its volumes are
        kept; see `on_config_change`).
        An `image` user option allowed by `allowed_images` replaces it for that start.

        Example: `c.DockerSpawner.image = "quay.io/jupyter/scipy-notebook:2024-12-02"`
        """,
    ).tag(config=True)

    @default("image")
    def _image_default(self) -> str:
        return default_image()

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
                await maybe_await(value(self)),
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

    def _image_option_taken(self) -> bool:
        """Whether the `image` user option means something else this start (a profile's option
        of that name)."""
        return False

    async def _apply_image_option(self) -> None:
        """start()'s first step: the `image` user option, checked, becomes `image`."""
        if self._image_without_option is None:
            # start() without the hub's preparation.
            self._undo_image_option()
            self._image_without_option = self.image
        try:
            options = self.user_options if isinstance(self.user_options, dict) else {}
            requested = None if self._image_option_taken() else options.get("image")
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

    registry_credentials = Union(
        [Unicode(), Dict()],
        default_value={},
        help="""Credentials for private registries, sent with pulls as the engine expects them
        (no `docker login` on the Docker host needed).

        A dict `{registry: credentials}`, the registry as in the image's name
        (`registry.example.org`, `127.0.0.1:5000`; `docker.io` for Docker Hub), each either
        `{"username": ..., "password": ...}` (a password or an access token),
        `{"identitytoken": ...}`, or `{"config": "/path/to/config.json"}` (that registry's entry
        in a Docker client configuration, as `docker login` writes it); or the path of such a
        `config.json` for every registry in it. Files are read at each start, so rotated
        credentials apply without a restart. Credential helpers (`credsStore`, `credHelpers`)
        are not run: an entry that needs one is an error naming the registry. SwarmSpawner
        sends them with the service, so the node that runs it can pull. A start joins a pull
        of its image already in flight only when that pull uses the same credentials.

        Never logged, never in an error or a progress message. A pull the registry refuses
        fails the start with the registry's own message, naming the registry.

        Example::

            c.DockerSpawner.registry_credentials = {
                "registry.example.org": {"username": "robot$hub", "password": "..."},
                "ghcr.io": {"config": "/etc/jupyterhub/docker-config.json"},
            }
        """,
    ).tag(config=True)

    @validate("registry_credentials")
    def _validate_registry_credentials(self, proposal: Any) -> Any:
        value = proposal["value"]
        setting = f"{type(self).__name__}.registry_credentials"
        if isinstance(value, str):
            if not value:
                raise TraitError(f"{setting} = '' is not allowed: give the path of a config.json")
            return value
        if not isinstance(value, Mapping):
            raise TraitError(f"{setting} is not allowed: use a dict or the path of a config.json")
        for registry, entry in value.items():
            check_credentials_entry(setting, registry, entry)
        return value

    def resolved_registry_credentials(self) -> dict[str, dict[str, str]]:
        """`registry_credentials` as the core takes them: `{registry: {username, password} |
        {identitytoken}}`, config files read now. `TraitError` names the setting, the registry
        and the file, never a secret."""
        setting = f"{type(self).__name__}.registry_credentials"
        value = self.registry_credentials
        if isinstance(value, str):
            return read_docker_config(setting, value, None)
        out: dict[str, dict[str, str]] = {}
        for registry, entry in value.items():
            host = registry_host(registry)
            if "config" in entry:
                found = read_docker_config(setting, entry["config"], host)
                if host not in found:
                    raise TraitError(
                        f"{setting}: {entry['config']} has no credentials for registry {host}"
                    )
                out[host] = found[host]
            else:
                out[host] = {k: v for k, v in entry.items() if v}
        return out

    pull_stall_timeout = Float(
        120.0,
        help="""Seconds a pull may receive nothing from the registry before the start fails
        with an error naming the image and the registry (a registry that stopped sending would
        otherwise hold the spawn until `start_timeout`). A slow but moving pull is never cut
        short. From 1 to 86400.

        Example: `c.DockerSpawner.pull_stall_timeout = 300`
        """,
    ).tag(config=True)

    @validate("pull_stall_timeout")
    def _validate_pull_stall_timeout(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not 1.0 <= value <= 86400.0:
            raise TraitError(
                f"{type(self).__name__}.pull_stall_timeout = {value!r} is not allowed: use a "
                "number of seconds from 1 to 86400"
            )
        return value

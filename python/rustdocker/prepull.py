"""Images ready before users ask: the opt-in pre-pull (`pre_pull`), which pulls the images users
may choose, one at a time, in the background of the hub from when it starts.

The pull itself runs in the core, detached from Python (nothing is left awaiting when the hub
exits), through the same one-pull-per-image registry as the starts: a start that needs an image
the pre-pull is pulling joins that pull and shows its progress.

When the hub starts: right after JupyterHub's `init_spawners` step (see
`schedule_at_hub_start`). A spawner made outside a hub never starts it.
"""

from __future__ import annotations

import asyncio
import functools
import json
from types import SimpleNamespace
from typing import Any

from traitlets import Bool, List, Unicode

from .profiles import Profiles, normalize_profile_list

_tasks: set[asyncio.Task[Any]] = set()
_scheduled = False


class PrePull(Profiles):
    """Which images the pre-pull fetches, and starting it."""

    pre_pull = Bool(
        False,
        help="""Pull the images users may choose in the background when the hub starts, one at
        a time, so the first spawns find them ready.

        The images: `image`, the values of `allowed_images`, the images named by
        `profile_list` (`image` in its overrides, without a `{value}`), then `pre_pull_images`.
        A callable `allowed_images` or `profile_list` depends on the user, so it is not called:
        list those images in `pre_pull_images`. Images the engine has are skipped (unless
        `pull_policy` is `always`). Progress goes to the hub's log. A start that
        needs an image being pulled joins that pull (one pull per image at a time, whoever
        started it). Nothing is pulled with `pull_policy` `never` or `skip`, nor by
        SwarmSpawner (each swarm node pulls for itself).

        Example: `c.DockerSpawner.pre_pull = True`
        """,
    ).tag(config=True)

    pre_pull_images = List(
        Unicode(),
        help="""More images for the pre-pull (`pre_pull`), e.g. those a callable
        `allowed_images` or `profile_list` may return.

        Example: `c.DockerSpawner.pre_pull_images = ["quay.io/jupyter/r-notebook:2024-12-02"]`
        """,
    ).tag(config=True)

    def pre_pull_list(self) -> list[str]:
        """The images the pre-pull fetches, in order, each once."""
        images = [self.image]
        allowed = self.allowed_images
        if isinstance(allowed, dict):
            images += list(allowed.values())
        if not callable(self.profile_list):
            for profile in normalize_profile_list(
                self.profile_list, self._profile_setting, self._is_setting
            ):
                overrides = [profile["override"]]
                for option in profile["options"].values():
                    overrides += [c["override"] for c in option["choices"].values()]
                for override in overrides:
                    image = override.get("image")
                    if isinstance(image, str) and image and "{value}" not in image:
                        images.append(image)
        images += list(self.pre_pull_images)
        return list(dict.fromkeys(images))

    async def start_pre_pull(self) -> bool:
        """Starts the pre-pull of `pre_pull_list()` in the background; whether it started
        (False when `pre_pull` is off, the policy pulls nothing, or one is already running)."""
        if not self.pre_pull:
            return False
        if self.pull_policy.lower() in ("never", "skip"):
            self.log.info("pre-pull: nothing to do with pull_policy %r", self.pull_policy)
            return False
        images = self.pre_pull_list()
        client = await self.docker_client()
        always = self.pull_policy.lower() == "always"
        credentials = json.dumps(self.resolved_registry_credentials())
        started: bool = client.pre_pull(images, float(self.pull_stall_timeout), always, credentials)
        if started:
            self.log.info(
                "pre-pull: %d images in the background: %s", len(images), ", ".join(images)
            )
        return started


def _stand_in_user() -> Any:
    """The user a spawner made only to read the configuration belongs to: nobody."""
    return SimpleNamespace(
        name="pre-pull",
        escaped_name="pre-pull",
        url="/user/pre-pull/",
        id=0,
        admin=False,
        groups=[],
        spawners={},
        orm_user=SimpleNamespace(name="pre-pull", groups=[]),
    )


async def _pre_pull_for(app: Any, base: type[PrePull]) -> None:
    # Once the hub has its Hub object, the configuration is loaded.
    for _ in range(600):
        if getattr(app, "hub", None) is not None:
            break
        await asyncio.sleep(0.1)
    cls: Any = getattr(app, "spawner_class", None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        return
    if any(c.__name__ == "SwarmSpawner" for c in cls.__mro__):
        return  # each swarm node pulls for itself
    try:
        user = _stand_in_user()
        spawner = cls(
            config=app.config,
            hub=app.hub,
            user=user,
            orm_spawner=SimpleNamespace(name="", server=None, user=user),
        )
        await spawner.start_pre_pull()
    except Exception:  # a courtesy: never in the way of the hub starting
        app.log.exception("pre-pull: could not start")


def schedule_at_hub_start(base: type[PrePull]) -> None:
    """Start the pre-pull when a JupyterHub in this process has set up its spawners. Called
    when the spawner module is imported; does nothing outside a hub (tests, scripts).

    JupyterHub has no start-up hook for spawners, and it imports every installed spawner
    before its event loop runs (to list them), so this wraps its `init_spawners` step (the one
    that restores the running servers at start-up) to schedule the pre-pull right after it; the
    step itself is unchanged."""
    try:
        from jupyterhub.app import JupyterHub
    except ImportError:  # pragma: no cover - jupyterhub is a dependency
        return
    original = getattr(JupyterHub, "init_spawners", None)
    if original is None or getattr(original, "_rustdocker_pre_pull", False):
        return

    @functools.wraps(original)
    async def init_spawners(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await original(self, *args, **kwargs)
        finally:
            start_pre_pull_once(self, base)

    init_spawners._rustdocker_pre_pull = True  # type: ignore[attr-defined]
    JupyterHub.init_spawners = init_spawners


def start_pre_pull_once(app: Any, base: type[PrePull]) -> None:
    """Schedules the pre-pull for `app` (a JupyterHub), once per process, on the running loop."""
    global _scheduled
    if _scheduled:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    _scheduled = True
    task = loop.create_task(_pre_pull_for(app, base))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)

"""Profiles through a real JupyterHub: chosen through the REST API's `user_options`, the spawn
form in headless Chromium, and the `opt-` query; refused with HTTP 400 naming what is allowed;
and what the engine shows for the container each choice made.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .browser import Steps, log_in, wait_for_lab
from .hub import Hub, containers, hub_of_its_own

PROFILES = """
c.DockerSpawner.profile_list = [
    {
        "display_name": "Small",
        "description": "512 MB, one CPU",
        "default": True,
        "spawner_override": {"mem_limit": "512M", "cpu_limit": 1},
    },
    {
        "display_name": "Large",
        "slug": "large",
        "description": "More memory, a size to choose and a project of your own",
        "spawner_override": {"environment": {"PROFILE": "large"}},
        "profile_options": {
            "size": {
                "display_name": "Memory",
                "choices": {
                    "m": {"display_name": "1 GB", "spawner_override": {"mem_limit": "1G"}},
                    "l": {"display_name": "1.5 GB", "spawner_override": {"mem_limit": "1536M"}},
                },
            },
            "project": {
                "display_name": "Project",
                "choices": {"none": {"display_name": "None"}},
                "unlisted_choice": {
                    "enabled": True,
                    "display_name": "Project name",
                    "validation_regex": "^[a-z][a-z0-9-]{0,30}$",
                    "validation_message": "lower-case letters, digits and '-'",
                    "spawner_override": {"environment": {"PROJECT": "{value}"}},
                },
            },
        },
    },
]
"""

MIB = 1024**2


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """This module's hub offers profiles (it overrides the session's `hub`, so `user` and
    `browser` use this one)."""
    with hub_of_its_own(tmp_path_factory, "profiles", PROFILES) as h:
        yield h


def env_of(info: dict[str, Any]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in info["Config"]["Env"])


def test_profiles_through_the_rest_api(hub: Hub, user: str) -> None:
    path = f"/users/{user}/server"
    refusals = [
        ({"profile": "huge"}, "Profile 'huge' does not exist: choose one of: small, large"),
        ({"profile": "large", "size": "xl"}, "'xl' is not a choice: choose one of: m, l"),
        (
            {"profile": "large", "project--unlisted-choice": "../etc"},
            "is not allowed: lower-case letters, digits and '-'",
        ),
    ]
    for options, needle in refusals:
        r = hub.api("POST", path, json=options)
        assert r.status_code == 400, (options, r.status_code, r.text)
        assert needle in r.json()["message"], r.text
        assert containers(hub.hub_id, user) == []  # refused before anything was made
    assert hub.servers(user) == {}

    r = hub.api(
        "POST", path, json={"profile": "large", "size": "l", "project--unlisted-choice": "apollo"}
    )
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(user)
    [info] = containers(hub.hub_id, user)
    assert info["HostConfig"]["Memory"] == 1536 * MIB
    env = env_of(info)
    assert (env["PROFILE"], env["PROJECT"], env["MEM_LIMIT"]) == (
        "large",
        "apollo",
        str(1536 * MIB),
    )
    hub.stop_server(user)

    # Another profile: none of the last start's overrides are left on the hub's spawner. (A
    # start without options reuses the last ones: JupyterHub keeps them as the defaults.)
    r = hub.api("POST", path, json={"profile": "small"})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(user)
    [info] = containers(hub.hub_id, user)
    assert info["HostConfig"]["Memory"] == 512 * MIB
    assert info["HostConfig"]["CpuQuota"] == 100_000
    assert "PROFILE" not in env_of(info) and "PROJECT" not in env_of(info)


@pytest.mark.browser
def test_profile_chosen_in_the_browser(hub: Hub, user: str, steps: Steps) -> None:
    page = steps.page
    log_in(steps, hub, user)

    # The spawn page shows the profiles as a form; choose "Large", 1 GB and a project.
    page.goto(f"{hub.url}/hub/spawn")
    page.locator("#profile-item-large").wait_for()
    assert page.locator("#profile-item-small").is_checked()  # the default
    other = page.locator("#profile-option-large--project--unlisted-choice")
    assert other.is_hidden()  # shown only while "Other..." is selected
    steps.snap("form")
    page.select_option("#profile-option-large--size", "m")
    assert page.locator("#profile-item-large").is_checked()  # touching an option selects it
    page.select_option("#profile-option-large--project", "--unlisted-choice")
    other.fill("gemini")
    steps.snap("chosen")
    page.locator("form input[type=submit], form button[type=submit]").first.click()
    wait_for_lab(page, user)
    [info] = containers(hub.hub_id, user)
    assert info["HostConfig"]["Memory"] == 1024 * MIB
    assert env_of(info)["PROJECT"] == "gemini"
    hub.stop_server(user)

    # The `opt-` query skips the form.
    page.goto(f"{hub.url}/hub/spawn?opt-profile=large&opt-profile-option-large--size=l")
    wait_for_lab(page, user)
    [info] = containers(hub.hub_id, user)
    assert info["HostConfig"]["Memory"] == 1536 * MIB
    assert "PROJECT" not in env_of(info)

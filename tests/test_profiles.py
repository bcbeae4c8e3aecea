"""Per-user settings: `environment` (callables and overrides), `group_overrides` applied to
rustdocker's own settings, and `profile_list` (profiles, their options, the spawn form)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from jupyterhub.spawner import SpawnException
from traitlets import TraitError

from rustdocker.profiles import (
    UNLISTED,
    normalize_profile_list,
    profile_options_from_form,
    profiles_form_html,
)

from conftest import (
    TINY_IMAGE,
    create_body,
    env_of,
    inspect,
    make_spawner,
    warnings_of,
)


async def test_environment_callables_and_overrides() -> None:
    s = make_spawner(
        "eve",
        mem_limit="1G",
        environment={"WHO": lambda spawner: spawner.user.name.upper(), "MEM_LIMIT": "custom"},
    )
    env = (await s.build_spec())["env"]
    assert env["WHO"] == "EVE"
    assert env["MEM_LIMIT"] == "custom"  # `environment` wins over the computed value


async def test_group_overrides_with_our_traits() -> None:
    s = make_spawner(
        "gina",
        volumes={"home-{username}": "/home/jovyan"},
        group_overrides={
            "01-big": {
                "groups": ["big"],
                "spawner_override": {
                    "mem_limit": "2G",
                    "cpu_limit": lambda spawner: 1.5,
                    "volumes": {"/srv/data": {"bind": "/data", "mode": "ro"}},
                },
            },
            "02-other": {"groups": ["other"], "spawner_override": {"mem_limit": "8G"}},
        },
    )
    s.user.groups = [SimpleNamespace(name="big")]
    await s.apply_group_overrides()
    assert s.mem_limit == 2 * 1024**3
    assert s.cpu_limit == 1.5
    spec = await s.build_spec()
    assert spec["mem_limit"] == 2 * 1024**3
    assert {source: b["bind"] for source, b in s.volume_binds.items()} == {
        "home-gina": "/home/jovyan",
        "/srv/data": "/data",
    }
    body = create_body(spec)
    assert body["HostConfig"]["Binds"] == [
        "home-gina:/home/jovyan:rw",
        "/srv/data:/data:ro",
    ]
    # Another spawner with the same configuration is not affected (the dict was merged into
    # this spawner's copy).
    assert make_spawner("gina", volumes={"home-{username}": "/home/jovyan"}).volumes == {
        "home-{username}": "/home/jovyan"
    }
    with pytest.raises(TraitError, match="mem_limit"):
        bad = make_spawner(
            group_overrides={"1": {"groups": ["big"], "spawner_override": {"mem_limit": "2g"}}}
        )
        bad.user.groups = [SimpleNamespace(name="big")]
        await bad.apply_group_overrides()


# ------------------------------------------------------------------ on the engine


@pytest.mark.docker
async def test_group_overrides_and_environment_on_the_engine(unique: str) -> None:
    s = make_spawner(
        unique,
        volumes={"home-{username}": "/home/jovyan/work"},
        environment={"GREETING": lambda spawner: f"hello {spawner.user.name}"},
        group_overrides={
            "10-big": {
                "groups": ["big"],
                "spawner_override": {
                    "mem_limit": "256M",
                    "volumes": {"shared-{username}": "/shared"},
                    "environment": {"TIER": "big"},
                },
            }
        },
        remove=True,
    )
    s.user.groups = [SimpleNamespace(name="big")]
    await s.apply_group_overrides()
    await s.start()
    info = inspect("container", s.object_name)
    assert info["HostConfig"]["Memory"] == 256 * 1024**2
    assert sorted(info["HostConfig"]["Binds"]) == [
        f"home-{unique}:/home/jovyan/work:rw",
        f"shared-{unique}:/shared:rw",
    ]
    env = env_of(info)
    assert env["GREETING"] == f"hello {unique}"
    assert env["TIER"] == "big"
    assert env["MEM_LIMIT"] == str(256 * 1024**2)
    await s.stop()


# ------------------------------------------------------------------ profile_list

PROFILES: list[dict[str, Any]] = [
    {
        "display_name": "Small <fast>",
        "description": "1 CPU & 1 GB",
        "spawner_override": {"mem_limit": "1G", "cpu_limit": 1, "environment": {"SIZE": "s"}},
    },
    {
        "display_name": "Large",
        "slug": "large",
        "default": True,
        "kubespawner_override": {
            "mem_limit": "4G",
            "cpu_limit": 2,
            "environment": {"SIZE": "l", "KEEP": None},
            "extra_host_config": {
                "device_requests": [{"Driver": "nvidia", "Count": 1, "Capabilities": [["gpu"]]}]
            },
        },
        "profile_options": {
            "image": {
                "display_name": "Image",
                "choices": {
                    "base": {"display_name": "Base", "spawner_override": {"image": "base:1"}},
                    "sci": {
                        "display_name": "Science",
                        "default": True,
                        "kubespawner_override": {"image_spec": "sci:2"},
                    },
                },
                "unlisted_choice": {
                    "enabled": True,
                    "display_name": "Image tag",
                    "validation_regex": r"^[a-z0-9.-]+$",
                    "validation_message": "a tag: lower-case letters, digits, '.', '-'",
                    "spawner_override": {"image": "sci:{value}"},
                },
            },
            "home": {
                "choices": {
                    "ro": {"spawner_override": {"read_only_volumes": {"/srv/ro": "/ro"}}},
                    "none": {},
                },
            },
        },
    },
]


def profiled(*, user_options: dict[str, Any] | None = None, **settings: Any) -> Any:
    settings.setdefault("profile_list", PROFILES)
    settings.setdefault("environment", {"KEEP": "yes"})
    s = make_spawner("pia", **settings)
    s.user_options = user_options or {}
    return s


async def hub_prepares(s: Any, user_options: dict[str, Any]) -> None:
    """What JupyterHub does before `start()`: user options, group overrides, apply_user_options."""
    s.user_options = user_options
    await s.apply_group_overrides()
    await s._run_apply_user_options(user_options)


def test_profile_list_is_checked_when_loaded() -> None:
    profiles = normalize_profile_list(PROFILES, "S.profile_list", lambda name: True)
    assert [p["slug"] for p in profiles] == ["small-fast", "large"]
    assert [p["default"] for p in profiles] == [False, True]
    # KubeSpawner's names for settings that exist here are translated.
    assert profiles[1]["options"]["image"]["choices"]["sci"]["override"] == {"image": "sci:2"}
    assert profiles[1]["options"]["image"]["default"] == "sci"
    assert profiles[1]["options"]["home"]["default"] == "ro"  # the first when none is marked
    # KubeSpawner's dict form: values in the order of the keys.
    assert [
        p["slug"]
        for p in normalize_profile_list(
            {"b": {"display_name": "B"}, "a": {"display_name": "A"}}, "x", lambda n: True
        )
    ] == ["a", "b"]


@pytest.mark.parametrize(
    ("profile_list", "needle"),
    [
        ("small", "use a list of profiles"),
        ([{"slug": "x"}], "display_name must be a non-empty string"),
        ([{"display_name": "A", "weight": 1}], "unknown keys 'weight'"),
        (
            [{"display_name": "GPU", "kubespawner_override": {"node_selector": {"gpu": "y"}}}],
            "'node_selector' is not a setting of this spawner",
        ),
        (
            [{"display_name": "A", "spawner_override": {}, "kubespawner_override": {}}],
            "both spawner_override and kubespawner_override",
        ),
        ([{"display_name": "A"}, {"display_name": "a"}], "the slug 'a' is used by another"),
        ([{"display_name": "A", "profile_options": {"o": {}}}], "offers nothing"),
        (
            [
                {
                    "display_name": "A",
                    "profile_options": {
                        "o": {"unlisted_choice": {"enabled": True, "validation_regex": "(["}}
                    },
                }
            ],
            "is not a valid regular expression",
        ),
        ([{"display_name": "A", "profile_options": {"a b": {"choices": {"x": {}}}}}], "a b"),
    ],
)
def test_profile_list_mistakes_are_named(profile_list: Any, needle: str) -> None:
    with pytest.raises(TraitError, match=r"DockerSpawner\.profile_list") as info:
        make_spawner(profile_list=profile_list)
    assert needle in str(info.value)


def test_profile_form_is_bootstrap_and_escaped() -> None:
    s = profiled()
    assert callable(s.options_form)
    html_text = profiles_form_html(normalize_profile_list(PROFILES, "x", lambda n: True), {})
    # Everything the operator wrote is escaped; the default profile and choice are preselected.
    assert "Small &lt;fast&gt;" in html_text and "<fast>" not in html_text
    assert "1 CPU &amp; 1 GB" in html_text
    assert 'name="profile" id="profile-item-large" value="large" checked' in html_text
    assert 'name="profile-option-large--image"' in html_text
    assert '<option value="sci" selected>Science</option>' in html_text
    assert 'name="profile-option-large--image--unlisted-choice"' in html_text
    assert 'class="form-select"' in html_text and 'class="form-check-input"' in html_text
    # The last choice is preselected instead.
    again = profiles_form_html(
        normalize_profile_list(PROFILES, "x", lambda n: True),
        {"profile": "large", "image": "base", "home--unlisted-choice": "x"},
    )
    assert '<option value="base" selected>Base</option>' in again
    # Well formed: every element opened is closed.
    check_balanced(html_text)


def check_balanced(text: str) -> None:
    import html.parser

    void = {"input", "br", "img", "meta", "link"}
    stack: list[str] = []

    class Parser(html.parser.HTMLParser):
        def handle_starttag(self, tag: str, attrs: Any) -> None:
            if tag not in void:
                stack.append(tag)

        def handle_endtag(self, tag: str) -> None:
            assert stack and stack.pop() == tag, f"unbalanced </{tag}>"

    Parser().feed(text)
    assert stack == []


def test_profile_options_from_form_and_query() -> None:
    form = {
        "profile": ["large"],
        "profile-option-large--image": [UNLISTED],
        "profile-option-large--image--unlisted-choice": ["3.1"],
        "profile-option-large--home": ["none"],
        "profile-option-small-fast--x": ["ignored"],  # another profile's field
        "_xsrf": ["token"],
    }
    assert profile_options_from_form(form) == {
        "profile": "large",
        "image--unlisted-choice": "3.1",
        "home": "none",
    }
    # A free-form text counts only while its select says "Other...".
    form["profile-option-large--image"] = ["base"]
    assert profile_options_from_form(form)["image"] == "base"
    assert "image--unlisted-choice" not in profile_options_from_form(form)
    assert profile_options_from_form({}) == {}
    assert profile_options_from_form({"image": ["A"]}) == {"image": "A"}


async def test_profile_applied_for_one_start_then_undone(fake_client: Any) -> None:
    s = profiled()
    await hub_prepares(s, {"profile": "large", "image": "base"})
    await s.start()
    spec = json.loads(fake_client.called("start_server")[-1]["spec_json"])
    assert spec["image"] == "base:1"
    assert spec["mem_limit"] == 4 * 1024**3
    assert spec["env"]["SIZE"] == "l" and "KEEP" not in spec["env"]  # None removes a key
    assert spec["extra_host_config"]["device_requests"][0]["Driver"] == "nvidia"
    body = create_body(spec)
    assert body["HostConfig"]["Memory"] == 4 * 1024**3
    assert body["HostConfig"]["DeviceRequests"][0]["Capabilities"] == [["gpu"]]
    assert "/srv/ro:/ro:ro" in body["HostConfig"]["Binds"]
    # The next start with another profile sees none of the first one's overrides.
    await hub_prepares(s, {"profile": "small-fast"})
    await s.start()
    spec = json.loads(fake_client.called("start_server")[-1]["spec_json"])
    assert spec["image"] == TINY_IMAGE
    assert spec["mem_limit"] == 1024**3
    assert spec["env"]["SIZE"] == "s" and spec["env"]["KEEP"] == "yes"
    assert spec["extra_host_config"] == {}
    assert s.read_only_volumes == {}
    # The configured values themselves were never changed in place.
    assert PROFILES[1]["kubespawner_override"]["environment"] == {"SIZE": "l", "KEEP": None}


async def test_default_profile_and_unlisted_choice(fake_client: Any) -> None:
    s = profiled()
    await hub_prepares(s, {})
    assert (s.image, s.mem_limit) == ("sci:2", 4 * 1024**3)  # default profile, default choice
    await hub_prepares(s, {"profile": "large", "image--unlisted-choice": "3.1-rc"})
    assert s.image == "sci:3.1-rc"
    # start() without the hub's preparation applies the profile itself.
    s2 = profiled(user_options={"profile": "large", "image": "base"})
    await s2.start()
    assert json.loads(fake_client.called("start_server")[-1]["spec_json"])["image"] == "base:1"


@pytest.mark.parametrize(
    ("user_options", "needle"),
    [
        ({"profile": "huge"}, "Profile 'huge' does not exist: choose one of: small-fast, large"),
        ({"profile": ["large"]}, "does not exist"),
        (
            {"profile": "large", "image": "nope"},
            "option 'image': 'nope' is not a choice: choose one of: base, sci",
        ),
        (
            {"profile": "large", "image--unlisted-choice": "x; rm -rf /"},
            "is not allowed: a tag: lower-case letters",
        ),
        (
            {"profile": "large", "home--unlisted-choice": "/etc"},
            "option 'home' takes no value of your own: choose one of: ro, none",
        ),
        ({"profile": "large", "image--unlisted-choice": "a" * 2000}, "at most 1000 characters"),
        # `$` matches before a trailing line break: the regex alone lets it through.
        ({"profile": "large", "image--unlisted-choice": "3.1-rc\n"}, "a control character"),
        ({"profile": "large", "image--unlisted-choice": "3.1\x00rc"}, "a control character"),
    ],
)
async def test_bad_profile_choices_are_400(
    fake_client: Any, user_options: dict[str, Any], needle: str
) -> None:
    s = profiled()
    with pytest.raises(SpawnException) as info:
        await hub_prepares(s, user_options)
    assert info.value.status_code == 400
    assert needle in str(info.value)
    assert fake_client.calls == []


async def test_profiles_with_allowed_images(fake_client: Any) -> None:
    # A profile's option named `image` is the profile's; the `image` option of allowed_images
    # still applies to a profile without one, after the profile's override.
    plist = [
        {"display_name": "Plain", "spawner_override": {"mem_limit": "1G"}},
        {
            "display_name": "Pick",
            "profile_options": {
                "image": {"choices": {"x": {"spawner_override": {"image": "x:1"}}}}
            },
        },
    ]
    s = profiled(profile_list=plist, allowed_images={"Other": "other:1", "More": "more:1"})
    await hub_prepares(s, {"profile": "pick", "image": "x"})
    await s.start()
    assert json.loads(fake_client.called("start_server")[-1]["spec_json"])["image"] == "x:1"
    await hub_prepares(s, {"profile": "plain", "image": "Other"})
    await s.start()
    spec = json.loads(fake_client.called("start_server")[-1]["spec_json"])
    assert (spec["image"], spec["mem_limit"]) == ("other:1", 1024**3)
    with pytest.raises(SpawnException, match="choose one of: Other, More"):
        await hub_prepares(s, {"profile": "plain", "image": "evil:1"})
        await s.start()
    # The form shows the profiles and, below them, the images.
    form = await s.options_form(s)
    assert 'name="profile"' in form and 'name="image"' in form


async def test_image_option_of_one_start_never_becomes_the_next_ones_image(
    fake_client: Any,
) -> None:
    # A profile that sets `image`, and the `image` user option choosing the configured image:
    # the next start, with a profile that sets no image, runs the configured image, not the
    # first profile's (the image option was undone after the profile it came after).
    plist = [
        {"display_name": "Plain"},
        {"display_name": "GPU", "spawner_override": {"image": "gpu:1"}},
    ]
    allowed = {"base": TINY_IMAGE, "other": "other:1"}
    s = profiled(profile_list=plist, allowed_images=allowed)
    await hub_prepares(s, {"profile": "gpu", "image": "base"})
    await s.start()
    assert json.loads(fake_client.called("start_server")[-1]["spec_json"])["image"] == TINY_IMAGE
    await hub_prepares(s, {"profile": "plain"})
    await s.start()
    assert json.loads(fake_client.called("start_server")[-1]["spec_json"])["image"] == TINY_IMAGE
    # The same through start() alone (no hub preparation).
    s2 = profiled(profile_list=plist, allowed_images=allowed)
    s2.user_options = {"profile": "gpu", "image": "base"}
    await s2.start()
    s2.user_options = {"profile": "plain"}
    await s2.start()
    assert json.loads(fake_client.called("start_server")[-1]["spec_json"])["image"] == TINY_IMAGE


async def test_unlisted_value_goes_into_keys_too(fake_client: Any) -> None:
    # As KubeSpawner's recursive formatting: `{value}` in a key of the override (a volume's
    # host path, an environment variable's name) is replaced as well.
    plist = [
        {
            "display_name": "Data",
            "profile_options": {
                "set": {
                    "unlisted_choice": {
                        "enabled": True,
                        "validation_regex": r"^[a-z]+$",
                        "spawner_override": {
                            "read_only_volumes": {"/srv/data/{value}": "/data"},
                            "environment": {"DATASET": "{value}"},
                        },
                    }
                }
            },
        }
    ]
    s = profiled(profile_list=plist)
    await hub_prepares(s, {"set--unlisted-choice": "climate"})
    assert s.read_only_volumes == {"/srv/data/climate": "/data"}
    assert s.environment["DATASET"] == "climate"


async def test_unusable_value_of_ones_own_is_400_and_nothing_stays(fake_client: Any) -> None:
    # A value the regex lets through but the setting refuses is the user's mistake: HTTP 400
    # naming the option, and nothing of the profile stays applied for the next start.
    plist = [
        {
            "display_name": "Custom",
            "spawner_override": {"environment": {"CUSTOM": "1"}},
            "profile_options": {
                "mem": {
                    "unlisted_choice": {
                        "enabled": True,
                        "validation_regex": r"^[0-9a-z]+$",
                        "spawner_override": {"mem_limit": "{value}"},
                    }
                }
            },
        },
        {"display_name": "Plain"},
    ]
    s = profiled(profile_list=plist)
    with pytest.raises(SpawnException) as info:
        await hub_prepares(s, {"profile": "custom", "mem--unlisted-choice": "lots"})
    assert info.value.status_code == 400
    assert "option 'mem'" in str(info.value) and "mem_limit" in str(info.value)
    await hub_prepares(s, {"profile": "plain"})
    await s.start()
    spec = json.loads(fake_client.called("start_server")[-1]["spec_json"])
    assert "CUSTOM" not in spec["env"]


async def test_callable_profile_list_and_values(fake_client: Any) -> None:
    async def profiles(spawner: Any) -> list[dict[str, Any]]:
        groups = {g.name for g in spawner.user.groups}
        out = [{"display_name": "Basic"}]
        if "gpu" in groups:
            out.append(
                {"display_name": "GPU", "spawner_override": {"cpu_limit": lambda spawner: 4.0}}
            )
        return out

    s = profiled(profile_list=profiles)
    with pytest.raises(SpawnException, match="choose one of: basic"):
        await hub_prepares(s, {"profile": "gpu"})
    s.user.groups = [SimpleNamespace(name="gpu")]
    await hub_prepares(s, {"profile": "gpu"})
    assert s.cpu_limit == 4.0
    assert "profile-item-gpu" in await s.options_form(s)
    # A mistake in the callable's result names the callable.
    s.profile_list = lambda spawner: [{"display_name": "X", "spawner_override": {"nope": 1}}]
    with pytest.raises(TraitError, match=r"profile_list \(the callable's result\)"):
        await hub_prepares(s, {})


async def test_bad_override_value_names_profile_and_setting(fake_client: Any) -> None:
    s = profiled(profile_list=[{"display_name": "A", "spawner_override": {"mem_limit": "lots"}}])
    with pytest.raises(TraitError, match=r"profile 'a' sets mem_limit"):
        await hub_prepares(s, {})


async def test_no_profile_list_ignores_profile_option(fake_client: Any, logs: Any) -> None:
    s = make_spawner("pia")
    assert s.options_form == ""
    await hub_prepares(s, {"profile": "gpu"})
    await s.start()
    assert any("no profile_list is configured" in m for m in warnings_of(logs))


@pytest.mark.docker
async def test_profile_and_option_on_the_engine(unique: str) -> None:
    plist = [
        {"display_name": "Small", "spawner_override": {"mem_limit": "128M"}},
        {
            "display_name": "Big",
            "spawner_override": {
                "mem_limit": "384M",
                "cpu_limit": 0.5,
                "environment": {"TIER": "big"},
            },
            "profile_options": {
                "data": {
                    "choices": {
                        "none": {},
                        "scratch": {
                            "spawner_override": {"volumes": {"scratch-{username}": "/scratch"}}
                        },
                    }
                }
            },
        },
    ]
    s = make_spawner(unique, profile_list=plist, remove=True)
    await hub_prepares(s, {"profile": "big", "data": "scratch"})
    await s.start()
    try:
        info = inspect("container", s.object_name)
        assert info["HostConfig"]["Memory"] == 384 * 1024**2
        assert (info["HostConfig"]["CpuQuota"], info["HostConfig"]["CpuPeriod"]) == (
            50_000,
            100_000,
        )
        assert f"scratch-{unique}:/scratch:rw" in info["HostConfig"]["Binds"]
        assert env_of(info)["TIER"] == "big"
    finally:
        await s.stop()
    # The next start, with the default profile, has none of it.
    await hub_prepares(s, {})
    await s.start()
    try:
        info = inspect("container", s.object_name)
        assert info["HostConfig"]["Memory"] == 128 * 1024**2
        assert info["HostConfig"]["CpuQuota"] == 0
        assert not any("/scratch" in b for b in info["HostConfig"]["Binds"] or [])
        assert "TIER" not in env_of(info)
    finally:
        await s.stop()

"""DockerSpawner parity through the Python surface, no Docker engine: image choice, deprecated
names, connectivity settings, renames and SystemUserSpawner."""

from __future__ import annotations

import html.parser
import json
import logging
import pwd
import warnings
from types import SimpleNamespace
from typing import Any

import pytest
from jupyterhub.spawner import SpawnException
from tornado import web
from traitlets import TraitError

import rustdocker
from rustdocker import DockerSpawner, SystemUserSpawner

from conftest import TINY_IMAGE, make_spawner


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="traitlets")
    return caplog


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# ------------------------------------------------------------------ allowed_images


def test_allowed_images_forms() -> None:
    assert make_spawner().allowed_images == {}
    assert make_spawner(allowed_images=["a:1", "b:2"]).allowed_images == {
        "a:1": "a:1",
        "b:2": "b:2",
    }
    assert make_spawner(allowed_images={"A": "a:1"}).allowed_images == {"A": "a:1"}
    assert make_spawner(allowed_images="*").allowed_images == "*"
    assert make_spawner(allowed_images=None).allowed_images == {}


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("a:1", "'*' (any image) is the only string accepted"),
        ([1, 2], "list images as strings"),
        ({"A": 1}, "non-empty strings"),
        ({"": "a:1"}, "non-empty strings"),
        (42, "use a dict"),
    ],
)
def test_allowed_images_invalid_at_config_time(value: Any, needle: str) -> None:
    with pytest.raises(ValueError) as info:
        make_spawner(allowed_images=value)
    assert "DockerSpawner.allowed_images" in str(info.value)
    assert needle in str(info.value)


async def test_allowed_images_callable_called_and_checked_every_time() -> None:
    results: list[Any] = [["a:1"], {"B": "b:2"}, "nope"]
    calls = []

    async def allowed(spawner: Any) -> Any:
        calls.append(spawner.user.name)
        return results[len(calls) - 1]

    s = make_spawner("carol", allowed_images=allowed)
    assert await s.check_allowed("a:1") == "a:1"
    assert await s.check_allowed("B") == "b:2"
    with pytest.raises(ValueError, match="the callable's result"):
        await s.check_allowed("B")
    assert calls == ["carol", "carol", "carol"]
    sync = make_spawner(allowed_images=lambda sp: None)
    with pytest.raises(SpawnException, match="Specifying image to launch is not allowed"):
        await sync.check_allowed("x:1")


# ------------------------------------------------------------------ check_allowed


async def test_check_allowed_resolves_aliases_and_refuses_with_400() -> None:
    s = make_spawner(allowed_images={"Python": "py:1", "R": "r:1"})
    assert await s.check_allowed("Python") == "py:1"
    # DockerSpawner refuses the real image of an aliased entry; it is allowed content.
    assert await s.check_allowed("r:1") == "r:1"
    with pytest.raises(SpawnException) as info:
        await s.check_allowed("evil:latest")
    assert info.value.status_code == 400
    assert isinstance(info.value, web.HTTPError)
    assert info.value.message == "Image 'evil:latest' is not allowed: choose one of: Python, R"
    assert info.value.reason == "image"
    with pytest.raises(SpawnException, match="must be the name of an image"):
        await s.check_allowed({"x": 1})


async def test_check_allowed_empty_refuses_all_but_the_default_image() -> None:
    s = make_spawner(image="default:1")
    with pytest.raises(SpawnException) as info:
        await s.check_allowed("other:1")
    assert info.value.message == "Specifying image to launch is not allowed"
    assert info.value.status_code == 400
    # DockerSpawner refuses this too (quirk 2.21.6): asking for the default is not a choice.
    assert await s.check_allowed("default:1") == "default:1"


async def test_check_allowed_star_allows_anything() -> None:
    s = make_spawner(allowed_images="*")
    assert await s.check_allowed("any/thing:tag") == "any/thing:tag"


async def test_check_image_whitelist_is_a_deprecated_wrapper() -> None:
    s = make_spawner(allowed_images={"A": "a:1"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert await s.check_image_whitelist("A") == "a:1"
    assert [str(w.message) for w in caught if w.category is DeprecationWarning] == [
        "DockerSpawner.check_image_whitelist is deprecated in DockerSpawner 12.0. "
        "Please use DockerSpawner.check_allowed instead."
    ]


# ------------------------------------------------------------------ the image user option


async def test_image_option_applies_to_its_start_only() -> None:
    s = make_spawner(allowed_images={"Alt": "alt:1", "Def": TINY_IMAGE})
    s.user_options = {"image": "Alt"}
    await s._apply_image_option()
    assert s.image == "alt:1"
    spec = await s.build_spec()
    assert spec["image"] == "alt:1"
    assert spec["env"]["JUPYTER_IMAGE_SPEC"] == "alt:1"
    # The next start without the option runs the configured image again.
    s.user_options = {}
    await s._apply_image_option()
    assert s.image == TINY_IMAGE


async def test_image_option_with_the_hub_sequence_and_group_overrides() -> None:
    s = make_spawner(
        allowed_images=[],
        group_overrides={"1": {"groups": ["gpu"], "spawner_override": {"image": "gpu:1"}}},
    )
    s.user.groups = [SimpleNamespace(name="gpu")]
    # The hub: group overrides, user options hook, pre-spawn hook, then start.
    s.user_options = {"image": "gpu:1"}
    await s.apply_group_overrides()
    await s._run_apply_user_options(s.user_options)
    await s._apply_image_option()
    assert s.image == "gpu:1"  # the group's default may be asked for by name
    # A hook setting the image from the option does not make the option "the default".
    s.user_options = {"image": "evil:1"}
    await s.apply_group_overrides()
    s.image = "evil:1"  # e.g. apply_user_options = {"image": "image"}
    with pytest.raises(SpawnException, match="Specifying image to launch is not allowed"):
        await s._apply_image_option()


async def test_refused_image_fails_start_before_anything_else(unique: str) -> None:
    # docker_host points nowhere: a refusal must come before any engine call.
    s = make_spawner(unique, allowed_images=["a:1", "b:1"], docker_host="tcp://127.0.0.1:1")
    s.user_options = {"image": "c:1"}
    with pytest.raises(SpawnException) as info:
        await s.start()
    assert info.value.message == "Image 'c:1' is not allowed: choose one of: a:1, b:1"


def test_options_from_form_default_and_user_configured() -> None:
    s = make_spawner()
    assert s.run_options_from_form({"image": ["a:1"], "other": ["x"]}) == {"image": "a:1"}
    assert s.run_options_from_form({"other": ["x"]}) == {}
    # /hub/spawn?opt-image=a:1: the hub strips the prefix and calls options_from_query.
    assert s.options_from_query({"image": ["a:1"]}) == {"image": "a:1"}
    custom = make_spawner(options_from_form=lambda form: {"custom": form})
    assert custom.run_options_from_form({"image": ["a"]}) == {"custom": {"image": ["a"]}}
    simple = make_spawner(options_from_form="simple")
    assert simple.run_options_from_form({"image": ["a"], "n": ["1"]}) == {"image": "a", "n": "1"}


class _FormParser(html.parser.HTMLParser):
    """Fails on unbalanced tags; collects the select's attributes and the options."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: dict[str, dict[str, str | None]] = {}
        self.options: list[tuple[str | None, bool, str]] = []
        self._option: list[Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack.append(tag)
        self.tags[tag] = dict(attrs)
        if tag == "option":
            a = dict(attrs)
            self._option = [a.get("value"), "selected" in a, ""]

    def handle_data(self, data: str) -> None:
        if self._option is not None:
            self._option[2] += data
        elif data.strip():
            assert self.stack, f"text outside any element: {data!r}"

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, (self.stack, tag)
        self.stack.pop()
        if tag == "option" and self._option is not None:
            self.options.append((self._option[0], self._option[1], self._option[2]))
            self._option = None


def parse_form(form: str) -> _FormParser:
    parser = _FormParser()
    parser.feed(form)
    parser.close()
    assert parser.stack == []
    return parser


@pytest.mark.parametrize("allowed", [{}, "*", ["only:1"], {"One": "one:1"}])
def test_options_form_empty_without_a_choice(allowed: Any) -> None:
    assert make_spawner(allowed_images=allowed).options_form == ""


def test_options_form_is_valid_html_with_the_default_selected() -> None:
    s = make_spawner(
        image="r:1", allowed_images={"Python": "py:1", 'R & "friends" <3>': "r:1", "Julia": "j:1"}
    )
    form = s.options_form
    assert "[" not in form  # DockerSpawner puts a Python list repr in its HTML
    parsed = parse_form(form)
    select = parsed.tags["select"]
    assert select["class"] == "form-select"
    assert select["name"] == "image"
    assert "required" in select and "autofocus" in select
    assert parsed.tags["label"]["for"] == select["id"]
    assert parsed.options == [
        ("Python", False, "Python"),
        ('R & "friends" <3>', True, 'R & "friends" <3>'),
        ("Julia", False, "Julia"),
    ]
    assert "&lt;3&gt;" in form and "&quot;friends&quot;" in form
    keyed = make_spawner(image="b:1", allowed_images=["a:1", "b:1"])
    assert parse_form(keyed.options_form).options == [("a:1", False, "a:1"), ("b:1", True, "b:1")]


async def test_options_form_follows_a_callable_allowed_images() -> None:
    lists = [["a:1", "b:1"], None, ["a:1", "c:1"]]

    async def allowed(spawner: Any) -> Any:
        return lists.pop(0)

    s = make_spawner(image="a:1", allowed_images=allowed)
    assert callable(s.options_form)
    assert [o[0] for o in parse_form(await s.get_options_form()).options] == ["a:1", "b:1"]
    assert await s.get_options_form() == ""  # None: nothing to choose (DockerSpawner crashes)
    assert [o[0] for o in parse_form(await s.get_options_form()).options] == ["a:1", "c:1"]


async def test_apply_user_options_no_spurious_image_warning(logs: pytest.LogCaptureFixture) -> None:
    s = make_spawner()
    await s._run_apply_user_options({"image": "x:1"})
    assert not any("unhandled" in m.lower() for m in warnings_of(logs))
    await s._run_apply_user_options({"image": "x:1", "cpu": "2"})
    assert [m for m in warnings_of(logs) if "nhandled" in m] == [
        f"Received unhandled user_options for {s._log_name}: cpu"
    ]
    logs.clear()
    s = make_spawner(apply_user_options={"cpu": "cpu_limit"})
    await s._run_apply_user_options({"image": "x:1", "cpu": "2"})
    assert s.cpu_limit == 2.0
    assert not any("nhandled" in m for m in warnings_of(logs))
    seen = []
    s = make_spawner(apply_user_options=lambda spawner, options: seen.append(options))
    await s._run_apply_user_options({"image": "x:1"})
    assert seen == [{"image": "x:1"}]  # a callable sees every option


# ------------------------------------------------------------------ deprecated names

ALIASES = [
    ("container_ip", "host_ip", "0.0.0.0", "0.9.*"),
    ("container_port", "port", 9999, "0.9.*"),
    ("container_image", "image", "old/image:1", "0.9.*"),
    ("container_prefix", "prefix", "hub", "0.10.0"),
    ("container_name_template", "name_template", "{prefix}-x-{username}", "0.10.0*"),
    ("remove_containers", "remove", True, "0.10.0"),
    ("image_whitelist", "allowed_images", ["a:1"], "12.0"),
]


@pytest.mark.parametrize(("old", "new", "value", "version"), ALIASES)
def test_deprecated_aliases(
    logs: pytest.LogCaptureFixture, old: str, new: str, value: Any, version: str
) -> None:
    settings: dict[str, Any] = {old: value}
    if new == "image":
        settings["image"] = TINY_IMAGE
    s = make_spawner(**settings)
    expected = {"a:1": "a:1"} if new == "allowed_images" else value
    assert getattr(s, new) == expected
    assert (
        f"DockerSpawner.{old} is deprecated in DockerSpawner {version}, "
        f"use DockerSpawner.{new} instead"
    ) in warnings_of(logs)


def test_deprecated_alias_text_uses_runtime_class_and_same_value_is_quiet(
    logs: pytest.LogCaptureFixture,
) -> None:
    class MySpawner(DockerSpawner):
        pass

    make_spawner(cls=MySpawner, image_whitelist=["a:1"])
    assert (
        "MySpawner.image_whitelist is deprecated in DockerSpawner 12.0, "
        "use MySpawner.allowed_images instead"
    ) in warnings_of(logs)
    logs.clear()
    s = make_spawner(remove=True, remove_containers=True)
    assert s.remove is True
    assert not any("deprecated" in m for m in warnings_of(logs))


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("use_docker_client_env", False, "use_docker_client_env is deprecated and ignored"),
        ("tls", True, "tls config ignored, use DockerSpawner.tls_config dict"),
        ("tls_verify", True, "tls_verify config ignored"),
        ("tls_ca", "/ca.pem", "tls_ca config ignored"),
        ("tls_cert", "/cert.pem", "tls_cert config ignored"),
        ("tls_key", "/key.pem", "tls_key config ignored"),
        ("tls_assert_hostname", False, "tls_assert_hostname config ignored"),
        ("hub_ip_connect", "10.0.0.1", "Use c.JupyterHub.hub_connect_ip instead"),
    ],
)
def test_deprecated_and_ignored(
    logs: pytest.LogCaptureFixture, name: str, value: Any, needle: str
) -> None:
    s = make_spawner(**{name: value})
    assert any(needle in m for m in warnings_of(logs)), warnings_of(logs)
    assert s.host_ip == "127.0.0.1"  # nothing else changed


# ------------------------------------------------------------------ connectivity


def test_internal_hostname_and_ssl_alt_names() -> None:
    s = make_spawner("alice", "lab")
    assert s.use_internal_hostname is False
    assert s.internal_hostname == "jupyter-alice--lab"
    assert s.ssl_alt_names == ["DNS:jupyter-alice--lab"]
    s = make_spawner("alice", use_internal_hostname=True)
    assert s.use_internal_hostname is True
    ssl = make_spawner("bob")
    ssl.internal_ssl = True
    assert ssl.use_internal_hostname is True
    s.load_state({"object_id": "x", "object_name": "kept-name"})
    assert s.internal_hostname == "kept-name"


async def test_use_internal_hostname_returns_container_name(unique: str) -> None:
    """start() returns (name, port) instead of the core's address."""

    class Result:
        id, name, created, api_token, ip, port = "c1", f"jupyter-{unique}", True, None, "1.2.3.4", 5

    class Client:
        async def start_server(self, spec: str) -> Result:
            return Result()

    class Fake(DockerSpawner):
        async def docker_client(self) -> Any:
            return Client()

    s = make_spawner(unique, cls=Fake, use_internal_hostname=True, port=8889)
    assert await s.start() == (f"jupyter-{unique}", 8889)
    s = make_spawner(unique, cls=Fake)
    assert await s.start() == ("1.2.3.4", 5)


# ------------------------------------------------------------------ the rest


def test_object_type_and_id_key() -> None:
    assert DockerSpawner.object_type == "container"
    assert DockerSpawner.object_id_key == "Id"


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
    assert {b["source"]: b["target"] for b in spec["binds"]} == {
        "home-gina": "/home/jovyan",
        "/srv/data": "/data",
    }
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


async def test_mount_binds_engine_form_and_overridable() -> None:
    s = make_spawner(
        "hank",
        mounts=[
            {"source": "m-{username}", "target": "/m", "read_only": True},
            {"type": "tmpfs", "target": "/t", "tmpfs_size": 1024},
        ],
    )
    assert s.mount_binds == [
        {"Source": "m-hank", "Target": "/m", "Type": "volume", "ReadOnly": True},
        {"Target": "/t", "Type": "tmpfs", "TmpfsOptions": {"SizeBytes": 1024}},
    ]
    assert make_spawner().mount_binds == []

    class Extra(DockerSpawner):
        @property
        def mount_binds(self) -> list[dict[str, Any]]:
            return [*super().mount_binds, {"Type": "tmpfs", "Target": "/extra"}]

    spec = await make_spawner("hank", cls=Extra).build_spec()
    assert spec["mounts"] == [{"Type": "tmpfs", "Target": "/extra"}]
    with pytest.raises(ValueError, match=r"DockerSpawner\.mounts: .*'sauce'"):
        _ = make_spawner(mounts=[{"target": "/x", "sauce": "y"}]).mount_binds


# ------------------------------------------------------------------ names across a rename

VOLUMES = {"v-{username}-{servername}": "/w"}


def hub_rename(spawner: DockerSpawner, new: str) -> DockerSpawner:
    """What the hub does after `await spawner.rename(old, new)`: the orm row gets the new name,
    the old wrapper is dropped, and a new spawner is built from the row's state."""
    spawner.orm_spawner.name = new
    state = json.loads(json.dumps(spawner.orm_spawner.state))  # as stored in the database
    fresh = make_spawner(spawner.user.name, new, volumes=VOLUMES, remove=spawner.remove)
    fresh.load_state(state)
    return fresh


async def test_volume_names_recorded_in_state() -> None:
    s = make_spawner("ivy", "lab", volumes=VOLUMES, remove=True)
    assert s.get_state() == {}
    s._record_volume_names()
    assert s.get_state() == {
        "volume_names": {"v-{username}-{servername}": "v-ivy-lab"},
        "volume_names_server": "lab",
    }
    json.dumps(s.get_state())
    # Not renamed: naming settings apply as in DockerSpawner.
    s2 = make_spawner("ivy", "lab", volumes=VOLUMES, escape="legacy")
    s2.load_state(s.get_state())
    assert list(s2.volume_binds) == ["v-ivy-lab"]
    s3 = make_spawner("ivy", "lab", volumes={"w-{username}-{servername}": "/w"})
    s3.load_state(s.get_state())
    assert list(s3.volume_binds) == ["w-ivy-lab"]


async def test_rename_keeps_volume_names(logs: pytest.LogCaptureFixture) -> None:
    s = make_spawner("ivy", "a", volumes=VOLUMES, remove=True)
    await s.rename("a", "b")
    assert s.orm_spawner.state["volume_names"] == {"v-{username}-{servername}": "v-ivy-a"}
    b = hub_rename(s, "b")
    assert b.name == "b"
    assert list(b.volume_binds) == ["v-ivy-a"]
    assert b.object_name == "jupyter-ivy--b"
    # A template added after the rename renders with the new name; renaming again keeps all.
    b.volumes = {**VOLUMES, "x-{servername}": "/x"}
    await b._prepare_start()
    assert sorted(b.volume_binds) == ["v-ivy-a", "x-b"]
    await b.rename("b", "c")
    c = hub_rename(b, "c")
    c.volumes = b.volumes
    assert sorted(c.volume_binds) == ["v-ivy-a", "x-b"]
    assert any("volumes keep their names ['v-ivy-a']" in r.getMessage() for r in logs.records)


async def test_autorename_keeps_volume_names() -> None:
    """`allow_existing_invalid_named_servers = "autorename"` renames the row only."""
    s = make_spawner("ivy", "Old Name", volumes=VOLUMES, remove=True)
    await s._prepare_start()
    state = s.get_state()
    b = make_spawner("ivy", "old-name", volumes=VOLUMES)
    b.load_state(state)
    assert list(b.volume_binds) == ["v-ivy-old-20name"]


async def test_rename_drops_the_name_of_a_container_that_is_gone(unique: str) -> None:
    class NoContainer(DockerSpawner):
        async def docker_client(self) -> Any:
            class Client:
                async def container_status(self, name: str) -> None:
                    return None

            return Client()

    s = make_spawner(unique, "a", cls=NoContainer, volumes=VOLUMES)
    s.load_state({"object_id": "gone", "object_name": f"jupyter-{unique}--a"})
    await s.rename("a", "b")
    assert "object_name" not in s.orm_spawner.state


async def test_new_server_with_a_renamed_servers_old_name_is_refused(unique: str) -> None:
    s = make_spawner(unique, "a", volumes=VOLUMES, remove=True)
    await s.rename("a", "b")
    b_row = SimpleNamespace(name="b", state=s.orm_spawner.state)
    a2 = make_spawner(unique, "a", volumes=VOLUMES, remove=True, docker_host="tcp://127.0.0.1:1")
    a2.user.orm_user.orm_spawners = {"b": b_row, "a": a2.orm_spawner}
    with pytest.raises(SpawnException) as info:
        await a2.start()
    assert info.value.status_code == 409
    assert info.value.message == (
        f"Server 'a' cannot start: the volume 'v-{unique}-a' (template "
        "'v-{username}-{servername}') holds the files of the server 'b' (renamed from 'a'). "
        "Choose another server name."
    )

    # Also when the server name comes in through format_volume_name (examples/ does this).
    def suffixed(template: str, spawner: Any) -> str:
        fields = dict(spawner.template_namespace())
        fields["suffix"] = f"--{fields['servername']}" if fields["servername"] else ""
        return template.format(**fields)

    custom: dict[str, Any] = {"volumes": {"u-{username}{suffix}": "/w"}, "remove": True}
    custom["format_volume_name"] = suffixed
    s = make_spawner(unique, "a", **custom)
    await s.rename("a", "b")
    a3 = make_spawner(unique, "a", **custom)
    a3.user.orm_user.orm_spawners = {"b": SimpleNamespace(state=s.orm_spawner.state)}
    with pytest.raises(SpawnException, match=f"the volume 'u-{unique}--a'"):
        await a3._prepare_start()
    # A shared, per-user volume is not a conflict.
    shared = {"home-{username}": "/home"}
    c = make_spawner(unique, "c", volumes=shared, docker_host="tcp://127.0.0.1:1")
    c.user.orm_user.orm_spawners = {
        "d": SimpleNamespace(state={"volume_names": {"home-{username}": f"home-{unique}"}})
    }
    c._record_volume_names()
    c._check_names_not_taken()
    # Another server's recorded container name is.
    c.user.orm_user.orm_spawners = {"d": SimpleNamespace(state={"object_name": c.object_name})}
    with pytest.raises(SpawnException, match="belongs to the server 'd'"):
        c._check_names_not_taken()


async def test_delete_forever_removes_nothing_and_says_so(logs: pytest.LogCaptureFixture) -> None:
    s = make_spawner("jack", "lab", volumes=VOLUMES)
    s.load_state({"object_id": "abc", "object_name": "jupyter-jack--lab"})
    await s.delete_forever()
    assert (
        f"Deleting {s._log_name}: nothing is removed; kept: container jupyter-jack--lab, "
        "volume v-jack-lab"
    ) in [r.getMessage() for r in logs.records]


# ------------------------------------------------------------------ SystemUserSpawner


def system_user(username: str = "sam", **settings: Any) -> SystemUserSpawner:
    s = make_spawner(username, cls=SystemUserSpawner, **settings)
    assert isinstance(s, SystemUserSpawner)
    return s


def test_system_user_spawner_exported() -> None:
    assert rustdocker.SystemUserSpawner is SystemUserSpawner
    assert issubclass(SystemUserSpawner, DockerSpawner)
    # c.DockerSpawner.* applies to it (make_spawner configures through c.DockerSpawner).
    assert system_user(prefix="hub").prefix == "hub"


async def test_system_user_spec_from_state_ids() -> None:
    s = system_user("Sam.Smith", host_homedir_format_string="/srv/homes/{username}")
    s.load_state({"user_id": 4242, "group_id": 4343})
    spec = await s.build_spec()
    assert {b["source"]: (b["target"], b["mode"]) for b in spec["binds"]} == {
        "/srv/homes/Sam.Smith": ("/home/Sam.Smith", "rw")
    }
    assert spec["extra_create"] == {"working_dir": "/home/Sam.Smith", "user": "4242:4343"}
    env = spec["env"]
    assert env["USER"] == env["NB_USER"] == "Sam.Smith"
    assert env["USER_ID"] == env["NB_UID"] == "4242"
    assert env["NB_GID"] == "4343"
    assert env["HOME"] == "/home/Sam.Smith"
    assert s.volume_mount_points == ["/home/Sam.Smith"]  # once (DockerSpawner lists it twice)
    assert s.get_state() == {"user_id": 4242, "group_id": 4343}


async def test_system_user_propagation_root_and_user_overrides() -> None:
    s = system_user(homedir_bind_propagation="rslave", run_as_root=True)
    s.load_state({"user_id": 10, "group_id": 20})
    spec = await s.build_spec()
    assert spec["binds"][0]["propagation"] == "rslave"
    assert spec["extra_create"]["user"] == "0"
    # The operator's own user/working_dir wins, in either spelling, and is not mutated.
    extra = {"User": "1:1"}
    s = system_user(extra_create_kwargs=extra)
    s.load_state({"user_id": 10, "group_id": 20})
    spec = await s.build_spec()
    assert spec["extra_create"] == {"User": "1:1", "working_dir": "/home/sam"}
    assert s.extra_create_kwargs == {"User": "1:1"}


async def test_system_user_callable_extra_create_kwargs() -> None:
    """DockerSpawner's SystemUserSpawner crashes on a callable extra_create_kwargs."""
    s = system_user(extra_create_kwargs=lambda spawner: {"labels": {"who": spawner.user.name}})
    s.load_state({"user_id": 10, "group_id": 20})
    spec = await s.build_spec()
    assert spec["extra_create"] == {
        "labels": {"who": "sam"},
        "working_dir": "/home/sam",
        "user": "10:20",
    }


async def test_system_user_ids_from_passwd_and_errors(logs: pytest.LogCaptureFixture) -> None:
    root = pwd.getpwnam("root")
    s = system_user("root", host_homedir_format_string="")
    assert s.get_state() == {}  # no lookup just for get_state
    assert (s.user_id, s.group_id) == (root.pw_uid, root.pw_gid)
    assert s.host_homedir == root.pw_dir
    assert s.get_state() == {"user_id": root.pw_uid, "group_id": root.pw_gid}
    missing = system_user("no-such-user-xyz")
    assert missing.get_state() == {}
    with pytest.raises(ValueError, match="'no-such-user-xyz' has no account on the hub host"):
        await missing.build_spec()
    only_group = system_user()
    only_group.load_state({"user_id": -1, "group_id": 5})
    spec = await only_group.build_spec()
    assert "user" not in spec["extra_create"]
    assert "NB_UID" not in spec["env"]
    assert any("group_id 5 has no effect" in m for m in warnings_of(logs))
    with pytest.raises(ValueError, match=r"SystemUserSpawner\.image_homedir_format_string"):
        _ = system_user(image_homedir_format_string="/home/{user}").homedir


# ------------------------------------------------------------------ documentation


@pytest.mark.parametrize("cls", [DockerSpawner, SystemUserSpawner])
def test_every_own_trait_is_documented_with_an_example(cls: type[DockerSpawner]) -> None:
    from jupyterhub.spawner import Spawner

    base = set(Spawner.class_traits(config=True))
    own = {n: t for n, t in cls.class_traits(config=True).items() if n not in base}
    assert {"allowed_images", "use_internal_hostname", "image_whitelist", "tls"} <= set(own)
    undocumented = [n for n, t in own.items() if "Example" not in (t.help or "")]
    assert undocumented == []
    # What `jupyterhub --help-all` prints for the class renders.
    text = cls.class_get_help()
    assert f"--{cls.__name__}.allowed_images" in text
    if cls is SystemUserSpawner:
        assert "--SystemUserSpawner.run_as_root" in text

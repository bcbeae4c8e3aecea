"""Image choice: the image, allowed_images and the image user option, the options form, and
pulls (pull_policy) from a real registry (Debian's docker-registry on a loopback port of its
own)."""

from __future__ import annotations

import contextlib
import html.parser
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from jupyterhub.spawner import SpawnException
from tornado import web

import rustdocker

from conftest import (
    SESSION_HUB_ID,
    TINY_IMAGE,
    FakeClient,
    docker,
    env_of,
    exists,
    inspect,
    make_spawner,
    skip_or_fail,
    warnings_of,
)

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


async def test_refused_image_fails_start_before_anything_else(
    unique: str, fake_client: FakeClient
) -> None:
    s = make_spawner(unique, allowed_images=["a:1", "b:1"])
    s.user_options = {"image": "c:1"}
    with pytest.raises(SpawnException) as info:
        await s.start()
    assert info.value.message == "Image 'c:1' is not allowed: choose one of: a:1, b:1"
    assert fake_client.calls == []  # refused before any engine call


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


# ------------------------------------------------------------------ on the engine


@pytest.fixture(scope="module")
def alt_image(tiny_image: str) -> Iterator[str]:
    """A second image on the engine: another tag of the tiny image."""
    tag = f"rustdocker/tiny:parity-{SESSION_HUB_ID.rsplit('-', 1)[-1]}"
    docker("tag", tiny_image, tag)
    yield tag
    docker("rmi", tag, check=False)


@pytest.mark.docker
async def test_image_option_runs_the_chosen_image(unique: str, alt_image: str) -> None:
    s = make_spawner(unique, allowed_images={"Tiny": TINY_IMAGE, "Alt": alt_image}, remove=True)
    # The REST body's user_options, the form (options_from_form) and ?opt-image= all end up here.
    s.user_options = s.run_options_from_form({"image": ["Alt"]})
    await s.start()
    info = inspect("container", s.object_name)
    assert info["Config"]["Image"] == alt_image
    assert env_of(info)["JUPYTER_IMAGE_SPEC"] == alt_image
    await s.stop()
    # A refused image creates nothing.
    s.user_options = {"image": "busybox:latest"}
    with pytest.raises(SpawnException) as refused:
        await s.start()
    assert refused.value.status_code == 400
    assert refused.value.message == (
        "Image 'busybox:latest' is not allowed: choose one of: Tiny, Alt"
    )
    assert not exists("container", s.object_name)
    # Without the option: the configured image again.
    s.user_options = {}
    await s.start()
    assert inspect("container", s.object_name)["Config"]["Image"] == TINY_IMAGE
    await s.stop()


# ------------------------------------------------------------------ pulls, from a real registry


@pytest.fixture(scope="module")
def registry(engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("docker-registry")
    if binary is None:
        skip_or_fail("docker-registry (Debian package) is not installed")
    d = tmp_path_factory.mktemp("registry")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (d / "config.yml").write_text(
        "version: 0.1\n"
        "log: {level: info}\n"
        f"storage: {{filesystem: {{rootdirectory: {d / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
    )
    log = open(d / "registry.log", "w")  # noqa: SIM115 - open for the registry's lifetime
    proc = subprocess.Popen([binary, "serve", str(d / "config.yml")], stdout=log,
                            stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            # Our registry, not whatever else might hold the port: it names its API version.
            url = f"http://127.0.0.1:{port}/v2/"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
                if r.headers.get("Docker-Distribution-Api-Version") and proc.poll() is None:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"docker-registry did not start: {(d / 'registry.log').read_text()}")
            time.sleep(0.1)
        _ROOTS[f"127.0.0.1:{port}"] = d / "data"
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
        print(
            f"registry exit code {proc.returncode}; log: {(d / 'registry.log').read_text()[-3000:]}"
        )


_ROOTS: dict[str, Path] = {}


def registry_root(registry: str) -> Path:
    return _ROOTS[registry]


def push(registry: str, name: str) -> str:
    """Pushes the tiny image as `<registry>/<name>` and removes the local copy."""
    ref = f"{registry}/{name}"
    docker("tag", TINY_IMAGE, ref)
    docker("push", ref)
    docker("rmi", ref)
    assert not exists("image", ref)
    return ref


@pytest.mark.docker
async def test_ifnotpresent_pulls_a_missing_image(registry: str, unique: str) -> None:
    ref = push(registry, f"rustdocker-test/{unique}:v1")  # a registry port and a tag
    s = make_spawner(unique, image=ref, remove=True)
    try:
        await s.start()
        assert exists("image", ref)
        assert inspect("container", s.object_name)["Config"]["Image"] == ref
        await s.stop()
        # Present now: the next start does not pull (the registry is not even asked).
        docker("tag", TINY_IMAGE, ref)
        await s.start()
        await s.stop()
    finally:
        docker("rmi", ref, check=False)


@pytest.mark.docker
async def test_always_pulls_and_digests_work(registry: str, unique: str) -> None:
    ref = push(registry, f"rustdocker-test/{unique}")  # no tag: latest
    digest = ""
    s = make_spawner(unique, image=ref, pull_policy="Always", remove=True)
    try:
        await s.start()
        digest = inspect("image", ref)["RepoDigests"][0]
        await s.stop()
        docker("rmi", ref, digest, check=False)
        by_digest = make_spawner(unique, image=digest, pull_policy="ifnotpresent", remove=True)
        await by_digest.start()
        assert inspect("container", by_digest.object_name)["Config"]["Image"] == digest
        await by_digest.stop()
    finally:
        docker("rmi", ref, check=False)
        if digest:
            docker("rmi", digest, check=False)


@pytest.mark.docker
async def test_never_and_skip_do_not_pull(registry: str, unique: str) -> None:
    ref = push(registry, f"rustdocker-test/{unique}:v2")
    for policy in ("never", "skip"):
        s = make_spawner(unique, image=ref, pull_policy=policy)
        with pytest.raises(rustdocker.NotFoundError) as info:
            await s.start()
        assert ref in str(info.value) and f"'{policy}'" in str(info.value)
        assert not exists("image", ref)
        assert not exists("container", s.object_name)


@pytest.mark.docker
async def test_pull_error_fails_the_spawn_with_the_registry_message(
    registry: str, unique: str
) -> None:
    s = make_spawner(unique, image=f"{registry}/rustdocker-test/nothing-here:v9")
    with pytest.raises(rustdocker.RustDockerError) as info:
        await s.start()
    message = str(info.value)
    assert "nothing-here" in message
    assert "manifest unknown" in message or "not found" in message
    assert not exists("container", s.object_name)


@pytest.mark.docker
async def test_error_inside_the_pull_stream_fails_the_spawn(registry: str, unique: str) -> None:
    """The registry serves the manifest, then loses a layer: the engine reports that inside the
    200 pull stream, which DockerSpawner swallows; rustdocker fails the start with it."""
    # An image with a layer of its own, which the engine then has to fetch.
    ref = f"{registry}/rustdocker-test/{unique}:broken"
    ctx = registry_root(registry).parent / unique
    ctx.mkdir()
    (ctx / "payload").write_bytes(os.urandom(3 * 1024 * 1024))
    (ctx / "Dockerfile").write_text(f"FROM {TINY_IMAGE}\nCOPY payload /payload\n")
    docker("build", "-q", "-t", ref, str(ctx))
    docker("push", ref)
    docker("rmi", ref)
    root = registry_root(registry)
    blobs = sorted(root.rglob("blobs/sha256/*/*/data"), key=lambda p: p.stat().st_size)
    blobs[-1].unlink()  # the largest blob: that 3 MiB layer
    s = make_spawner(unique, image=ref)
    with pytest.raises(rustdocker.RustDockerError) as info:
        await s.start()
    message = str(info.value)
    assert f"pull image '{ref}'" in message
    assert not exists("container", s.object_name)
    assert not exists("image", ref)

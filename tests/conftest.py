"""Test fixtures: a real Docker engine, the locally built test image, spawners wired to a
minimal stand-in for JupyterHub's user and hub objects, and a fake of the native client for the
engine-free tests.

Every test file holds one concept, with its engine-free tests first and then its engine tests,
marked `@pytest.mark.docker` (those get the engine and the test image; without an engine they
skip, under CI=true they fail). Every container and volume a test creates carries this session's
hub label and is removed by that label at the end (volumes too: these are the tests' own, not
users').

Shared with bench/ (no copy): `bench/hubless.py` (`FakeUser`, `make_spawner`) and
`bench/proxy.py` (`CountingProxy`), imported from bench/ on sys.path.
"""

from __future__ import annotations

import ast
import asyncio
import inspect as _inspect
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple, NoReturn

import pytest

from rustdocker import DockerSpawner, _core

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import hubless  # noqa: E402
from proxy import CountingProxy  # noqa: E402

TINY_IMAGE = os.environ.get("TINY_IMAGE", "rustdocker/tiny:latest")
SESSION_HUB_ID = f"rustdocker-test-{uuid.uuid4().hex[:10]}"
LABEL_HUB = "org.rustdocker.hub"


# ------------------------------------------------------------------ skip, or fail under CI


def skip_or_fail(reason: str) -> NoReturn:
    """Skips the test for want of `reason` (a prerequisite of this machine); under CI=true,
    where every prerequisite is installed on purpose, fails it instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


# ------------------------------------------------------------------ the engine, as witness


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def inspect(kind: str, name: str) -> dict[str, Any]:
    """What the engine shows: `docker <kind> inspect`."""
    out = docker(kind, "inspect", name).stdout
    return json.loads(out)[0]  # type: ignore[no-any-return]


def exists(kind: str, name: str) -> bool:
    return docker(kind, "inspect", name, check=False).returncode == 0


def container_exec(name: str, script: str) -> str:
    return docker("exec", name, "sh", "-c", script).stdout


def http_get(ip: str, port: int) -> str:
    with urllib.request.urlopen(f"http://{ip}:{port}/", timeout=5) as r:
        return r.read().decode()  # type: ignore[no-any-return]


def env_of(info: dict[str, Any]) -> dict[str, str]:
    """A container's environment, from its inspect."""
    return dict(e.split("=", 1) for e in info["Config"]["Env"])


def _engine_up() -> str | None:
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    r = docker("info", "--format", "{{.ServerVersion}}", check=False)
    if r.returncode != 0:
        return f"no Docker engine answers: {r.stderr.strip()}"
    return None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    # Fixtures read this at teardown to keep evidence of a failure (tests/e2e, tests/faults).
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def engine() -> None:
    """A running Docker engine."""
    problem = _engine_up()
    if problem:
        skip_or_fail(problem)


@pytest.fixture(scope="session")
def tiny_image(engine: None) -> str:
    if not exists("image", TINY_IMAGE):
        subprocess.run(["bash", str(ROOT / "images" / "build-tiny.sh")], check=True)
    return TINY_IMAGE


@pytest.fixture(autouse=True)
def _engine_for_docker_tests(request: pytest.FixtureRequest) -> None:
    """A test marked `docker` gets the engine and the test image (tests/e2e has its own)."""
    node = request.node
    if node.get_closest_marker("docker") and not node.get_closest_marker("e2e"):
        request.getfixturevalue("tiny_image")


def remove_labelled(hub_id: str) -> None:
    flt = f"label={LABEL_HUB}={hub_id}"
    ids = docker("ps", "-aq", "--filter", flt).stdout.split()
    if ids:
        docker("rm", "-f", *ids, check=False)
    vols = docker("volume", "ls", "-q", "--filter", flt).stdout.split()
    if vols:
        docker("volume", "rm", "-f", *vols, check=False)


@pytest.fixture(scope="session", autouse=True)
def _cleanup_session() -> Iterator[None]:
    yield
    if _engine_up() is None:
        remove_labelled(SESSION_HUB_ID)


@pytest.fixture
async def proxy(tmp_path: Path) -> AsyncIterator[CountingProxy]:
    """A counting proxy in front of the engine's socket: `docker_host=proxy.url`."""
    async with CountingProxy(tmp_path / "docker.sock") as p:
        yield p


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]],
    seconds: float,
    what: str,
    interval: float = 0.01,
) -> float:
    """Polls `condition` (a function, or a coroutine function) every `interval` seconds until
    it is true and returns how long that took. Fails the test, saying what was awaited, after
    `seconds`."""
    start = time.monotonic()
    while True:
        met = condition()
        if _inspect.isawaitable(met):
            met = await met
        if met:
            return time.monotonic() - start
        if time.monotonic() - start > seconds:
            pytest.fail(f"{what}: not within {seconds}s")
        await asyncio.sleep(interval)


# ------------------------------------------------------------------ spawners without a hub


def make_spawner(
    username: str = "alice",
    servername: str = "",
    cls: type[DockerSpawner] = DockerSpawner,
    **settings: Any,
) -> Any:
    """A spawner as the hub builds it, configured through `c.DockerSpawner.*`, labelled with
    this session's hub id and running the test image unless told otherwise."""
    settings.setdefault("hub_id", SESSION_HUB_ID)
    settings.setdefault("image", TINY_IMAGE)
    return hubless.make_spawner(cls, username, settings, servername)


@pytest.fixture
def unique() -> str:
    """A username no other test uses."""
    return f"u{uuid.uuid4().hex[:8]}"


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """The spawners' log records (they log through traitlets' logger)."""
    caplog.set_level(logging.DEBUG, logger="traitlets")
    return caplog


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# ------------------------------------------------------------------ the native client, faked


class Call(NamedTuple):
    """One call of the fake client: the method and its arguments by name, defaults included."""

    method: str
    arguments: dict[str, Any]


def _started(spec_json: str, ticket: str = "") -> SimpleNamespace:
    spec = json.loads(spec_json)
    return SimpleNamespace(
        id=f"fake-{spec['name']}",
        name=spec["name"],
        created=True,
        api_token=None,
        ip="127.0.0.1",
        port=32768,
        warnings=[],
        config_changes=[],
        recreated=False,
        config_note=None,
    )


def fake_status(running: bool, exit_code: int = 0, owned: bool = True) -> SimpleNamespace:
    """Stands in for `_core.ContainerStatus`: a container of this spawner's server (`owned`)."""
    return SimpleNamespace(
        id="fake-id",
        running=running,
        exit_code=exit_code,
        status="running" if running else "exited",
        managed=True,
        owned_by=lambda labels, adopt_unlabelled, state_id=None: owned,
    )


def create_body(spec: dict[str, Any]) -> dict[str, Any]:
    """What the engine would be sent for a spawner's spec: the core's create body, no engine."""
    return json.loads(_core.build_create_body(json.dumps(spec)))  # type: ignore[no-any-return]


def _awaitable_methods() -> frozenset[str]:
    """The `DockerClient` methods the stub (python/rustdocker/_core.pyi, kept true by
    test_stub.py) declares as returning an Awaitable; the others answer at once."""
    tree = ast.parse((ROOT / "python" / "rustdocker" / "_core.pyi").read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "DockerClient":
            return frozenset(
                f.name
                for f in node.body
                if isinstance(f, ast.FunctionDef)
                and f.returns is not None
                and ast.unparse(f.returns).startswith("Awaitable")
            )
    raise AssertionError("_core.pyi has no class DockerClient")


class FakeClient:
    """Stands in for `_core.DockerClient` in engine-free tests (the `fake_client` fixture).

    Only the real client's methods exist, and every call is bound to the real method's
    signature, so the fake cannot drift from the core: a method it lacks raises
    AttributeError, arguments it would refuse raise TypeError. A call is recorded in `calls`
    (arguments by name, so positional and keyword spellings compare equal) and answers with
    `answers[method]` (None when unset): a value, an exception instance to raise, or a
    callable computing either from the call's arguments. A method is awaitable where the stub
    says the real one is. The real client's properties are plain attributes.
    """

    _AWAITABLE = _awaitable_methods()

    def __init__(self) -> None:
        self.host = "unix:///fake/docker.sock"
        self.api_version = "1.41"
        self.cache_synced = False
        self.cache_stats = {"events": 0, "resyncs": 0, "disconnects": 0}
        self.calls: list[Call] = []
        self.answers: dict[str, Any] = {
            "start_server": _started,
            "stop_server": None,
            "remove_container": None,
            "container_status": None,
            "polled_status": None,
            "cached_status": None,
            "container_address": None,
            "start_service": SimpleNamespace(
                id="fake-service",
                ip="127.0.0.1",
                port=32768,
                warnings=[],
                node_id="fake-node",
                node_hostname="fake-host",
            ),
            "settle": True,
            "service_status": None,
            "remove_service": None,
            "stage_files": None,
            "delete_volumes": [],
            "image_cmd": [],
            "exec_run": (0, "", ""),
            "wait_idle": None,
            "start_progress": None,
        }

    def called(self, method: str) -> list[dict[str, Any]]:
        """The arguments of every call of `method`, in order."""
        return [c.arguments for c in self.calls if c.method == method]

    def __getattr__(self, method: str) -> Callable[..., Any]:
        real = getattr(_core.DockerClient, method, None)
        if method.startswith("_") or not callable(real):
            raise AttributeError(f"_core.DockerClient has no method {method!r}")
        signature = _inspect.signature(real)
        takes_self = next(iter(signature.parameters), None) == "self"

        def call(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*((self,) if takes_self else ()), *args, **kwargs)
            bound.apply_defaults()
            arguments = {k: v for k, v in bound.arguments.items() if k != "self"}
            self.calls.append(Call(method, arguments))
            answer = self.answers.get(method)
            if method in self._AWAITABLE:
                return self._later(answer, args, kwargs)
            return self._resolve(answer, args, kwargs)

        return call

    @staticmethod
    def _resolve(answer: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if callable(answer):
            answer = answer(*args, **kwargs)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def _later(self, answer: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self._resolve(answer, args, kwargs)


@pytest.fixture
def fake_client(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    """Every spawner's `docker_client()` returns this one fake: the Python logic runs alone,
    with no engine, and the test reads what reached the core from `fake_client.calls`."""
    client = FakeClient()

    async def docker_client(self: DockerSpawner) -> FakeClient:
        return client

    monkeypatch.setattr(DockerSpawner, "docker_client", docker_client)
    return client

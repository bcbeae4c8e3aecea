"""Fixtures of the fault suite: one engine of the suite's own (tests/dockerd.py: restarted,
stopped and frozen by the tests, never the shared one), the tiny image and a network on it, and
a real hub per test, spawning into it.

Prerequisites: root (for a second dockerd and its bridge), dockerd, jupyterhub and
configurable-http-proxy (scripts/setup-e2e.sh). Without one the tests skip; under CI=true they
fail.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import dockerd
from .harness import FaultHub
from conftest import skip_or_fail
from e2e.hub import artifact_dir, failed, jupyterhub_command

NETWORK = "rdfaults"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="package")
def fault_engine(
    tiny_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dockerd.Dockerd]:
    """The suite's own engine, with the tiny image and the network `rdfaults`."""
    problem = dockerd.missing()
    if problem is None and jupyterhub_command() is None:
        problem = "the jupyterhub command is needed"
    if problem is None and shutil.which("configurable-http-proxy") is None:
        problem = "configurable-http-proxy is needed (scripts/setup-e2e.sh)"
    if problem:
        skip_or_fail(problem)
    engine = dockerd.Dockerd(tmp_path_factory.mktemp("fault-engine"))
    try:
        engine.start()
        engine.load_image(tiny_image)
        engine.create_network(NETWORK)
        yield engine
    finally:
        engine.close()


@pytest.fixture
def own_engine(
    fault_engine: dockerd.Dockerd, request: pytest.FixtureRequest
) -> Iterator[dockerd.Dockerd]:
    """The suite's engine, running and thawed, as every test finds it and leaves it."""
    yield fault_engine
    fault_engine.thaw()
    if failed(request):
        shutil.copy(fault_engine.log_path, artifact_dir(request) / "dockerd.log")
    if fault_engine.live_restore or fault_engine.proc is None or not fault_engine.answers():
        fault_engine.live_restore = False
        fault_engine.restart()


@pytest.fixture
def make_hub(
    own_engine: dockerd.Dockerd, tiny_image: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., FaultHub]]:
    """`make_hub(**FaultHub settings)`: a started hub on the suite's engine. At the end it is
    stopped and whatever carries its label is removed from the engine (the scenarios assert
    their own clean-up before that)."""
    hubs: list[FaultHub] = []

    def make(**settings: Any) -> FaultHub:
        hub = FaultHub(tmp_path / f"hub{len(hubs)}", own_engine, NETWORK, tiny_image, **settings)
        hubs.append(hub)
        hub.start()
        return hub

    yield make
    for hub in hubs:
        hub.stop()
        if failed(request) and hub.log_path.exists():
            shutil.copy(hub.log_path, artifact_dir(request) / f"{hub.workdir.name}.log")
        own_engine.thaw()
        if own_engine.answers():
            flt = f"label=org.rustdocker.hub={hub.hub_id}"
            ids = own_engine.docker("ps", "-aq", "--filter", flt).stdout.split()
            if ids:
                own_engine.docker("rm", "-f", "-v", *ids, check=False)
            vols = own_engine.docker("volume", "ls", "-q", "--filter", flt).stdout.split()
            if vols:
                own_engine.docker("volume", "rm", "-f", *vols, check=False)

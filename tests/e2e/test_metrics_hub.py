"""rustdocker's metrics in a real hub's `/hub/metrics`, scraped around a few spawns, a pull from
a real registry (Debian's docker-registry on 127.0.0.1) and an engine that stops answering.

The hub reaches the engine through bench/proxy.py, run as a process of its own: stopping it is
the engine going away for this hub only (the shared dockerd keeps running), and starting it
again is the engine coming back.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_images import registry  # noqa: F401 - the fixture: Debian's docker-registry

from .hub import (
    IMAGE,
    LABEL_HUB,
    ROOT,
    Hub,
    docker,
    hub_of_its_own,
    missing_prerequisites,
    require,
    wait_until,
)
from conftest import TINY_IMAGE

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class EngineProxy:
    """bench/proxy.py in front of the engine's socket, as a process that can be stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "proxy.py"), str(self.path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


@pytest.fixture(scope="module")
def engine_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProxy]:
    proxy = EngineProxy(tmp_path_factory.mktemp("engine-proxy") / "docker.sock")
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def pulled_image(
    registry: str,  # noqa: F811 - the fixture imported above
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The tiny test image plus a layer of its own (256 KiB of random bytes), pushed to the
    registry and removed from the engine: starting a server of it pulls that layer. (Its
    server is busybox's httpd, which the hub takes for up; pushing the 450 MB single-user
    image would take minutes.)"""
    ctx = tmp_path_factory.mktemp("pulled-image")
    (ctx / "blob").write_bytes(secrets.token_bytes(256 * 1024))
    (ctx / "Dockerfile").write_text(f"FROM {TINY_IMAGE}\nCOPY blob /tmp/blob\n")
    ref = f"{registry}/rustdocker-e2e/metrics-{uuid.uuid4().hex[:8]}:v1"
    try:
        subprocess.run(
            ["docker", "build", "-q", "-t", ref, str(ctx)],
            check=True, capture_output=True, env={**os.environ, "DOCKER_BUILDKIT": "0"},
        )  # fmt: skip
        docker("push", ref)
        docker("rmi", ref)
        yield ref
    finally:
        docker("rmi", "-f", ref, check=False)


@pytest.fixture(scope="module")
def metrics_hub(
    tmp_path_factory: pytest.TempPathFactory, engine_proxy: EngineProxy, pulled_image: str
) -> Iterator[Hub]:
    require(missing_prerequisites())
    extra = (
        "c.JupyterHub.authenticate_prometheus = False\n"
        # Other builds and tests may share this machine's two cores: JupyterLab can be slow.
        "c.Spawner.http_timeout = 180\n"
        "c.Spawner.start_timeout = 180\n"
        f"c.DockerSpawner.docker_host = {engine_proxy.url!r}\n"
        f"c.DockerSpawner.allowed_images = {{'local': {IMAGE!r}, 'pulled': {pulled_image!r}}}\n"
    )
    with hub_of_its_own(tmp_path_factory, "metrics", extra) as h:
        try:
            yield h
        finally:
            # The hub's stop reaches the engine through the proxy: it must run again.
            if engine_proxy.proc is None:
                engine_proxy.start()


def scrape(hub: Hub) -> Samples:
    r = hub.session.get(f"{hub.url}/hub/metrics", timeout=30)
    r.raise_for_status()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        if family.name.startswith("rustdocker_")
        for s in family.samples
    }


def scrape_until(hub: Hub, condition: Callable[[Samples], bool], timeout: float = 60) -> Samples:
    """The first scrape (one every 0.25 s) that meets `condition`."""

    def met() -> Samples | None:
        samples = scrape(hub)
        return samples if condition(samples) else None

    return wait_until(met, timeout, "metrics meeting the condition")


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def grew(after: Samples, before: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def shown(samples: Samples, *names: str) -> str:
    """The samples named, for the test's output (kept as evidence with `-s`)."""
    return "\n".join(
        f"  {name}{dict(labels)} {v:g}"
        for (name, labels), v in sorted(samples.items())
        if name in names and not any(k == "le" for k, _ in labels)
    )


def test_metrics_around_spawns_a_pull_and_a_stopped_engine(
    metrics_hub: Hub, engine_proxy: EngineProxy
) -> None:
    hub = metrics_hub
    before = scrape(hub)
    users = [f"e2e{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for user in users:
        hub.create_user(user)
    # Two spawns of the local image.
    for user in users[:2]:
        hub.start_server(user)
    spawned = scrape_until(hub, lambda s: value(s, "rustdocker_servers", state="running") >= 2)
    for verb in ("create_container", "start_container", "create_volume"):
        assert grew(spawned, before, "rustdocker_docker_api_calls_total", verb=verb) >= 2, verb
    for phase in ("volumes", "create", "start"):
        name = "rustdocker_spawn_phase_duration_seconds_count"
        assert grew(spawned, before, name, phase=phase) >= 2, phase
    assert value(spawned, "rustdocker_events_cache_synced") == 1
    # One spawn of the image in the registry: a pull.
    r = hub.api("POST", f"/users/{users[2]}/server", json={"image": "pulled"})
    assert r.status_code in (201, 202), r.text
    wait_until(lambda: hub.servers(users[2])[""]["ready"], 120, "the pulled server to be up")
    pulled = scrape(hub)
    assert grew(pulled, spawned, "rustdocker_docker_api_calls_total", verb="pull_image") == 1
    name = "rustdocker_image_pull_duration_seconds_count"
    assert grew(pulled, spawned, name, outcome="success") == 1
    assert grew(pulled, spawned, "rustdocker_image_pull_bytes_total") >= 200 * 1024
    name = "rustdocker_spawn_phase_duration_seconds_count"
    assert grew(pulled, spawned, name, phase="pull") == 1
    print("after the spawns and the pull:\n" + shown(pulled, *{k[0] for k in pulled}))
    # The engine stops answering this hub.
    engine_proxy.stop()
    try:

        def outage() -> Samples | None:
            s = scrape(hub)
            errors = sum(
                v - pulled.get(k, 0.0)
                for k, v in s.items()
                if k[0] == "rustdocker_docker_api_errors_total" and ("kind", "connection") in k[1]
            )
            stale = value(s, "rustdocker_events_cache_synced") == 0
            return s if errors >= 1 and stale else None

        down = wait_until(outage, 60, "connection errors counted and the cache out of sync")
        assert grew(down, pulled, "rustdocker_events_disconnects_total") >= 1
        print(
            "with the engine stopped:\n"
            + shown(down, "rustdocker_docker_api_errors_total", "rustdocker_events_cache_synced")
        )
    finally:
        engine_proxy.start()
    back = scrape_until(hub, lambda s: value(s, "rustdocker_events_cache_synced") == 1)
    assert grew(back, down, "rustdocker_events_resyncs_total") >= 1
    assert value(back, "rustdocker_servers", state="running") >= 3
    for user in users:
        hub.stop_server(user)
    # No user name in any label, ever.
    text = hub.session.get(f"{hub.url}/hub/metrics", timeout=30).text
    assert not any(user in text for user in users)
    assert LABEL_HUB not in text

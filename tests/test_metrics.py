"""Metrics (`rustdocker.metrics`): the core's counters in prometheus_client's default registry,
which JupyterHub serves at `/hub/metrics`. Here against the real engine without a hub: spawns,
a pull from a real registry, and an engine that goes away and comes back. The same seen through
a real hub's `/hub/metrics`: tests/e2e/test_metrics_hub.py."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from test_images import registry  # noqa: F401 - the fixture: Debian's docker-registry

from conftest import (
    LABEL_HUB,
    SESSION_HUB_ID,
    TINY_IMAGE,
    CountingProxy,
    docker,
    make_spawner,
    wait_for,
)

VERBS = {
    "version", "info", "list_containers", "inspect_container", "create_container",
    "start_container", "stop_container", "remove_container", "container_logs",
    "upload_to_container", "connect_network", "inspect_image", "pull_image", "create_volume",
    "create_exec", "start_exec", "inspect_exec", "create_service", "inspect_service",
    "remove_service", "list_tasks", "inspect_task", "inspect_node",
    "list_nodes", "inspect_volume",
}  # fmt: skip
KINDS = {
    "not_found", "conflict", "client", "server", "timeout", "connection", "registry",
    "cancelled", "other",
}  # fmt: skip
STATES = {"created", "running", "paused", "restarting", "removing", "exited", "dead", "other"}
ALLOWED = {
    "verb": VERBS,
    "kind": KINDS,
    "phase": {"pull", "volumes", "create", "start"},
    "outcome": {"success", "failure"},
    "state": STATES,
}


def scrape(text: str | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every rustdocker sample of the registry (or of an exposition `text`) by name and labels
    (`le` included)."""
    if text is None:
        text = generate_latest(REGISTRY).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("rustdocker_")
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)  # type: ignore[no-any-return]


def test_registered_once_with_conventional_names_and_bounded_labels() -> None:
    import rustdocker.metrics as metrics

    metrics.register()  # again: nothing more is registered
    text = generate_latest(REGISTRY).decode()
    for name in (
        "rustdocker_docker_api_calls_total",
        "rustdocker_spawn_phase_duration_seconds_bucket",
        "rustdocker_image_pull_bytes_total",
        "rustdocker_events_resyncs_total",
        "rustdocker_events_lag_seconds_count",
        "rustdocker_servers",
    ):
        assert name in text, name
    for (name, labels), _ in scrape(text).items():
        assert re.fullmatch(r"rustdocker_[a-z_]+", name), name
        for key, val in labels:
            if key != "le":
                assert val in ALLOWED[key], (name, key, val)


# ------------------------------------------------------------------ on the engine


@pytest.mark.docker
async def test_spawns_count_calls_phases_and_servers(unique: str) -> None:
    before = scrape()
    spawners = [make_spawner(f"{unique}{i}", remove=True) for i in range(2)]
    for s in spawners:
        await s.start()
    client = await spawners[0].docker_client()
    await wait_for(lambda: client.cache_synced, 30, "the state cache to sync")

    def running() -> float:
        return value(scrape(), "rustdocker_servers", state="running")

    await wait_for(lambda: running() >= 2, 30, "both servers counted running")
    after = scrape()
    for verb in ("create_container", "start_container"):
        grew = value(after, "rustdocker_docker_api_calls_total", verb=verb) - value(
            before, "rustdocker_docker_api_calls_total", verb=verb
        )
        assert grew >= 2, verb
    for phase in ("volumes", "create", "start"):
        name = "rustdocker_spawn_phase_duration_seconds_count"
        assert value(after, name, phase=phase) - value(before, name, phase=phase) >= 2, phase
    text = generate_latest(REGISTRY).decode()
    assert unique not in text  # no user or container name in any label
    counted = running()
    for s in spawners:
        await s.stop()
    await wait_for(lambda: running() <= counted - 2, 30, "the stopped servers no longer running")


@pytest.fixture
def unique_image(unique: str, tmp_path: Path) -> Iterator[str]:
    """A local image with a layer of its own (256 KiB of random bytes over the tiny image), so
    pulling it downloads that layer."""
    (tmp_path / "blob").write_bytes(secrets.token_bytes(256 * 1024))
    (tmp_path / "Dockerfile").write_text(f"FROM {TINY_IMAGE}\nCOPY blob /blob\n")
    tag = f"rustdocker-test/{unique}:pull"
    subprocess.run(
        ["docker", "build", "-q", "--label", f"{LABEL_HUB}={SESSION_HUB_ID}", "-t", tag,
         str(tmp_path)],
        check=True, capture_output=True, env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )  # fmt: skip
    yield tag
    docker("rmi", "-f", tag, check=False)


@pytest.mark.docker
async def test_a_pull_counts_its_bytes_and_time(
    registry: str,  # noqa: F811 - the fixture imported above
    unique_image: str,
    unique: str,
) -> None:
    ref = f"{registry}/{unique_image}"
    docker("tag", unique_image, ref)
    docker("push", ref)
    docker("rmi", ref, unique_image)  # the layer of its own is gone from the engine
    before = scrape()
    s = make_spawner(unique, image=ref, remove=True)
    try:
        await s.start()
        after = scrape()
    finally:
        await s.stop()
        docker("rmi", "-f", ref, check=False)
    pulled = value(after, "rustdocker_image_pull_bytes_total") - value(
        before, "rustdocker_image_pull_bytes_total"
    )
    assert pulled >= 200 * 1024, pulled
    name = "rustdocker_image_pull_duration_seconds_count"
    assert value(after, name, outcome="success") == value(before, name, outcome="success") + 1
    name = "rustdocker_spawn_phase_duration_seconds_count"
    assert value(after, name, phase="pull") == value(before, name, phase="pull") + 1
    name = "rustdocker_docker_api_calls_total"
    assert value(after, name, verb="pull_image") == value(before, name, verb="pull_image") + 1
    # The create that found the image missing: one not_found, as the pull policy expects.
    name = "rustdocker_docker_api_errors_total"
    assert value(after, name, verb="create_container", kind="not_found") >= 1


@pytest.mark.docker
async def test_an_engine_that_goes_away_counts_connection_errors_and_resyncs(
    unique: str, tmp_path: Path
) -> None:
    proxy = CountingProxy(tmp_path / "docker.sock")
    await proxy.start()
    s = make_spawner(unique, docker_host=proxy.url, remove=True)
    try:
        await s.start()
        client = await s.docker_client()
        await wait_for(lambda: client.cache_synced, 30, "the state cache to sync")
        before = scrape()
        await proxy.close()  # the socket is gone, and the events stream with it
        await wait_for(lambda: not client.cache_synced, 30, "the cache to notice")
        assert await s.poll() is None  # reported running meanwhile, never raises
        with pytest.raises(Exception, match="cannot reach the Docker engine"):
            await s.stop()
        during = scrape()
        name = "rustdocker_docker_api_errors_total"
        errors = sum(
            v - before.get(k, 0.0)
            for k, v in during.items()
            if k[0] == name and ("kind", "connection") in k[1]
        )
        assert errors >= 2, errors  # the poll's inspect and the stop's
        name = "rustdocker_events_disconnects_total"
        assert value(during, name) >= value(before, name) + 1
        await proxy.start()  # the engine is back
        await wait_for(lambda: client.cache_synced, 30, "the cache to resync")
        name = "rustdocker_events_resyncs_total"
        assert value(scrape(), name) >= value(before, name) + 1
    finally:
        if not proxy.path.exists():
            await proxy.start()
        await s.stop()
        await proxy.close()

"""Faults of the engine under a real hub: dockerd restarted or frozen in the middle of 30 spawns,
its events stream cut again and again, a registry that stops in the middle of a pull. Each ends
with the inventory (harness.py): nothing on the engine the hub does not know about, no
duplicate, every server the hub reports running has its running container; and after every
server is stopped, nothing left but the users' volumes.
"""

from __future__ import annotations

import concurrent.futures
import re
import time
from collections.abc import Callable
from pathlib import Path

from test_pull_faults import StallingRegistry

from .harness import (
    FaultHub,
    ThreadedProxy,
    clean_up,
    count_by_server,
    wait_consistent,
)
from dockerd import Dockerd
from e2e.hub import wait_until

N = 30


def labelled_containers(hub: FaultHub) -> int:
    flt = f"label=org.rustdocker.hub={hub.hub_id}"
    return len(hub.engine.docker("ps", "-aq", "--filter", flt).stdout.split())


def spawn_errors(hub: FaultHub, users: list[str]) -> dict[str, str]:
    """The error the hub logged for each user whose start failed."""
    errors: dict[str, str] = {}
    for line in hub.log_text().splitlines():
        m = re.search(
            r"(?:Unhandled error starting|Failed to start|failed to start) (\S+?)'s server: (.*)",
            line,
        )
        if m is None:
            m = re.search(
                r"Error starting (\S+?)'s server|(\S+?)'s server failed to start(.*)", line
            )
            if m is None:
                continue
        name = m.group(1)
        if name in users:
            errors[name] = m.group(2) if m.lastindex and m.lastindex >= 2 else line
    return errors


def test_dockerd_restarted_while_30_spawns_are_in_flight(
    make_hub: Callable[..., FaultHub], own_engine: Dockerd
) -> None:
    """Every spawn returns or fails with an error; afterwards the engine holds no container the
    hub does not know about and no duplicate, and every server starts again."""
    engine = own_engine
    hub = make_hub(start_timeout=60)
    users = [f"restart{i:02d}" for i in range(N)]
    hub.create_users(users)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        posts = pool.submit(hub.request_starts, users)
        wait_until(lambda: labelled_containers(hub) >= 5, 60, "the first containers")
        engine.restart()
        statuses = posts.result(180)
    assert set(statuses.values()) <= {201, 202, 500, 503}, statuses
    hub.wait_settled(120)
    # The restart stopped the containers that were running (no live-restore): the hub's polls
    # see them stopped and the hub stops those servers; the starts that were cut failed.
    inv = wait_consistent(hub, 60)
    survivors = {user for (user, _), m in inv.servers.items() if m["ready"]}
    assert survivors == inv.running(), inv
    # Every server starts again: a dead container of a failed start is replaced, not doubled.
    hub.request_starts(users)
    hub.wait_settled(180)
    inv = wait_consistent(hub, 60)
    assert hub.ready_users() == set(users), inv
    assert set(count_by_server(inv).values()) == {1}
    clean_up(hub, users)


def test_events_stream_cut_again_and_again(
    make_hub: Callable[..., FaultHub], own_engine: Dockerd, tmp_path: Path
) -> None:
    """The hub's connection to the engine (its events stream with it) is cut 8 times while
    containers are killed outside the hub: polls keep every live server running and see every
    killed one stopped."""
    engine = own_engine
    proxy = ThreadedProxy(tmp_path / "engine.sock", engine.socket)
    try:
        hub = make_hub(host=proxy.url)
        users = [f"cut{i}" for i in range(8)]
        hub.create_users(users)
        hub.request_starts(users)
        hub.wait_settled(120)
        assert hub.ready_users() == set(users)
        killed: set[str] = set()
        streams = proxy.count("/events")
        for round_ in range(8):
            proxy.cut()
            if round_ % 3 == 1:
                victim = users[round_]
                engine.docker("kill", f"jupyter-{victim}")
                killed.add(victim)
            # No live server is ever reported stopped.
            alive = set(users) - killed
            assert alive <= hub.ready_users()
            before = proxy.count("/events")
            wait_until(lambda: proxy.count("/events") > before, 30, "the stream")  # noqa: B023
        assert proxy.count("/events") >= streams + 8
        wait_until(lambda: hub.ready_users() == set(users) - killed, 30, "the killed seen stopped")
        wait_consistent(hub, 30)
        clean_up(hub, users)
    finally:
        proxy.close()


def test_dockerd_frozen_for_20_seconds_during_spawns_and_polls(
    make_hub: Callable[..., FaultHub], own_engine: Dockerd
) -> None:
    """SIGSTOP for 20 s while 5 servers run and 10 start: the starts time out (start_timeout
    10 s) and are undone once the engine answers; no running server is reported dead; then
    everything starts."""
    engine = own_engine
    hub = make_hub(start_timeout=10)
    running = [f"frozen-run{i}" for i in range(5)]
    starting = [f"frozen-new{i}" for i in range(10)]
    hub.create_users(running + starting)
    hub.request_starts(running)
    hub.wait_settled(120)
    assert hub.ready_users() == set(running)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        engine.freeze()
        try:
            posts = pool.submit(hub.request_starts, starting)
            thaw_at = time.monotonic() + 20
            while time.monotonic() < thaw_at:
                # The hub polls every 2 s: not one of the running servers is reported dead.
                assert set(running) <= hub.ready_users()
                time.sleep(1)
        finally:
            engine.thaw()
        statuses = posts.result(120)
    assert set(statuses.values()) <= {201, 202, 500, 503}, statuses
    hub.wait_settled(120)
    inv = wait_consistent(hub, 60)
    assert set(running) <= hub.ready_users(), inv
    hub.request_starts(starting)
    hub.wait_settled(120)
    wait_consistent(hub, 60)
    assert hub.ready_users() == set(running + starting)
    clean_up(hub, running + starting)


def test_registry_stopped_in_the_middle_of_a_pull(
    make_hub: Callable[..., FaultHub], own_engine: Dockerd
) -> None:
    """The registry goes away while the engine downloads a layer (the connection is cut in the
    middle of the blob, new ones are refused): the start fails with an error naming the image,
    and no container is left."""
    registry = StallingRegistry()
    image = f"{registry.host}/rustdocker-test/gone:1"
    try:
        hub = make_hub(
            start_timeout=180,
            extra_config=f"c.DockerSpawner.allowed_images = {{'tiny': c.DockerSpawner.image, "
            f"'remote': {image!r}}}\n",
        )
        hub.create_users(["pull0"])
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            posts = pool.submit(hub.request_starts, ["pull0"], image="remote")
            assert registry.stalled.wait(60), "the engine never asked for the layer"
            registry.close()
            posts.result(60)
        hub.wait_settled(200)
        assert hub.ready_users() == set()
        errors = [line for line in hub.log_text().splitlines() if "pull0" in line and image in line]
        assert any("[E " in line for line in errors), hub.log_tail(40)
        inv = wait_consistent(hub, 30)
        assert inv.containers == {}
        clean_up(hub, ["pull0"])
    finally:
        registry.close()
        own_engine.docker("rmi", "-f", image, check=False)

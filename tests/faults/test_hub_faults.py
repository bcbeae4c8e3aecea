"""Faults of the hub, and hub restarts in awkward moments: killed with SIGKILL in the middle of 30
spawns; restarted after `network_name` changed; restarted while its engine is down. And the
engine restarting under running servers (no hub needed): every server whose container died is
reported stopped once the engine answers again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from collections.abc import Callable

import requests

from .conftest import NETWORK
from .harness import FaultHub, clean_up, count_by_server, wait_consistent
from conftest import make_spawner, wait_for
from dockerd import Dockerd
from e2e.hub import wait_until


def test_hub_killed_in_the_middle_of_30_spawns_and_restarted(
    make_hub: Callable[..., FaultHub], own_engine: Dockerd
) -> None:
    """Each server is either running and re-attached, or stopped and cleaned up; never two
    containers for one server; and every one starts afterwards."""
    hub = make_hub(start_timeout=60)
    users = [f"kill{i:02d}" for i in range(30)]
    hub.create_users(users)
    flt = f"label=org.rustdocker.hub={hub.hub_id}"

    def some_created() -> bool:
        return len(own_engine.docker("ps", "-aq", "--filter", flt).stdout.split()) >= 8

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        posts = pool.submit(hub.request_starts, users)
        wait_until(some_created, 60, "the first containers")
        hub.kill()
        with contextlib.suppress(requests.RequestException):
            posts.result(120)  # the hub died under them
    hub.start()
    hub.wait_settled(120)
    inv = wait_consistent(hub, 60)
    assert set(count_by_server(inv).values()) <= {1}
    hub.request_starts(users)
    hub.wait_settled(180)
    inv = wait_consistent(hub, 60)
    assert hub.ready_users() == set(users), inv
    assert set(count_by_server(inv).values()) == {1}
    clean_up(hub, users)


def test_hub_restarted_after_network_name_changed(
    make_hub: Callable[..., FaultHub], own_engine: Dockerd
) -> None:
    """The hub comes up (get_url does not raise for a container that is not on the new
    network: it keeps the stored URL, with a warning); the running servers stay tracked and
    reachable; new starts use the new network."""
    hub = make_hub()
    users = ["net0", "net1", "net2"]
    hub.create_users(users)
    hub.request_starts(users)
    hub.wait_settled(120)
    assert hub.ready_users() == set(users)
    hub.stop()
    own_engine.create_network("rdfaults-b")
    try:
        hub.set_config('c.DockerSpawner.network_name = "rdfaults-b"')
        hub.start()
        hub.wait_settled(60)
        assert hub.ready_users() == set(users)
        log = hub.log_text()
        assert "using its stored URL" in log and "still running" in log
        # Still reachable through the proxy (busybox answers 404; the proxy would say 503).
        r = requests.get(f"{hub.url}/user/net0/", timeout=10, allow_redirects=False)
        assert r.status_code == 404, r.status_code
        wait_consistent(hub, 30)
        # A new start lands on the new network.
        hub.request_stops(["net0"])
        wait_until(lambda: "net0" not in hub.ready_users(), 60, "net0 stopped")
        hub.request_starts(["net0"])
        hub.wait_settled(60)
        info = own_engine.inspect("jupyter-net0")[0]
        assert list(info["NetworkSettings"]["Networks"]) == ["rdfaults-b"]
        wait_consistent(hub, 30)
        clean_up(hub, users)
    finally:
        hub.stop()
        own_engine.docker("network", "rm", "rdfaults-b", check=False)


def test_hub_restarted_while_its_engine_is_down(
    make_hub: Callable[..., FaultHub], own_engine: Dockerd
) -> None:
    """The engine is stopped (with live-restore: its containers keep running) and the hub
    restarted: the hub comes up, poll() reports every server running while the engine cannot be
    reached, and when the engine is back every server is still tracked and running."""
    own_engine.live_restore = True
    own_engine.restart()
    hub = make_hub()
    users = ["down0", "down1", "down2"]
    hub.create_users(users)
    hub.request_starts(users)
    hub.wait_settled(120)
    hub.stop()
    own_engine.stop()
    hub.start()
    hub.wait_settled(60)
    assert hub.ready_users() == set(users)
    log = hub.log_text()
    assert "reported running until the engine answers" in log
    assert "using its stored URL" in log
    # A few rounds of polls (every 2 s) while the engine stays down: nobody is reported dead.
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        assert hub.ready_users() == set(users)
        time.sleep(1)
    own_engine.start()
    wait_until(lambda: "the engine answers polls again" in hub.log_text(), 30, "polls answered")
    assert hub.ready_users() == set(users)
    wait_consistent(hub, 30)
    clean_up(hub, users)


async def test_servers_whose_containers_died_in_an_engine_restart_are_reported_stopped(
    own_engine: Dockerd,
) -> None:
    """The engine restarts (its containers stop with it): while it is down poll() reports the
    servers running; once it answers again every one is reported stopped, within seconds."""
    spawners = [
        make_spawner(
            f"engine-restart-{i}",
            docker_host=own_engine.host,
            network_name=NETWORK,
            remove=True,
        )
        for i in range(5)
    ]
    await asyncio.gather(*(s.start() for s in spawners))
    assert await asyncio.gather(*(s.poll() for s in spawners)) == [None] * 5
    await asyncio.to_thread(own_engine.stop)
    assert await asyncio.gather(*(s.poll() for s in spawners)) == [None] * 5
    await asyncio.to_thread(own_engine.start)

    async def all_stopped() -> bool:
        return None not in await asyncio.gather(*(s.poll() for s in spawners))

    took = await wait_for(all_stopped, 30, "every server reported stopped", interval=0.1)
    print(f"reported stopped {took:.2f} s after the engine answered")
    await asyncio.gather(*(s.stop() for s in spawners))
    assert own_engine.docker("ps", "-aq", "--filter", "name=engine-restart-").stdout == ""

"""The events-driven state cache, against the real engine."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rustdocker import _core

from conftest import CountingProxy, docker, exists, inspect, make_spawner, wait_for


@pytest.mark.docker
async def test_poll_makes_no_api_call_once_synced(unique: str, proxy: CountingProxy) -> None:
    spawners = [make_spawner(f"{unique}-{i}", docker_host=proxy.url, remove=True) for i in range(5)]
    await asyncio.gather(*(s.start() for s in spawners))
    client = await spawners[0].docker_client()
    await wait_for(lambda: client.cache_synced, 5, "cache synced")
    # The proxy does see the spawner's requests: the count below can fail.
    assert proxy.count("/containers/create") == 5
    before = len(proxy.requests)
    for _ in range(3):
        assert await asyncio.gather(*(s.poll() for s in spawners)) == [None] * 5
    assert proxy.requests[before:] == [], "poll() made Docker API calls"
    # What the cache says is what the engine shows.
    for s in spawners:
        cached = client.cached_status(s.object_id)
        assert cached is not None and cached.running
        assert inspect("container", s.object_name)["State"]["Running"] is True
    await asyncio.gather(*(s.stop() for s in spawners))


@pytest.mark.docker
async def test_kill_and_remove_outside_jupyterhub_seen_within_a_second(
    unique: str, proxy: CountingProxy
) -> None:
    s = make_spawner(unique, docker_host=proxy.url)
    await s.start()
    client = await s.docker_client()
    await wait_for(lambda: client.cache_synced, 5, "cache synced")
    docker("kill", s.object_name)

    def stopped() -> bool:
        status = client.cached_status(s.object_id)
        return status is not None and not status.running

    await wait_for(stopped, 1.0, "kill seen by the cache")
    before = len(proxy.requests)
    assert await s.poll() == 137
    assert proxy.requests[before:] == []
    docker("rm", "-f", s.object_name)
    await wait_for(lambda: client.cached_status(s.object_id) is None, 1.0, "removal seen")
    assert await s.poll() == 0


@pytest.mark.docker
async def test_fresh_cache_after_hub_restart(unique: str) -> None:
    running = make_spawner(f"{unique}-a")
    vanished = make_spawner(f"{unique}-b")
    await asyncio.gather(running.start(), vanished.start())
    states = [running.get_state(), vanished.get_state()]
    docker("rm", "-f", vanished.object_name)
    # A new hub process: a new connection, hence a new cache that starts by listing.
    client = await _core.DockerClient.connect()
    await wait_for(lambda: client.cache_synced, 5, "new cache synced")
    cached = client.cached_status(states[0]["object_id"])
    assert cached is not None and cached.running
    assert client.cached_status(states[1]["object_id"]) is None
    s1 = make_spawner(f"{unique}-a")
    s1.load_state(states[0])
    s2 = make_spawner(f"{unique}-b")
    s2.load_state(states[1])
    assert await s1.poll() is None
    assert await s2.poll() == 0
    await s1.start()  # re-attaches: no second container
    ids = docker("ps", "-aq", "--filter", f"name=^{s1.object_name}$").stdout.split()
    assert len(ids) == 1
    assert s1.object_id == states[0]["object_id"]
    await s1.stop()


@pytest.mark.docker
async def test_disconnect_resyncs_and_polls_stay_correct(unique: str, proxy: CountingProxy) -> None:
    s = make_spawner(unique, docker_host=proxy.url, remove=True)
    await s.start()
    client = await s.docker_client()
    await wait_for(lambda: client.cache_synced, 5, "cache synced")
    resyncs = client.cache_stats["resyncs"]
    await proxy.drop_connections()
    # While the stream is down, polls fall back to inspects and still see the server running.
    assert await s.poll() is None
    await wait_for(lambda: client.cache_stats["disconnects"] >= 1, 5, "disconnect noticed")
    # Something changes while the cache is away; the resync must show it.
    docker("kill", s.object_name)
    await wait_for(
        lambda: client.cache_synced and client.cache_stats["resyncs"] > resyncs, 10, "resynced"
    )

    def stopped() -> bool:
        status = client.cached_status(s.object_id)
        return status is not None and not status.running

    await wait_for(stopped, 2, "kill seen after resync")
    assert await s.poll() == 137
    await s.stop()
    assert not exists("container", s.object_name)


@pytest.mark.docker
async def test_a_slow_stop_does_not_delay_another_user(unique: str, proxy: CountingProxy) -> None:
    # PID 1 ignores SIGTERM, so its stop waits out the 3 s grace period. Both users share the
    # hub's client, here through the proxy.
    slow = make_spawner(
        f"{unique}-slow", cmd=["sh", "-c", "trap '' TERM; httpd -f -p 8888 -h /www"],
        stop_timeout=3, remove=True, docker_host=proxy.url,
    )  # fmt: skip
    fast = make_spawner(f"{unique}-fast", remove=True, docker_host=proxy.url)
    await slow.start()
    stops = proxy.count("/stop")
    finished: list[str] = []

    async def run(name: str, coro_fn: Callable[[], object]) -> None:
        await coro_fn()  # type: ignore[misc]
        finished.append(name)

    async def fast_cycle() -> None:
        # The slow stop takes its container's lock before it asks the engine to stop it: once
        # the proxy has seen that request, the stop is under way and holds the lock.
        await wait_for(lambda: proxy.count("/stop") > stops, 5, "the slow stop under way")
        await fast.start()
        assert await fast.poll() is None
        await fast.stop()

    await asyncio.gather(run("slow-stop", slow.stop), run("fast-cycle", fast_cycle))
    assert finished == ["fast-cycle", "slow-stop"]


@pytest.mark.docker
async def test_a_container_being_restarted_by_its_policy_counts_as_running(
    unique: str, proxy: CountingProxy
) -> None:
    """The engine restarts a crashed container with a restart policy, with a growing delay
    (100 ms, 200 ms, 400 ms, ...): meanwhile the server is still there, and every poll says so."""
    s = make_spawner(
        unique, docker_host=proxy.url, extra_host_config={"restart_policy": {"Name": "always"}}
    )
    await s.start()
    client = await s.docker_client()
    await wait_for(lambda: client.cache_synced, 5, "cache synced")
    answers: list[int | None] = []
    for crash in range(1, 4):
        deadline = asyncio.get_running_loop().time() + 20
        while inspect("container", s.object_name)["RestartCount"] < crash:
            # PID 1 of the test image exits on SIGTERM once its trap is set: a crash, as the
            # engine sees it (sent again until it lands: a fresh PID 1 may not trap yet).
            docker("exec", s.object_name, "sh", "-c", "kill 1", check=False)
            answers.append(await s.poll())
            assert asyncio.get_running_loop().time() < deadline, "the engine did not restart it"
            await asyncio.sleep(0.005)
        await wait_for(lambda: inspect("container", s.object_name)["State"]["Running"], 10, "up")
        answers.append(await s.poll())
    assert answers and set(answers) == {None}, answers
    docker("update", "--restart", "no", s.object_name)
    await s.stop()


@pytest.mark.docker
async def test_a_silent_events_stream_is_renewed(unique: str, proxy: CountingProxy) -> None:
    """A half-open connection to a remote engine brings no events and no error: the cache renews
    a stream that stayed silent, so what happened meanwhile is seen (here: within 30 s)."""
    s = make_spawner(unique, docker_host=proxy.url)
    await s.start()
    client = await s.docker_client()
    await wait_for(lambda: client.cache_synced, 5, "cache synced")
    stats = client.cache_stats
    await proxy.freeze_connections("/events")  # the events stream goes silent, stays open
    docker("kill", s.object_name)

    def renewed() -> bool:
        now = client.cache_stats
        return now["renewals"] > stats["renewals"] and now["resyncs"] > stats["resyncs"]

    await wait_for(renewed, 40, "a renewal and its listing")
    assert await s.poll() == 137
    await s.stop()


@pytest.mark.docker
async def test_get_url_after_a_hub_restart_makes_no_api_call(unique: str, tmp_path: Path) -> None:
    """A restarted hub asks every server's URL at once: the fresh cache's listing knows where
    each is reached, so get_url() asks the engine nothing."""
    from jupyterhub import orm

    async with CountingProxy(tmp_path / "before.sock") as before:
        spawners = [make_spawner(f"{unique}-{i}", docker_host=before.url) for i in range(5)]
        addresses = await asyncio.gather(*(s.start() for s in spawners))
    async with CountingProxy(tmp_path / "after.sock") as after:
        restarted = []
        for s in spawners:
            again = make_spawner(s.user.name, docker_host=after.url)
            again.load_state(s.get_state())
            again.orm_spawner.server = orm.Server(
                proto="http", ip="", port=0, base_url=f"/user/{s.user.name}/", cookie_name="c"
            )
            restarted.append(again)
        client = await restarted[0].docker_client()
        await wait_for(lambda: client.cache_synced, 5, "cache synced")
        start = len(after.requests)
        urls = await asyncio.gather(*(s.get_url() for s in restarted))
        assert after.requests[start:] == [], "get_url() asked the engine"
        assert urls == [
            f"http://{ip}:{port}/user/{s.user.name}/"
            for (ip, port), s in zip(addresses, spawners, strict=True)
        ]
        await asyncio.gather(*(s.stop() for s in restarted))


@pytest.mark.docker
async def test_a_restarted_hub_reattaches_its_servers_with_a_handful_of_calls(
    unique: str, tmp_path: Path
) -> None:
    """A restarted hub checks every server at once, right after connecting: for each, poll()
    and then get_url() (jupyterhub/app.py, `check_spawner`). The new connection's cache has not
    listed yet; waiting for its first listing answers them all, where inspecting would cost
    two calls per server (bench/hubscale.py restart: 600 for 300 servers)."""
    from jupyterhub import orm

    n = 20
    async with CountingProxy(tmp_path / "before.sock") as before:
        spawners = [
            make_spawner(f"{unique}-{i}", docker_host=before.url, remove=True) for i in range(n)
        ]
        addresses = await asyncio.gather(*(s.start() for s in spawners))
    # A new hub process: a new connection (another socket), hence a new client and cache.
    async with CountingProxy(tmp_path / "after.sock") as after:
        restarted = []
        for s in spawners:
            again = make_spawner(s.user.name, docker_host=after.url, remove=True)
            again.load_state(s.get_state())
            again.orm_spawner.server = orm.Server(
                proto="http", ip="", port=0, base_url=f"/user/{s.user.name}/", cookie_name="c"
            )
            restarted.append(again)

        async def check(spawner: Any) -> tuple[int | None, str]:
            return await spawner.poll(), await spawner.get_url()

        checked = await asyncio.gather(*(check(s) for s in restarted))
        assert checked == [
            (None, f"http://{ip}:{port}/user/{s.user.name}/")
            for (ip, port), s in zip(addresses, spawners, strict=True)
        ]
        # Connecting, the engine's clock, one listing, one events stream: no per-server call.
        assert after.counts["GET /containers/{id}/json"] == 0, after.requests
        assert sum(after.counts.values()) <= 6, after.requests
        await asyncio.gather(*(s.stop() for s in restarted))

"""One client, one connection pool and one events stream per engine per hub process, however
many spawners ask for it at once (JupyterHub polls every server together when it starts)."""

from __future__ import annotations

import asyncio

import pytest
from proxy import CountingProxy

from conftest import make_spawner, wait_for

pytestmark = pytest.mark.docker


async def test_300_spawners_polled_at_once_share_one_events_stream(
    proxy: CountingProxy,
) -> None:
    spawners = [make_spawner(f"storm{i}", docker_host=proxy.url) for i in range(300)]
    clients = await asyncio.gather(*(s.docker_client() for s in spawners))
    assert len({id(c) for c in clients}) == 1
    assert await asyncio.gather(*(s.poll() for s in spawners)) == [0] * 300
    await wait_for(lambda: clients[0].cache_synced, 10, "the cache synced")
    assert proxy.count("/events") == 1, [r for r in proxy.requests if "/events" in r]
    assert proxy.count("/_ping") + proxy.count("/version") <= 2, proxy.requests[:10]


async def test_a_cancelled_waiter_does_not_cancel_the_shared_connection(
    proxy: CountingProxy,
) -> None:
    first, second = (make_spawner(f"c{i}", docker_host=proxy.url) for i in range(2))
    waiting = asyncio.ensure_future(first.docker_client())
    other = asyncio.ensure_future(second.docker_client())
    await asyncio.sleep(0)
    waiting.cancel()
    client = await other
    assert client.cache_synced or client.api_version
    assert proxy.count("/events") <= 1

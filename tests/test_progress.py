"""Progress while a server starts (`progress()`), and one pull per image: the wording and the
arithmetic, the generator's rules (never back, only changes, ends with the start), then against
the engine and Debian's docker-registry: a real pull's bytes, and 20 starts of one uncached
image sharing a single pull."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from registry import Registry

from rustdocker.progress import RateMeter, describe, describe_pull, duration, megabytes

from conftest import TINY_IMAGE, make_spawner, skip_or_fail, wait_for

MB = 1_000_000


def pull(**figures: Any) -> dict[str, Any]:
    base = {
        "image": "reg:5000/big:1",
        "elapsed": 10.0,
        "layers": 4,
        "layers_done": 1,
        "sizes_unknown": 0,
        "total": 1024 * MB,
        "downloaded": 0,
        "extracted": 0,
    }
    return {**base, **figures}


def test_wording() -> None:
    assert megabytes(1_024_400_000) == "1,024"
    assert [duration(s) for s in (0.4, 34, 125, 3780)] == ["0 s", "34 s", "2 min 5 s", "1 h 3 min"]
    meter = RateMeter()
    percent, message = describe_pull(pull(downloaded=100 * MB), False, meter, now=0.0)
    assert message == "Pulling image reg:5000/big:1: 100 of 1,024 MB, layer 2 of 4"
    percent2, message = describe_pull(pull(downloaded=136 * MB), False, meter, now=2.0)
    # 18 MB/s; what is left counts extraction too: (2 * 1024 - 136) / 18 = 106 s.
    assert message == (
        "Pulling image reg:5000/big:1: 136 of 1,024 MB, 18.0 MB/s, about 1 min 46 s left, "
        "layer 2 of 4"
    )
    assert 10 <= percent < percent2 < 80
    _, message = describe_pull(
        pull(downloaded=1024 * MB, extracted=512 * MB, layers_done=2), True, RateMeter(), 0.0
    )
    assert message.startswith(
        "Extracting image reg:5000/big:1 (already being pulled for another server): 512 of 1,024"
    )
    # Sizes not known yet: no time left is promised.
    _, message = describe_pull(pull(sizes_unknown=2, total=0), False, RateMeter(), 0.0)
    assert message == "Pulling image reg:5000/big:1: 4 layers"
    _, message = describe_pull(
        pull(sizes_unknown=2, total=300 * MB, downloaded=10 * MB), False, RateMeter(), 0.0
    )
    assert message == "Pulling image reg:5000/big:1: 10 of at least 300 MB, layer 2 of 4"
    assert (
        describe_pull(pull(downloaded=1024 * MB, extracted=1024 * MB), False, meter, 9.0)[0] == 80
    )


def test_phases() -> None:
    meter = RateMeter()

    def at(phase: str, seconds: float = 1.0, detail: str = "") -> tuple[int, str]:
        snap = {"phase": phase, "phase_seconds": seconds, "detail": detail, "pull": None}
        return describe("core", snap, meter, now=100.0, since=99.0)

    assert describe("preparing", None, meter, 0, 0) == (1, "Preparing the server")
    assert at("volumes") == (5, "Creating the server's volumes")
    assert at("create") == (8, "Creating the container")
    assert at("start") == (85, "Starting the container")
    assert at("start", 31)[1] == "Starting the container (the Docker engine has taken 31 s)"
    assert at("task", 1, "pending")[1] == "Waiting for the swarm to run the server (task pending)"
    assert at("task", 25, "pending")[1] == (
        "Waiting for the swarm to run the server (task pending: no node can take it yet "
        "(placement constraints, or resources reserved))"
    )
    snap = {"phase": "task", "phase_seconds": 1, "detail": "preparing", "node": "w1"}
    assert describe("core", snap, meter, 100.0, 99.0, image="reg:5000/big:1")[1] == (
        "Waiting for the swarm to run the server (task preparing on node 'w1': the node pulls "
        "reg:5000/big:1 if it does not have it)"
    )
    assert at("task", 25, "assigned")[1] == (
        "Waiting for the swarm to run the server (task assigned: the node may be pulling the image)"
    )
    assert describe("waiting", None, meter, now=40.0, since=10.0) == (
        90,
        "Container started; waiting for the server to answer (30 s so far: it may still be "
        "starting up)",
    )


async def test_events_only_forward_and_only_changes(fake_client: Any) -> None:
    s = make_spawner("pam", progress_interval=0.1)
    script = [
        {"phase": "create", "phase_seconds": 0.1},
        {"phase": "create", "phase_seconds": 0.2},  # the same message: not sent again
        {"phase": "pull", "phase_seconds": 0.1, "pull": pull(downloaded=512 * MB)},
        {"phase": "create", "phase_seconds": 0.1},  # after the pull: the bar stays
        {"phase": "start", "phase_seconds": 0.1},
    ]
    snapshots = iter(script)
    fake_client.answers["start_progress"] = lambda ticket: json.dumps(
        {"detail": "", "pull": None, "joined": False, **next(snapshots)}
    )
    s._spawn_pending = True
    s._set_start_stage("core", "ticket", fake_client)
    events = []
    async for event in s.progress():
        events.append(event)
        if len(events) == 4:
            s._set_start_stage("waiting")
        if len(events) == 5:
            s._set_start_stage(None)
            s._spawn_pending = False
    # 512 MB downloaded of 1,024: a quarter of the bytes to download and extract.
    assert [e["progress"] for e in events] == [8, 28, 28, 85, 90]
    assert events[1]["message"].startswith("Pulling image reg:5000/big:1: 512 of 1,024 MB")
    assert events[2]["message"] == "Creating the container"
    # Ends by itself once the start is over.
    assert fake_client.called("start_progress")[0] == {"ticket": "ticket"}


# ------------------------------------------------------------------ against the engine


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    import shutil

    if shutil.which("docker-registry") is None:
        skip_or_fail("Debian's docker-registry is needed (apt-get install docker-registry)")
    r = Registry(tmp_path_factory.mktemp("registry"))
    r.start()
    try:
        yield r
    finally:
        r.stop()


def forget(image: str) -> None:
    from registry import docker_cli

    docker_cli("rmi", "-f", image, check=False)


@pytest.mark.docker
async def test_twenty_starts_of_an_uncached_image_make_one_pull(
    registry: Registry, proxy: Any, unique: str
) -> None:
    image = registry.push(TINY_IMAGE, f"rustdocker-test/shared-{uuid.uuid4().hex[:8]}")
    spawners = [
        make_spawner(f"{unique}{i}", image=image, docker_host=proxy.url, remove=True)
        for i in range(20)
    ]
    try:
        await asyncio.gather(*(s.start() for s in spawners))
        # Every start found the image missing; one asked the engine to pull it.
        assert proxy.count("/images/create") == 1, proxy.requests
        assert proxy.count("/containers/create") >= 40
    finally:
        await asyncio.gather(*(s.stop() for s in spawners), return_exceptions=True)
        forget(image)


@pytest.mark.docker
async def test_progress_of_a_real_pull(registry: Registry, unique: str, tmp_path: Path) -> None:
    image = await asyncio.to_thread(
        registry.push_big,
        f"rustdocker-test/big-{uuid.uuid4().hex[:8]}",
        TINY_IMAGE,
        96,
        3,
        {"org.rustdocker.test": "progress"},
    )
    s = make_spawner(unique, image=image, remove=True, progress_interval=0.1)
    s._spawn_pending = True
    events: list[dict[str, Any]] = []

    async def follow() -> None:
        async for event in s.progress():
            events.append(event)

    follower = asyncio.create_task(follow())
    try:
        await s.start()
        await wait_for(lambda: bool(events) and events[-1]["progress"] == 90, 10, "waiting")
    finally:
        s._spawn_pending = False
        await s.stop()
        await asyncio.wait_for(follower, 10)  # the stream ends with the start
        forget(image)
    pulling = [e for e in events if e["message"].startswith("Pulling image " + image)]
    assert pulling, events
    # 96 MiB of random data: about 101 MB compressed, in bytes as the engine counts them.
    totals = {
        int(e["message"].split(" of ")[1].split(" MB")[0])
        for e in pulling
        if " of " in e["message"] and "at least" not in e["message"]
    }
    assert totals and all(95 <= t <= 110 for t in totals), pulling
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress), progress
    assert len({p for p in progress if 10 < p < 80}) >= 2, events  # the bar moved with the bytes
    assert events[-1]["progress"] >= 85


@pytest.mark.docker
async def test_pre_pull_fetches_what_users_may_choose_and_starts_join_it(
    registry: Registry, proxy: Any, unique: str, logs: Any
) -> None:
    image = await asyncio.to_thread(
        registry.push_big,
        f"rustdocker-test/pre-{uuid.uuid4().hex[:8]}",
        TINY_IMAGE,
        64,
        2,
        {"org.rustdocker.test": "pre-pull"},
    )
    s = make_spawner(
        unique,
        allowed_images={"tiny": TINY_IMAGE, "big": image},
        profile_list=[{"display_name": "Big", "spawner_override": {"image": image}}],
        pre_pull=True,
        docker_host=proxy.url,
        remove=True,
    )
    assert s.pre_pull_list() == [TINY_IMAGE, image]
    joiner = make_spawner(f"{unique}b", image=image, docker_host=proxy.url, remove=True)
    try:
        assert await s.start_pre_pull()
        await wait_for(lambda: proxy.count("/images/create") == 1, 60, "the pre-pull's pull")
        await joiner.start()  # during or after the pre-pull: never a second pull
        assert proxy.count("/images/create") == 1, proxy.requests
        await wait_for(
            lambda: any(
                "pre-pull 2/2" in r.getMessage() and "ready" in r.getMessage() for r in logs.records
            ),
            120,
            "the pre-pull to log its end",
        )
        messages = [r.getMessage() for r in logs.records if "pre-pull" in r.getMessage()]
        assert any(
            f"pre-pull 1/2: image '{TINY_IMAGE}': already on the engine" in m for m in messages
        ), messages
    finally:
        await joiner.stop()
        forget(image)


def test_pre_pull_is_off_by_default_and_never_for_never() -> None:
    assert make_spawner().pre_pull is False
    s = make_spawner(pre_pull=True, pull_policy="never", pre_pull_images=["a:1", "a:1"])
    assert s.pre_pull_list() == [TINY_IMAGE, "a:1"]
    assert asyncio.run(s.start_pre_pull()) is False

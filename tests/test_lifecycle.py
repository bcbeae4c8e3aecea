"""The lifecycle: start, poll, stop, state across hub restarts, cancellation, post_start_cmd,
the command, and the errors a failed start raises."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import time

import pytest
from traitlets import TraitError

import rustdocker
from rustdocker import DockerSpawner

from conftest import (
    LABEL_HUB,
    SESSION_HUB_ID,
    TINY_IMAGE,
    CountingProxy,
    FakeClient,
    container_exec,
    docker,
    exists,
    fake_status,
    http_get,
    inspect,
    make_spawner,
    wait_for,
)


def test_base_trait_defaults() -> None:
    s = make_spawner()
    assert s.port == 8888
    assert s.ip == "0.0.0.0"
    assert s.cmd is None
    assert s.env_keep == []
    assert s.will_resume is True
    assert make_spawner(remove=True).will_resume is False
    assert s.pull_policy == "ifnotpresent"
    assert make_spawner(pull_policy="IfNotPresent").pull_policy.lower() == "ifnotpresent"
    with pytest.raises(TraitError):
        make_spawner(pull_policy="sometimes")


def test_state_keys_and_legacy_container_id() -> None:
    s = make_spawner("erin")
    assert s.get_state() == {}
    s.load_state({"container_id": "abc", "object_name": "jupyter-erin-old"})
    assert s.object_id == "abc"
    assert s.object_name == "jupyter-erin-old"
    assert s.get_state() == {"object_id": "abc", "object_name": "jupyter-erin-old"}
    s2 = make_spawner("erin")
    s2.load_state(s.get_state())
    assert (s2.object_id, s2.object_name) == ("abc", "jupyter-erin-old")
    s2.clear_state()
    # Kept so that the stopped container is found again at the next start.
    assert s2.get_state()["object_id"] == "abc"


def test_object_type_and_id_key() -> None:
    assert DockerSpawner.object_type == "container"
    assert DockerSpawner.object_id_key == "Id"


async def test_poll_reads_the_cache_before_asking_the_engine(fake_client: FakeClient) -> None:
    s = make_spawner("kim")
    s.load_state({"object_id": "abc", "object_name": "jupyter-kim"})
    fake_client.answers["cached_status"] = fake_status(running=True)
    assert await s.poll() is None
    assert [c.method for c in fake_client.calls] == ["cached_status"]
    # A container the cache does not know yet: the core's polled status (the first sync, or
    # an inspect).
    fake_client.answers["cached_status"] = None
    fake_client.answers["polled_status"] = fake_status(running=False, exit_code=3)
    assert await s.poll() == 3
    assert [c.method for c in fake_client.calls[1:]] == ["cached_status", "polled_status"]
    # Gone: 0, as DockerSpawner reports it.
    fake_client.answers["polled_status"] = None
    assert await s.poll() == 0


async def test_stop_hands_timeout_and_remove_to_the_core(fake_client: FakeClient) -> None:
    s = make_spawner("kim", remove=True, stop_timeout=7)
    s.load_state({"object_id": "abc", "object_name": "jupyter-kim"})
    await s.stop(now=True)  # `now` is ignored, as in DockerSpawner
    [stop] = fake_client.called("stop_server")
    assert "abc" in stop.values()  # the recorded container, by its id
    assert (stop["timeout"], stop["remove"]) == (7, True)
    assert s.get_state() == {}


async def test_post_stop_hook_removes_a_dead_servers_container(fake_client: FakeClient) -> None:
    """JupyterHub's User.stop calls stop() only for a server that polls running; for one that
    died (or whose start a killed hub never saw finish) the post-stop hook removes its container,
    by its name when the state has no id, then runs the configured hook."""
    ran: list[str] = []
    s = make_spawner("kim", remove=True, post_stop_hook=lambda sp: ran.append(sp.user.name))
    s.load_state({"object_id": "abc", "object_name": "jupyter-kim"})
    await s.run_post_stop_hook()
    [stop] = fake_client.called("stop_server")
    assert "abc" in stop.values() and stop["remove"] is True
    assert ran == ["kim"]
    fresh = make_spawner("kim", remove=True)
    await fresh.run_post_stop_hook()
    assert "jupyter-kim" in fake_client.called("stop_server")[1].values()
    # After the hub's own stop(), nothing more; without `remove` the container is kept.
    s.load_state({"object_id": "abc", "object_name": "jupyter-kim"})
    await s.stop()
    await s.run_post_stop_hook()
    kept = make_spawner("kim", remove=False)
    kept.load_state({"object_id": "abc", "object_name": "jupyter-kim"})
    await kept.run_post_stop_hook()
    assert len(fake_client.called("stop_server")) == 3


async def test_post_stop_hook_removes_each_death_of_the_same_spawner(
    fake_client: FakeClient,
) -> None:
    """The hook's own stop() is not the hub's: after it, the next death of the server (the hub
    keeps the spawner object after an error stop) is removed by the next hook too."""
    s = make_spawner("kim", remove=True)
    s.load_state({"object_id": "abc", "object_name": "jupyter-kim"})
    await s.run_post_stop_hook()
    s.load_state({"object_id": "def", "object_name": "jupyter-kim"})
    await s.run_post_stop_hook()
    calls = fake_client.called("stop_server")
    assert len(calls) == 2 and "def" in calls[1].values()


@pytest.mark.parametrize(("budget", "distinct_iterations"), [(0.0, 5), (60.0, 1)])
async def test_loop_share_spreads_simultaneous_starts(
    budget: float, distinct_iterations: int
) -> None:
    """A storm of starts takes turns across loop iterations once the budget is spent."""
    from rustdocker.loopshare import _LoopShare

    share = _LoopShare(budget)
    loop = asyncio.get_running_loop()
    iteration = 0
    running = True

    def count() -> None:
        nonlocal iteration
        iteration += 1
        if running:
            loop.call_soon(count)

    loop.call_soon(count)
    await asyncio.sleep(0)
    passed_at: list[int] = []

    async def start() -> None:
        await share.turn()
        passed_at.append(iteration)

    await asyncio.gather(*(start() for _ in range(5)))
    running = False
    assert len(set(passed_at)) == distinct_iterations, passed_at


# ------------------------------------------------------------------ on the engine


@pytest.mark.docker
async def test_start_poll_stop_lifecycle(unique: str) -> None:
    s = make_spawner(unique)
    assert await s.poll() == 0  # nothing known yet
    ip, port = await s.start()
    name = s.object_name
    info = inspect("container", name)
    assert info["State"]["Running"] is True
    assert info["Id"] == s.object_id
    assert await s.poll() is None
    # The returned address reaches the server.
    assert http_get(ip, port).strip() == "ok"
    binding = info["NetworkSettings"]["Ports"]["8888/tcp"][0]
    assert binding["HostIp"] == "127.0.0.1"
    assert int(binding["HostPort"]) == port
    # Environment and labels as the engine shows them.
    env = dict(e.split("=", 1) for e in info["Config"]["Env"])
    assert env["JUPYTERHUB_USER"] == unique
    assert env["JUPYTER_IMAGE_SPEC"] == s.image
    assert env["JUPYTERHUB_API_TOKEN"] == s.api_token
    labels = info["Config"]["Labels"]
    assert labels["org.rustdocker.user"] == unique
    assert labels["org.rustdocker.server"] == ""
    assert labels[LABEL_HUB] == SESSION_HUB_ID
    assert labels["org.rustdocker.managed-by"] == "rustdocker"
    # No limits sent when unset.
    assert info["HostConfig"]["Memory"] == 0
    assert info["HostConfig"]["CpuQuota"] == 0
    assert info["HostConfig"]["MemoryReservation"] == 0

    old_token = s.api_token
    await s.stop()
    info = inspect("container", name)
    assert info["State"]["Running"] is False  # remove=False keeps it
    assert await s.poll() == 0
    assert s.get_state() == {"object_id": info["Id"], "object_name": name}

    # Start again: the kept container is re-used, with its token.
    s.api_token = "new-token-ignored"
    await s.start()
    assert inspect("container", name)["Id"] == info["Id"]
    assert s.api_token == old_token
    docker("kill", name)

    async def gone() -> bool:
        return await s.poll() is not None

    # The engine reports the kill on its own time (to the events cache, or to an inspect).
    await wait_for(gone, 10, "poll() sees the killed server")
    assert await s.poll() == 137
    await s.stop()


@pytest.mark.docker
async def test_remove_true_removes_container_and_leftover(unique: str) -> None:
    s = make_spawner(unique, remove=True)
    await s.start()
    name = s.object_name
    first_id = s.object_id
    await s.stop()
    assert not exists("container", name)
    assert s.get_state() == {}
    # A leftover container with the same name is replaced at start.
    docker("create", "--name", name, "--label", f"{LABEL_HUB}={SESSION_HUB_ID}", s.image)
    await s.start()
    assert inspect("container", name)["Id"] not in (first_id, "")
    assert inspect("container", name)["State"]["Running"] is True
    await s.stop()
    assert not exists("container", name)


@pytest.mark.docker
async def test_remove_true_removes_a_container_that_died_when_poll_finds_it(unique: str) -> None:
    """The hub never calls stop() for a server poll() reports dead (jupyterhub/user.py,
    `User.stop`): with remove=True the poll that finds it removes it, with its anonymous
    volumes, or it would stay on the engine once the hub forgets the server (bench/soak.py
    found them)."""
    # The tiny image with a VOLUME: every container gets an anonymous volume.
    image = f"rustdocker/tiny-volume:{unique.lower()}"
    subprocess.run(
        ["docker", "build", "-q", "-t", image, "-"],
        input=f"FROM {TINY_IMAGE}\nVOLUME /home/jovyan/work\n",
        text=True,
        check=True,
        capture_output=True,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    try:
        await _killed_servers_after_poll(unique, image)
    finally:
        docker("rmi", "-f", image, check=False)


async def _killed_servers_after_poll(unique: str, image: str) -> None:
    s = make_spawner(unique, remove=True, image=image)
    keep = make_spawner(f"{unique}-keep")
    await asyncio.gather(s.start(), keep.start())
    [volume] = [m["Name"] for m in inspect("container", s.object_name)["Mounts"]]
    docker("kill", s.object_name, keep.object_name)

    async def found_dead(spawner: DockerSpawner) -> bool:
        return await spawner.poll() is not None

    await wait_for(lambda: found_dead(s), 10, "poll() sees the killed server")
    assert not exists("container", s.object_name)
    assert not exists("volume", volume)
    assert await s.poll() == 0
    # remove=False keeps it, as a stop would.
    await wait_for(lambda: found_dead(keep), 10, "poll() sees the other killed server")
    assert await keep.poll() == 137
    assert inspect("container", keep.object_name)["State"]["Status"] == "exited"
    await keep.stop()


@pytest.mark.docker
async def test_state_round_trip_after_hub_restart(unique: str) -> None:
    s = make_spawner(unique)
    await s.start()
    state = json.loads(json.dumps(s.get_state()))  # as stored in the hub's database
    # A new spawner object, as the hub builds after a restart.
    s2 = make_spawner(unique, prefix="renamed-prefix-does-not-orphan")
    s2.load_state(state)
    assert await s2.poll() is None
    assert s2.object_name == s.object_name
    await s2.stop()
    assert await s2.poll() == 0
    # Container deleted while the hub was down: reported stopped.
    docker("rm", "-f", s.object_name)
    s3 = make_spawner(unique)
    s3.load_state(state)
    assert await s3.poll() == 0


async def start_and_cancel(
    s: DockerSpawner, proxy: CountingProxy, after_requests: int
) -> tuple[bool, int]:
    """Starts `s` and cancels the start once it has sent `after_requests` Engine API requests
    through `proxy`. Returns whether the cancel landed (the start had not finished) and how
    many requests the start had sent by then."""
    before = len(proxy.requests)
    task = asyncio.ensure_future(s.start())

    def sent() -> int:
        return len(proxy.requests) - before

    await wait_for(lambda: task.done() or sent() >= after_requests, 10, "the start", interval=0.001)
    at_cancel = sent()
    task.cancel()
    cancelled_at = time.monotonic()
    try:
        await task
    except asyncio.CancelledError:
        landed = True
        # The undo may outlast the cancellation (CANCEL_GRACE), under the name's lock.
        await (await s.docker_client()).wait_idle(s.object_name)
    else:
        landed = False
    # The hub (its start_timeout) gets its answer promptly: the half-done start is undone at
    # once, not after a timeout.
    took = time.monotonic() - cancelled_at
    assert took < 10, f"a start cancelled after {at_cancel} requests returned after {took:.0f}s"
    return landed, at_cancel


@pytest.mark.docker
async def test_cancelled_start_leaves_no_container(unique: str, proxy: CountingProxy) -> None:
    s = make_spawner(unique, docker_host=proxy.url)
    name = s.object_name
    client = await s.docker_client()
    await wait_for(lambda: client.cache_synced, 5, "cache synced")
    # Cancel at every step of the start: once it has sent its k-th Engine API request, for
    # k = 0, 1, 2, ... until a start finishes first. Each time nothing may be left behind.
    mid_start = 0
    for k in range(100):
        cancelled, sent = await start_and_cancel(s, proxy, after_requests=k)
        if not cancelled:
            await s.stop()
            docker("rm", "-f", name, check=False)
            break
        mid_start += sent > 0
        assert not exists("container", name), f"container left after cancel at request {k}"
    else:
        pytest.fail("no start finished before its 100th request")
    # Cancels that found the engine already at work, not only ones before the first request.
    assert mid_start >= 2, f"{mid_start} cancels landed inside a start"
    # start_timeout, the way JupyterHub applies it.
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(s.start(), timeout=0.01)
    await (await s.docker_client()).wait_idle(name)
    assert not exists("container", name)


@pytest.mark.docker
async def test_failed_start_leaves_nothing_and_explains(unique: str) -> None:
    s = make_spawner(unique, cmd=["/no/such/binary"])
    with pytest.raises(rustdocker.DockerApiError) as info:
        await s.start()
    message = str(info.value)
    assert f"start container '{s.object_name}'" in message
    assert "/no/such/binary" in message
    # The container this start created is gone again.
    assert not exists("container", s.object_name)


@pytest.mark.docker
async def test_api_error_names_verb_object_and_daemon_message(unique: str) -> None:
    s = make_spawner(unique, image="rustdocker/does-not-exist:1", pull_policy="never")
    with pytest.raises(rustdocker.NotFoundError) as info:
        await s.start()
    assert "rustdocker/does-not-exist:1" in str(info.value)
    assert info.value.status_code == 404
    s = make_spawner(unique, extra_host_config={"NetworkMode": "no-such-network-xyz"})
    with pytest.raises(rustdocker.DockerApiError) as info2:
        await s.start()
    message = str(info2.value)
    assert "no-such-network-xyz" in message
    assert f"'{s.object_name}'" in message
    assert not exists("container", s.object_name)


@pytest.mark.docker
async def test_args_appended_to_image_cmd(unique: str) -> None:
    s = make_spawner(unique, args=["--extra"], remove=True)
    await s.start()
    info = inspect("container", s.object_name)
    image_cmd = inspect("image", s.image)["Config"]["Cmd"]
    assert info["Config"]["Cmd"] == [*image_cmd, "--extra"]
    await s.stop()


@pytest.mark.docker
async def test_get_command_from_the_image(unique: str) -> None:
    s = make_spawner(unique, args=["--extra"])
    image_cmd = inspect("image", s.image)["Config"]["Cmd"]
    assert await s.get_command() == [*image_cmd, "--extra"]
    assert await make_spawner(unique, cmd=["x"], args=["y"]).get_command() == ["x", "y"]


@pytest.mark.docker
async def test_post_start_cmd_runs_and_is_logged(
    unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    s = make_spawner(
        unique,
        post_start_cmd="sh -c 'echo made > /tmp/post; echo to-stdout; echo to-stderr >&2; exit 3'",
        remove=True,
    )
    with caplog.at_level(logging.DEBUG):
        await s.start()
    assert container_exec(s.object_name, "cat /tmp/post").strip() == "made"
    text = caplog.text
    assert f"post_start stdout in {s.object_name}" in text and "to-stdout" in text
    assert f"post_start stderr in {s.object_name}" in text and "to-stderr" in text
    assert "exited with code 3" in text
    await s.stop()

"""Attacks on ownership, from a review of the "Trust" change: each test is one way an operator's
configuration, a name collision or a race could reach another server's objects or leak a
secret, checked against the real engine (or, where the engine adds nothing, the core alone).
Each failed on the reviewed change and passes since its fix.

Everything created carries this session's hub label (make_spawner) and is removed at the end.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import uuid
from typing import Any

import pytest

from rustdocker import _core

from conftest import (
    ROOT,
    SESSION_HUB_ID,
    container_exec,
    docker,
    exists,
    make_spawner,
    remove_labelled,
)

pytestmark = pytest.mark.docker

SECRET = "hunter2-" + uuid.uuid4().hex[:8]


def _rm(*names: str) -> None:
    for name in names:
        docker("rm", "-f", name, check=False)


# ------------------------------------------------------------------ F1: settle by name


async def test_f1_cancelling_one_start_cancels_another_servers_start(unique: str) -> None:
    """F1 (fast form). The settle registry (src/docker/locks.rs OPERATIONS) is keyed by container
    name, and a second start of the same name overwrites the first's entry. Here two servers of
    one user whose names differ only in case ("Foo", "foo": `{servername}` is lower-cased, so
    both are `jupyter-<user>--foo`) start at once and the first is cancelled (start_timeout, or
    the user). Its `settle(name, False)` abandons the SECOND server's operation, which then fails
    with "cancelled" although nobody cancelled it. Expected: the first leaves nothing, and the
    second starts normally."""
    a = make_spawner(unique, "Foo", remove=True)
    b = make_spawner(unique, "foo", remove=True)
    assert a.object_name == b.object_name
    name = a.object_name
    try:
        ta = asyncio.ensure_future(a.start())
        await asyncio.sleep(0.03)  # a's operation is registered and running
        tb = asyncio.ensure_future(b.start())
        await asyncio.sleep(0.03)  # b's operation is registered (waiting for the lock)
        ta.cancel()
        with pytest.raises(asyncio.CancelledError):
            await ta
        # b was never cancelled: it must start (a's container was undone).
        await asyncio.wait_for(tb, 15)
        assert await b.poll() is None
    finally:
        _rm(name)


_F1_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, time
    sys.path[:0] = [{tests!r}, {bench!r}]
    import conftest
    conftest.SESSION_HUB_ID = {hub!r}
    from conftest import make_spawner

    async def main():
        a = make_spawner({user!r}, "x", escape="legacy")          # alice's server "x"
        b = make_spawner({user!r} + "--x", escape="legacy")       # user "alice--x"
        assert a.object_name == b.object_name, (a.object_name, b.object_name)
        t0 = time.monotonic()
        ta = asyncio.ensure_future(a.start())
        await asyncio.sleep(0.02)
        tb = asyncio.ensure_future(b.start())
        await ta
        print("A", a.object_id, round(time.monotonic() - t0, 2), flush=True)
        try:
            await tb
            print("B started", round(time.monotonic() - t0, 2), flush=True)
        except Exception as e:
            print("B refused", round(time.monotonic() - t0, 2), type(e).__name__, flush=True)

    asyncio.run(main())
    """
)


def test_f1_another_users_simultaneous_start_blocks_and_later_undoes_a_server(
    unique: str,
) -> None:
    """F1 (the damage). `escape = "legacy"` keeps '-', so user "<u>--x" (default server) and
    user "<u>" (server "x") both render `jupyter-<u>--x` (the name_template help says `--` is
    safe: only with the default escape). Started at the same moment: A starts and returns, but
    A's `settle(name, True)` lands on B's operation; A's own result is never claimed, so A's
    task keeps the container's lock for CLAIM_TIMEOUT (60 s) and then force-removes A's running
    container (its anonymous volumes too) while the hub believes it is running; B then takes
    the name. (Run by hand to the end: B "started" at 61 s, A's poll() 0, the container is
    B's.) Expected: B is refused at once (ConflictError, A's labels), A keeps running.

    Runs in a subprocess so the 60 s claim timeout does not hold this test: it fails after 40 s
    (below the 60 s at which the bug would let B through; a loaded machine needs the margin).
    """
    hub = SESSION_HUB_ID
    script = _F1_SCRIPT.format(
        tests=str(ROOT / "tests"), bench=str(ROOT / "bench"), hub=hub, user=unique
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        try:
            out, _ = proc.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        lines = out.splitlines()
        a_lines = [line for line in lines if line.startswith("A ")]
        assert a_lines, "server x's start did not return:\n" + out
        b_lines = [line for line in lines if line.startswith("B ")]
        assert b_lines, (
            "user <u>--x's start was still blocked 40 s after user <u>'s server x had started "
            f"(it completes only when x's unclaimed start is undone at 60 s): {lines}"
        )
        assert b_lines[0].startswith("B refused"), lines
    finally:
        proc.kill()
        proc.wait()
        _rm(f"jupyter-{unique}--x")


# ------------------------------------------------------------------ F2: another user's volume


async def test_f2_another_users_labelled_volume_is_mounted(unique: str) -> None:
    """F2. Volume ownership is checked for the hub only (src/docker/volumes.rs check_volume),
    not for the user the volume's labels name. An escaping collision (here an operator's
    `escape` that drops '.', so "<u>.x" and "<u>x" are both "<u>x"; likewise "legacy" with
    `{username}--{servername}`, or `{username}{servername}`) gives user B user A's per-user
    volume, with A's files, although rustdocker labelled it org.rustdocker.user=A. Containers
    of the same collision are refused (labels); volumes are not. Expected: B's start refused
    (or at least not mounting a volume labelled for another user under a per-user template)."""
    settings: dict[str, Any] = {
        "escape": lambda s: s.replace(".", ""),
        "volumes": {"review-{username}": "/home/jovyan/work"},
        "remove": True,
    }
    a = make_spawner(f"{unique}.x", **settings)
    b = make_spawner(f"{unique}x", **settings)
    volume = f"review-{unique}x"
    try:
        await a.start()
        container_exec(a.object_name, "echo private-to-A > /home/jovyan/work/notes")
        await a.stop()
        labels = json.loads(docker("volume", "inspect", volume).stdout)[0]["Labels"]
        assert labels["org.rustdocker.user"] == f"{unique}.x"
        try:
            await b.start()
        except Exception:
            return  # refused: fixed
        seen = container_exec(b.object_name, "cat /home/jovyan/work/notes 2>/dev/null || true")
        await b.stop()
        assert "private-to-A" not in seen, (
            f"user {unique}x mounted user {unique}.x's volume {volume} and read: {seen.strip()}"
        )
    finally:
        _rm(a.object_name, b.object_name)
        docker("volume", "rm", "-f", volume, check=False)


# ------------------------------------------------------------------ F3: secrets in messages


def _cifs_mount(**extra: Any) -> dict[str, Any]:
    return {
        "type": "volume",
        "source": "review-cifs-{username}",
        "target": "/home/jovyan/work",
        "driver_config": {
            "name": "local",
            "options": {
                "type": "cifs",
                "device": "//files.example.org/home",
                "o": f"username=svc-jupyter,password={SECRET}",
            },
        },
        **extra,
    }


async def test_f3a_a_mounts_typo_error_shows_the_driver_password(unique: str) -> None:
    """F3a. A `mounts` entry with an unknown key (a typo, `read_olny`) is refused with the whole
    entry in the message (spec.rs mount_to_engine), driver_config options included: the CIFS
    password reaches the hub log and the user's spawn-failed page."""
    s = make_spawner(unique, mounts=[_cifs_mount(read_olny=True)])
    with pytest.raises(Exception) as info:
        await s.start()
    assert SECRET not in str(info.value), str(info.value)


async def test_f3b_the_skipped_mount_warning_logs_the_driver_password(
    unique: str, logs: Any
) -> None:
    """F3b. A `mounts` entry whose target a `volumes` entry already mounts is skipped with a
    warning that prints the converted entry (spec.rs engine_mounts), driver options included,
    at WARNING on every start."""
    s = make_spawner(
        unique, volumes={"review-home-{username}": "/home/jovyan/work"}, mounts=[_cifs_mount()]
    )
    try:
        await s.start()
        await s.stop()
    finally:
        _rm(s.object_name)
        docker("volume", "rm", "-f", f"review-home-{unique}", check=False)
    leaked = [r.getMessage() for r in logs.records if SECRET in r.getMessage()]
    assert not leaked, leaked


async def test_f3c_an_engine_mount_error_shows_the_driver_password(unique: str) -> None:
    """F3c. The engine quotes a volume's driver options in a mount failure ("failed to mount
    local volume: mount ..., data: size=1m,password=...: invalid argument"); the error is
    raised as it is (only container output is redacted), so a wrong CIFS password or an
    unreachable file server puts the password in the hub log and on the user's page."""
    mount = {
        "type": "volume",
        "source": "review-tmp-{username}",
        "target": "/scratch",
        "driver_config": {
            "name": "local",
            "options": {"type": "tmpfs", "device": "tmpfs", "o": f"size=1m,password={SECRET}"},
        },
    }
    s = make_spawner(unique, mounts=[mount])
    try:
        with pytest.raises(Exception) as info:
            await s.start()
        assert SECRET not in str(info.value), str(info.value)
    finally:
        _rm(s.object_name)
        docker("volume", "rm", "-f", f"review-tmp-{unique}", check=False)


def test_f3d_an_environment_string_is_quoted_in_the_error() -> None:
    """F3d. `extra_create_kwargs = {"environment": "API_KEY=..."}` (a string where a dict or list
    is expected) is refused with the value itself in the message (spec.rs create_body_json),
    although the dict and list forms take care to show only names."""
    spec = {
        "name": "jupyter-review",
        "image": "img",
        "port": 8888,
        "extra_create": {"environment": f"API_KEY={SECRET}"},
    }
    with pytest.raises(ValueError) as info:
        _core.build_create_body(json.dumps(spec))
    assert SECRET not in str(info.value), str(info.value)


async def test_f3e_post_start_output_is_logged_unredacted(unique: str, logs: Any) -> None:
    """F3e. post_start_cmd's stdout (DEBUG) and stderr (WARNING) go to the hub log as they are;
    the redaction applied to a failed start's output (`spec.redact`) is not applied here."""
    s = make_spawner(
        unique, post_start_cmd="sh -c 'echo token=$JUPYTERHUB_API_TOKEN >&2'", remove=True
    )
    try:
        await s.start()
        token = s.api_token
        await s.stop()
    finally:
        _rm(s.object_name)
    leaked = [r.getMessage() for r in logs.records if token and token in r.getMessage()]
    assert not leaked, leaked


# ------------------------------------------------------------------ F4: unchecked bind sources


async def test_f4_extra_host_config_binds_escape_the_path_checks(unique: str) -> None:
    """F4. The path checks (absolute, normalised, no '..') cover `volumes`, `mounts` and the
    system user's home, but not binds/mounts given through `extra_host_config` (or
    `extra_create_kwargs["host_config"]`), which are templated too: with `{raw_username}` a
    user named '..' gets the parent directory mounted."""
    s = make_spawner(
        unique, extra_host_config={"binds": {"/srv/homes/{raw_username}": "/home/jovyan/work"}}
    )
    s.user.name = ".."
    s.name_template = f"jupyter-{unique}"
    spec = await s.build_spec()
    try:
        body = json.loads(_core.build_create_body(json.dumps(spec)))
    except ValueError:
        return  # refused: fixed
    assert "/srv/homes/..:/home/jovyan/work:rw" not in body["HostConfig"].get("Binds", []), body[
        "HostConfig"
    ]["Binds"]
    assert not exists("container", f"jupyter-{unique}")


def teardown_module() -> None:
    remove_labelled(SESSION_HUB_ID)


# ------------------------------------------------------------------ F5: the default hub_id


def test_f5a_the_default_hub_id_changes_with_the_hostname(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """F5a. The default `hub_id` hashes `socket.gethostname()`. A hub run in a container (the
    usual Docker deployment) gets a new hostname, the new container's id, every time the
    container is recreated (an upgrade, `docker compose up` after a config change), unless
    `hostname:` is set."""
    import socket

    from conftest import hubless

    ids = []
    for host in ("3f2a9c1d0b7e", "9b8c7d6e5f4a"):  # two incarnations of one hub container
        monkeypatch.setattr(socket, "gethostname", lambda host=host: host)
        s = hubless.make_spawner(__import__("rustdocker").DockerSpawner, "alice", {}, "")
        ids.append(s.hub_id)
    assert ids[0] == ids[1], f"one hub, recreated: hub_id {ids[0]} then {ids[1]}"


async def test_f5b_after_a_hub_id_change_running_servers_are_lost(unique: str) -> None:
    """F5b. What F5a does to a running deployment: the recreated hub (another hub_id) loads the
    server's state, poll() answers 0 for the still-running container (not owned), so the hub
    forgets the server and leaves the container running; the user's next start is refused
    (ConflictError "belongs to another hub") until an administrator removes the container."""
    before = make_spawner(unique)
    await before.start()
    state = before.get_state()
    try:
        after = make_spawner(unique, hub_id=f"{SESSION_HUB_ID}-recreated")
        after.load_state(state)
        status = await after.poll()
        assert status is None, "the recreated hub reports the running server stopped"
    finally:
        await before.stop()
        _rm(before.object_name)

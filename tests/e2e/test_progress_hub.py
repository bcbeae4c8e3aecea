"""What a user sees while a large image is pulled, through a real JupyterHub: the REST progress
stream (`GET /hub/api/users/<name>/server/progress`) and the spawn page in headless Chromium,
with the image (the single-user image plus a few hundred MB of random layers) in Debian's
docker-registry on 127.0.0.1, so the engine has to pull it.

The spawn page's screenshot with the bar part-way is kept as tests/artifacts/progress/.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from registry import Registry, Throttle  # bench/, on the path through tests/conftest.py

from .browser import Steps, log_in, wait_for_lab
from .hub import (
    ARTIFACTS,
    IMAGE,
    LABEL_HUB,
    Hub,
    docker,
    hub_of_its_own,
    missing_prerequisites,
    require,
    wait_until,
)

BIG_MIB = 320
BIG_LAYERS = 4
PULL_RATE = 8e6  # per connection; the engine fetches 3 layers at a time
HUB_ID = f"rustdocker-e2e-progress-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def big_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The single-user image with BIG_MIB MiB more in BIG_LAYERS layers, only in the registry."""
    require(missing_prerequisites())
    if shutil.which("docker-registry") is None:
        require(["Debian's docker-registry (apt-get install docker-registry)"])
    registry = Registry(tmp_path_factory.mktemp("progress-registry"))
    registry.start()
    throttle = None
    image = ""
    try:
        pushed = registry.push_big(
            f"rustdocker-e2e/big-{uuid.uuid4().hex[:8]}",
            IMAGE,
            BIG_MIB,
            BIG_LAYERS,
            {LABEL_HUB: HUB_ID},
        )
        # Pulled through a relay sending PULL_RATE bytes/s: long enough to watch the bar move.
        throttle = Throttle(registry.port, PULL_RATE)
        image = pushed.replace(registry.host, throttle.host, 1)
        yield image
    finally:
        if image:
            docker("rmi", "-f", image, check=False)
        if throttle is not None:
            throttle.close()
        registry.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, big_image: str) -> Iterator[Hub]:
    """This module's hub runs the big image (it overrides the session's `hub`, so `user` and
    `browser` use this one)."""
    # A pull of a few hundred MB takes longer than the examples' start_timeout allows.
    config = (
        f"c.DockerSpawner.image = {big_image!r}\n"
        "c.Spawner.start_timeout = 600\nc.Spawner.http_timeout = 120\n"
    )
    with hub_of_its_own(tmp_path_factory, "progress", config, hub_id=HUB_ID) as h:
        yield h


def progress_events(hub: Hub, user: str) -> list[dict[str, Any]]:
    """The progress stream of `user`'s pending start, read to its end: opened as soon as the
    hub says the start is pending (the start's POST answers only after `slow_spawn_timeout`)."""
    wait_until(
        lambda: hub.servers(user).get("", {}).get("pending") == "spawn", 60, "a pending spawn"
    )
    events = []
    with hub.api("GET", f"/users/{user}/server/progress", stream=True, timeout=600) as r:
        assert r.status_code == 200, r.text
        for line in r.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                events.append(json.loads(line[len("data:") :]))
    return events


def test_rest_progress_stream_of_a_pull(hub: Hub, user: str, big_image: str) -> None:
    docker("rmi", "-f", big_image, check=False)  # pulled anew
    with ThreadPoolExecutor(1) as pool:
        started = pool.submit(hub.request_start, user)
        events = progress_events(hub, user)
        started.result()
    progress = [e["progress"] for e in events if "progress" in e]
    assert progress == sorted(progress), events
    pulling = [e for e in events if e.get("message", "").startswith(f"Pulling image {big_image}:")]
    assert pulling, events
    # The bytes are counted: "Pulling image ...: 120 of 336 MB, 40.1 MB/s, about 7 s left".
    assert any(" of 33" in e["message"] and " MB" in e["message"] for e in pulling), pulling
    assert len({e["progress"] for e in pulling}) >= 3, pulling  # the bar moved with the bytes
    last = events[-1]
    assert last["progress"] == 100 and last.get("ready") is True, last
    assert last["url"] == f"/user/{user}/", last
    hub.wait_ready(user)
    hub.stop_server(user)


@pytest.mark.browser
def test_spawn_page_shows_the_pull(hub: Hub, user: str, big_image: str, steps: Steps) -> None:
    docker("rmi", "-f", big_image, check=False)
    page = steps.page
    log_in(steps, hub, user)
    page.goto(f"{hub.url}/hub/spawn")

    # Part-way through the pull: the bar between the pull's ends, the message counting bytes.
    page.wait_for_function(
        """() => {
            const bar = document.querySelector('#progress-bar');
            const msg = document.querySelector('#progress-message');
            const at = bar ? Number(bar.getAttribute('aria-valuenow')) : 0;
            return msg && /^(Pulling|Extracting) image/.test(msg.textContent) &&
                   msg.textContent.includes(' of ') && at > 15 && at < 75;
        }""",
        timeout=300_000,
        polling=100,
    )
    keep = ARTIFACTS / "progress"
    keep.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(keep / "spawn-pending-pull.png"))
    message = page.locator("#progress-message").text_content() or ""
    (keep / "spawn-pending-pull.txt").write_text(message + "\n")
    assert "MB" in message, message
    wait_for_lab(page, user)


def test_pre_pull_when_the_hub_starts(
    tmp_path_factory: pytest.TempPathFactory, big_image: str
) -> None:
    """`pre_pull = True`: the hub, once started, pulls the images users may choose."""
    docker("rmi", "-f", big_image, check=False)
    config = (
        "c.DockerSpawner.pre_pull = True\n"
        f"c.DockerSpawner.allowed_images = {{'base': {IMAGE!r}, 'big': {big_image!r}}}\n"
    )
    with hub_of_its_own(tmp_path_factory, "pre-pull", config, hub_id=f"{HUB_ID}-pre") as h:
        wait_until(
            lambda: f"pre-pull 2/2: image '{big_image}': ready" in h.log_tail(400),
            300,
            "the pre-pull to finish",
        )
        assert docker("image", "inspect", big_image, check=False).returncode == 0
        log = h.log_tail(400)
        assert f"pre-pull 1/2: image '{IMAGE}': already on the engine" in log
        assert f"pre-pull 2/2: image '{big_image}': pulling" in log

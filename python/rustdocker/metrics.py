"""rustdocker's metrics, served by JupyterHub at `/hub/metrics` beside its own.

JupyterHub exposes prometheus_client's default registry; importing this module (the spawner
does) registers one collector there, once per process. At each scrape it reads one snapshot
of the core's counters (`_core.metrics_snapshot`): every Docker Engine API call is counted and
timed in Rust, where it is made, so nothing here is on a spawn's path.

| metric | type | labels |
| --- | --- | --- |
| `rustdocker_docker_api_calls_total` | counter | `verb` |
| `rustdocker_docker_api_errors_total` | counter | `verb`, `kind` |
| `rustdocker_docker_api_call_duration_seconds` | histogram | `verb` |
| `rustdocker_spawn_phase_duration_seconds` | histogram | `phase` |
| `rustdocker_image_pull_duration_seconds` | histogram | `outcome` |
| `rustdocker_image_pull_bytes_total` | counter | |
| `rustdocker_events_received_total` | counter | |
| `rustdocker_events_resyncs_total` | counter | |
| `rustdocker_events_disconnects_total` | counter | |
| `rustdocker_events_renewals_total` | counter | |
| `rustdocker_events_lag_seconds` | histogram | |
| `rustdocker_events_cache_synced` | gauge | |
| `rustdocker_engine_connections` | gauge | |
| `rustdocker_servers` | gauge | `state` |

Every label value comes from a closed set (the core's `Verb`, `ErrorKind` and `Phase`,
Docker's container states): no user, server, container or image name is ever a label.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import REGISTRY, Collector
from prometheus_client.utils import floatToGoString

from . import _core

_hub_ids: set[str] = set()
_lock = threading.Lock()
_registered = False


def follow_hub(hub_id: str) -> None:
    """Counts the containers of the hub `hub_id` in `rustdocker_servers` (the engine may hold
    other hubs' too)."""
    if hub_id and hub_id not in _hub_ids:
        with _lock:
            _hub_ids.add(hub_id)


def _histogram(family: HistogramMetricFamily, labels: list[str], data: dict[str, Any]) -> None:
    buckets = [
        ("+Inf" if le is None else floatToGoString(le), count) for le, count in data["buckets"]
    ]
    family.add_metric(labels, buckets, data["sum"])


class CoreCollector(Collector):
    """Reads the core's metrics at each scrape."""

    def describe(self) -> Iterator[Metric]:
        # The names, for the registry's duplicate check, without reading the core.
        yield from self._families(None)

    def collect(self) -> Iterator[Metric]:
        with _lock:
            hubs = sorted(_hub_ids)
        yield from self._families(json.loads(_core.metrics_snapshot(hubs)))

    @staticmethod
    def _families(snap: dict[str, Any] | None) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            "rustdocker_docker_api_calls",
            "Docker Engine API calls made by rustdocker, by verb (a streamed call counts once, "
            "when it ends).",
            labels=["verb"],
        )
        errors = CounterMetricFamily(
            "rustdocker_docker_api_errors",
            "Docker Engine API calls that failed, by verb and kind (not_found, conflict, "
            "client, server, timeout, connection, registry, cancelled, other).",
            labels=["verb", "kind"],
        )
        latency = HistogramMetricFamily(
            "rustdocker_docker_api_call_duration_seconds",
            "Time from sending a Docker Engine API call to its answer (for a stream, its end).",
            labels=["verb"],
        )
        phases = HistogramMetricFamily(
            "rustdocker_spawn_phase_duration_seconds",
            "Time of each phase of a spawn (pull, volumes, create, start), observed when the "
            "phase completes.",
            labels=["phase"],
        )
        pulls = HistogramMetricFamily(
            "rustdocker_image_pull_duration_seconds",
            "Time of each image pull, by outcome (success, failure).",
            labels=["outcome"],
        )
        pull_bytes = CounterMetricFamily(
            "rustdocker_image_pull_bytes",
            "Bytes of image layers downloaded by pulls (as the engine reports their progress).",
        )
        events = {
            key: CounterMetricFamily(f"rustdocker_events_{key}", doc)
            for key, doc in (
                ("received", "Container events applied by the state cache."),
                ("resyncs", "Full listings by the state cache (its first sync and each resync)."),
                ("disconnects", "Breaks of the engine's events stream."),
                ("renewals", "Silent events streams renewed (a possible half-open connection)."),
            )
        }
        lag = HistogramMetricFamily(
            "rustdocker_events_lag_seconds",
            "Time from a container event at the engine to its application in the state cache "
            "(live events; replayed history is not observed).",
        )
        synced = GaugeMetricFamily(
            "rustdocker_events_cache_synced",
            "Engine connections whose state cache mirrors the engine now (polls are lookups).",
        )
        engines = GaugeMetricFamily(
            "rustdocker_engine_connections", "Docker engine connections of this hub process."
        )
        servers = GaugeMetricFamily(
            "rustdocker_servers",
            "This hub's containers in the state cache, by Docker state (created, running, "
            "paused, restarting, removing, exited, dead, other).",
            labels=["state"],
        )
        if snap is not None:
            for api in snap["api"]:
                verb = api["verb"]
                calls.add_metric([verb], api["calls"])
                for kind, count in api["errors"].items():
                    if count:
                        errors.add_metric([verb, kind], count)
                if api["calls"]:
                    _histogram(latency, [verb], api["duration"])
            for phase in snap["phases"]:
                _histogram(phases, [phase["phase"]], phase["duration"])
            for pull in snap["pulls"]:
                _histogram(pulls, [pull["outcome"]], pull["duration"])
            pull_bytes.add_metric([], snap["pull_bytes"])
            for key, family in events.items():
                family.add_metric([], snap["events"][key])
            _histogram(lag, [], snap["events"]["lag"])
            synced.add_metric([], snap["events"]["synced"])
            engines.add_metric([], snap["events"]["engines"])
            for state, count in snap["servers"].items():
                servers.add_metric([state], count)
        yield from (calls, errors, latency, phases, pulls, pull_bytes, *events.values())
        yield from (lag, synced, engines, servers)


def register() -> None:
    """Registers the collector in prometheus_client's default registry, once per process."""
    global _registered
    with _lock:
        if _registered:
            return
        _registered = True
    REGISTRY.register(CoreCollector())


register()

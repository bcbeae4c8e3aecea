//! Process-wide metrics of the core: every Docker Engine API call by verb (count, latency,
//! errors by kind), spawn time by phase, image pulls, and the events cache. Cheap atomic
//! counters and fixed histogram buckets, written on the hot path without a lock; the Python
//! layer reads one snapshot (`snapshot_json`) per Prometheus scrape and exposes it in
//! JupyterHub's registry at `/hub/metrics`.
//!
//! Every label value comes from a closed set defined here (`Verb`, `ErrorKind`, `Phase`,
//! Docker's container states): no user, server, container or image name ever becomes a label.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::docker::cache::StateCache;

/// Buckets (seconds) of one Engine API call's latency.
const API_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Buckets (seconds) of one spawn phase.
const PHASE_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
/// Buckets (seconds) of one image pull.
const PULL_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];
/// Buckets (seconds) of the lag between an event's time at the engine and its application.
const LAG_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0];

/// A histogram with fixed buckets: per-bucket counts (not cumulative), the sum in nanoseconds
/// and the count.
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            // One more for +Inf.
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = self
            .bounds
            .iter()
            .position(|le| seconds <= *le)
            .unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get(bucket) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// `{"buckets": [[le, cumulative count], ...], "sum": seconds, "count": n}`; the last
    /// bucket is +Inf (`null`), and equals the count.
    fn snapshot(&self) -> Value {
        let mut cumulative = 0_u64;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let le = self.bounds.get(i).map_or(Value::Null, |b| json!(b));
            buckets.push(json!([le, cumulative]));
        }
        #[allow(clippy::cast_precision_loss)]
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        // The count is the +Inf bucket, read once, so a scrape during an observation stays
        // consistent (buckets never exceed the count).
        json!({"buckets": buckets, "sum": sum, "count": cumulative})
    }
}

macro_rules! labels {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $label:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in the order of the snapshot.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The label value.
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)+
                }
            }

            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

labels! {
    /// The Engine API calls rustdocker makes (the `verb` label).
    Verb {
        /// `GET /version` (the API version negotiated at connect).
        Version => "version",
        /// `GET /info` (the engine's clock, before each events-cache listing).
        Info => "info",
        /// `GET /containers/json`.
        ListContainers => "list_containers",
        /// `GET /containers/{id}/json`.
        InspectContainer => "inspect_container",
        /// `POST /containers/create`.
        CreateContainer => "create_container",
        /// `POST /containers/{id}/start`.
        StartContainer => "start_container",
        /// `POST /containers/{id}/stop`.
        StopContainer => "stop_container",
        /// `DELETE /containers/{id}`.
        RemoveContainer => "remove_container",
        /// `GET /containers/{id}/logs` (read to the end).
        ContainerLogs => "container_logs",
        /// `PUT /containers/{id}/archive`.
        UploadToContainer => "upload_to_container",
        /// `POST /networks/{id}/connect`.
        ConnectNetwork => "connect_network",
        /// `GET /images/{name}/json`.
        InspectImage => "inspect_image",
        /// `POST /images/create` (read to the end of the pull).
        PullImage => "pull_image",
        /// `POST /volumes/create`.
        CreateVolume => "create_volume",
        /// `POST /containers/{id}/exec`.
        CreateExec => "create_exec",
        /// `POST /exec/{id}/start` (read to the end of the output).
        StartExec => "start_exec",
        /// `GET /exec/{id}/json`.
        InspectExec => "inspect_exec",
        /// `POST /services/create`.
        CreateService => "create_service",
        /// `GET /services/{id}`.
        InspectService => "inspect_service",
        /// `DELETE /services/{id}`.
        RemoveService => "remove_service",
        /// `GET /tasks`.
        ListTasks => "list_tasks",
        /// `GET /tasks/{id}`.
        InspectTask => "inspect_task",
        /// `GET /nodes/{id}`.
        InspectNode => "inspect_node",
        /// `GET /nodes`.
        ListNodes => "list_nodes",
        /// `GET /volumes/{name}`.
        InspectVolume => "inspect_volume",
    }
}

labels! {
    /// Why an Engine API call failed (the `kind` label).
    ErrorKind {
        /// 404: no such container, image, volume, network or service.
        NotFound => "not_found",
        /// 409: a name in use, a removal in progress.
        Conflict => "conflict",
        /// Another 4xx: the engine refused the request.
        Client => "client",
        /// 5xx: the engine failed.
        Server => "server",
        /// No answer within `docker_timeout`, or a pull that stalled (`pull_stall_timeout`).
        Timeout => "timeout",
        /// The engine could not be reached (socket missing, refused, TLS, connection lost).
        Connection => "connection",
        /// The engine reported a failed pull inside its stream (the registry refused it or lost
        /// a layer).
        Registry => "registry",
        /// The caller went away before the answer (a cancelled spawn).
        Cancelled => "cancelled",
        /// Anything else (an answer that could not be read).
        Other => "other",
    }
}

labels! {
    /// The phases of a spawn (the `phase` label), each observed when it completes.
    Phase {
        /// Pulling the image (`pull_policy`), when a pull happens.
        Pull => "pull",
        /// Creating (or finding) the named volumes.
        Volumes => "volumes",
        /// Creating (or finding) the container or service, and connecting its networks.
        Create => "create",
        /// Starting it until the engine shows it running, with its address.
        Start => "start",
    }
}

/// The outcome of a pull (the `outcome` label).
const PULL_OUTCOMES: [&str; 2] = ["success", "failure"];

struct Api {
    calls: AtomicU64,
    errors: Vec<AtomicU64>,
    duration: Histogram,
}

struct Registry {
    api: Vec<Api>,
    phases: Vec<Histogram>,
    pull_duration: [Histogram; 2],
    pull_bytes: AtomicU64,
    events: AtomicU64,
    resyncs: AtomicU64,
    disconnects: AtomicU64,
    renewals: AtomicU64,
    lag: Histogram,
    caches: Mutex<Vec<Weak<StateCache>>>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry {
    api: Verb::ALL
        .iter()
        .map(|_| Api {
            calls: AtomicU64::new(0),
            errors: ErrorKind::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            duration: Histogram::new(API_BUCKETS),
        })
        .collect(),
    phases: Phase::ALL
        .iter()
        .map(|_| Histogram::new(PHASE_BUCKETS))
        .collect(),
    pull_duration: [Histogram::new(PULL_BUCKETS), Histogram::new(PULL_BUCKETS)],
    pull_bytes: AtomicU64::new(0),
    events: AtomicU64::new(0),
    resyncs: AtomicU64::new(0),
    disconnects: AtomicU64::new(0),
    renewals: AtomicU64::new(0),
    lag: Histogram::new(LAG_BUCKETS),
    caches: Mutex::new(Vec::new()),
});

/// Records one finished API call of `verb` that took `elapsed`, failed with `error` if any.
pub fn record_call(verb: Verb, elapsed: Duration, error: Option<ErrorKind>) {
    let Some(api) = REGISTRY.api.get(verb.index()) else {
        return;
    };
    api.calls.fetch_add(1, Ordering::Relaxed);
    api.duration.observe(elapsed);
    if let Some(c) = error.and_then(|kind| api.errors.get(kind.index())) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts a call when dropped before `finish`: the caller went away mid-call.
struct CallGuard {
    verb: Verb,
    started: Instant,
    done: bool,
}

impl CallGuard {
    fn finish(mut self, error: Option<ErrorKind>) {
        self.done = true;
        record_call(self.verb, self.started.elapsed(), error);
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if !self.done {
            record_call(
                self.verb,
                self.started.elapsed(),
                Some(ErrorKind::Cancelled),
            );
        }
    }
}

/// `call`, counted and timed as one Engine API call of `verb`; a drop before its answer counts
/// as `cancelled`.
pub async fn timed<T>(
    verb: Verb,
    call: impl Future<Output = Result<T, bollard::errors::Error>>,
) -> Result<T, bollard::errors::Error> {
    let guard = CallGuard {
        verb,
        started: Instant::now(),
        done: false,
    };
    let result = call.await;
    guard.finish(result.as_ref().err().and_then(error_kind));
    result
}

/// A streamed call of `verb` (logs, a pull, exec output), timed from `start()` to `finish`.
pub struct StreamCall(CallGuard);

impl StreamCall {
    /// Starts timing a call of `verb`.
    #[must_use]
    pub fn start(verb: Verb) -> Self {
        StreamCall(CallGuard {
            verb,
            started: Instant::now(),
            done: false,
        })
    }

    /// Records the call as finished, failed with `error` if any.
    pub fn finish(self, error: Option<ErrorKind>) {
        self.0.finish(error);
    }

    /// How long since `start`.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.0.started.elapsed()
    }
}

/// The kind of a bollard error; None for a 304 (already started or stopped: what was asked).
#[must_use]
pub fn error_kind(err: &bollard::errors::Error) -> Option<ErrorKind> {
    use bollard::errors::Error as E;
    Some(match err {
        E::DockerResponseServerError { status_code, .. } => match status_code {
            304 => return None,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            400..=499 => ErrorKind::Client,
            500..=599 => ErrorKind::Server,
            _ => ErrorKind::Other,
        },
        E::RequestTimeoutError => ErrorKind::Timeout,
        E::IOError { .. }
        | E::HyperLegacyError { .. }
        | E::HttpClientError { .. }
        | E::HyperResponseError { .. }
        | E::SocketNotFoundError(_)
        | E::UnsupportedURISchemeError { .. }
        | E::CertPathError { .. }
        | E::CertParseError { .. }
        | E::CertMultipleKeys { .. }
        | E::NoNativeCertsError { .. }
        | E::LoadNativeCertsErrors { .. } => ErrorKind::Connection,
        _ => ErrorKind::Other,
    })
}

/// Records a completed spawn phase.
pub fn observe_phase(phase: Phase, elapsed: Duration) {
    if let Some(h) = REGISTRY.phases.get(phase.index()) {
        h.observe(elapsed);
    }
}

/// Records a finished pull.
pub fn observe_pull(elapsed: Duration, success: bool) {
    REGISTRY.pull_duration[usize::from(!success)].observe(elapsed);
}

/// Counts `bytes` more downloaded by pulls.
pub fn add_pull_bytes(bytes: u64) {
    REGISTRY.pull_bytes.fetch_add(bytes, Ordering::Relaxed);
}

/// What the events cache did, for the process-wide counters.
#[derive(Debug, Clone, Copy)]
pub enum CacheEvent {
    /// An event applied, `lag` after the engine's time of it (None: replayed history).
    Applied(Option<Duration>),
    /// A full listing.
    Resync,
    /// The stream broke.
    Disconnect,
    /// A silent stream renewed.
    Renewal,
}

/// Counts what an events cache did.
pub fn cache_event(event: CacheEvent) {
    let r = &*REGISTRY;
    match event {
        CacheEvent::Applied(lag) => {
            r.events.fetch_add(1, Ordering::Relaxed);
            if let Some(lag) = lag {
                r.lag.observe(lag);
            }
        }
        CacheEvent::Resync => {
            r.resyncs.fetch_add(1, Ordering::Relaxed);
        }
        CacheEvent::Disconnect => {
            r.disconnects.fetch_add(1, Ordering::Relaxed);
        }
        CacheEvent::Renewal => {
            r.renewals.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Follows `cache` in the snapshot's gauges (servers by state, synced) while it lives.
pub fn register_cache(cache: &std::sync::Arc<StateCache>) {
    let mut caches = REGISTRY
        .caches
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    caches.retain(|c| c.strong_count() > 0);
    caches.push(std::sync::Arc::downgrade(cache));
}

/// Docker's container states; anything else counts as `other`.
const STATES: &[&str] = &[
    "created",
    "running",
    "paused",
    "restarting",
    "removing",
    "exited",
    "dead",
    "other",
];

/// Everything, as JSON for the Python collector. Servers are counted for the hubs `hub_ids`
/// only (the cache follows every rustdocker container on the engine, other hubs' too).
#[must_use]
pub fn snapshot_json(hub_ids: &[String]) -> String {
    let r = &*REGISTRY;
    let api: Vec<Value> = Verb::ALL
        .iter()
        .zip(&r.api)
        .map(|(verb, api)| {
            let errors: Map<String, Value> = ErrorKind::ALL
                .iter()
                .zip(&api.errors)
                .map(|(kind, c)| (kind.as_str().to_owned(), json!(c.load(Ordering::Relaxed))))
                .collect();
            json!({
                "verb": verb.as_str(),
                "calls": api.calls.load(Ordering::Relaxed),
                "errors": errors,
                "duration": api.duration.snapshot(),
            })
        })
        .collect();
    let phases: Vec<Value> = Phase::ALL
        .iter()
        .zip(&r.phases)
        .map(|(phase, h)| json!({"phase": phase.as_str(), "duration": h.snapshot()}))
        .collect();
    let pulls: Vec<Value> = PULL_OUTCOMES
        .iter()
        .zip(&r.pull_duration)
        .map(|(outcome, h)| json!({"outcome": outcome, "duration": h.snapshot()}))
        .collect();
    let mut servers: Map<String, Value> =
        STATES.iter().map(|s| ((*s).to_owned(), json!(0))).collect();
    let (mut engines, mut synced) = (0_u64, 0_u64);
    let caches: Vec<_> = r
        .caches
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    for cache in caches {
        engines += 1;
        synced += u64::from(cache.is_synced());
        for state in cache.states_of(hub_ids) {
            let key = if STATES.contains(&state.as_str()) {
                state
            } else {
                "other".to_owned()
            };
            if let Some(Value::Number(n)) = servers.get(&key) {
                let next = n.as_u64().unwrap_or(0) + 1;
                servers.insert(key, json!(next));
            }
        }
    }
    json!({
        "api": api,
        "phases": phases,
        "pulls": pulls,
        "pull_bytes": r.pull_bytes.load(Ordering::Relaxed),
        "events": {
            "received": r.events.load(Ordering::Relaxed),
            "resyncs": r.resyncs.load(Ordering::Relaxed),
            "disconnects": r.disconnects.load(Ordering::Relaxed),
            "renewals": r.renewals.load(Ordering::Relaxed),
            "lag": r.lag.snapshot(),
            "engines": engines,
            "synced": synced,
        },
        "servers": servers,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_an_inf_bucket() {
        let h = Histogram::new(&[0.1, 1.0]);
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_millis(100));
        h.observe(Duration::from_millis(500));
        h.observe(Duration::from_secs(5));
        let s = h.snapshot();
        assert_eq!(s["buckets"], json!([[0.1, 2], [1.0, 3], [null, 4]]));
        assert_eq!(s["count"], json!(4));
        assert!((s["sum"].as_f64().unwrap() - 5.65).abs() < 1e-9);
    }

    #[test]
    fn error_kinds() {
        use bollard::errors::Error as E;
        let status = |status_code| E::DockerResponseServerError {
            status_code,
            message: String::new(),
        };
        assert_eq!(error_kind(&status(304)), None);
        assert_eq!(error_kind(&status(404)), Some(ErrorKind::NotFound));
        assert_eq!(error_kind(&status(409)), Some(ErrorKind::Conflict));
        assert_eq!(error_kind(&status(400)), Some(ErrorKind::Client));
        assert_eq!(error_kind(&status(500)), Some(ErrorKind::Server));
        assert_eq!(
            error_kind(&E::RequestTimeoutError),
            Some(ErrorKind::Timeout)
        );
        assert_eq!(
            error_kind(&E::SocketNotFoundError("/x".to_owned())),
            Some(ErrorKind::Connection)
        );
    }

    #[test]
    fn label_values_are_unique_snake_case() {
        let all: Vec<&str> = Verb::ALL
            .iter()
            .map(|v| v.as_str())
            .chain(ErrorKind::ALL.iter().map(|k| k.as_str()))
            .chain(Phase::ALL.iter().map(|p| p.as_str()))
            .collect();
        for label in &all {
            assert!(
                label.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{label}"
            );
        }
        let verbs: std::collections::HashSet<_> = Verb::ALL.iter().map(|v| v.as_str()).collect();
        assert_eq!(verbs.len(), Verb::ALL.len());
        assert_eq!(
            Verb::ALL.last().map(|v| v.index()),
            Some(Verb::ALL.len() - 1)
        );
    }

    #[test]
    fn a_dropped_call_counts_as_cancelled() {
        let before = REGISTRY.api[Verb::ListTasks.index()].errors[ErrorKind::Cancelled.index()]
            .load(Ordering::Relaxed);
        drop(StreamCall::start(Verb::ListTasks));
        let after = REGISTRY.api[Verb::ListTasks.index()].errors[ErrorKind::Cancelled.index()]
            .load(Ordering::Relaxed);
        assert_eq!(after, before + 1);
    }
}

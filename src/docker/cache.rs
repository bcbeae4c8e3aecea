//! One events-driven state cache per engine connection, shared by every spawner of the hub
//! process (the idea of KubeSpawner's reflector).
//!
//! A watcher task lists the containers carrying rustdocker's `managed-by` label, then follows the
//! engine's `/events` stream filtered to that label. On any disconnect it marks the cache
//! unsynced, reconnects with backoff and resyncs by listing again. While synced, `poll()` is a map
//! lookup with no API call; while not, callers fall back to an inspect, so a failing watcher can
//! slow polls down but never makes a running server look dead.
//!
//! Ordering: the subscription replays events from a little before the listing, and events are
//! applied in order after it, so every container ends in its true state. Updates made by rustdocker
//! itself (after a start) carry the engine's own timestamp, and older events are ignored for
//! that entry, so a late `die` from an earlier stop cannot mark a fresh start as dead.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::{ContainerInspectResponse, ContainerSummaryStateEnum, EventMessage};
use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use futures_util::{FutureExt, StreamExt};

use super::containers::{ContainerStatus, Endpoints, Owner};
use super::{Engine, MANAGED_LABEL, MANAGED_VALUE};
use crate::errors::{CoreError, CoreResult};
use crate::log;
use crate::metrics::{self, CacheEvent, Verb};

/// An inspect's `StartedAt` and the `start` event of the same start differ by less than this.
const SAME_START_NANOS: i64 = 100_000_000;

/// How many destroyed container ids are remembered (a few hundred bytes each).
const MAX_TOMBSTONES: usize = 10_000;

/// A silent events stream is renewed (a fresh listing, a fresh stream) after this long: on a
/// half-open TCP connection to a remote engine nothing ever arrives, and nothing says so.
pub const SILENCE_RENEW: Duration = Duration::from_secs(25);

/// Seconds of event history replayed on (re)subscription, to cover the gap before the listing.
const REPLAY_SECONDS: u64 = 5;

/// How long a lookup waits for a new connection's first sync before it inspects instead. A hub
/// that restarts polls every server and asks every URL at once, right after connecting: one
/// listing (a few hundred ms for hundreds of containers) answers them all, where inspecting
/// would cost two calls per server. Bounded, so an engine that lists slowly only delays them.
pub const FIRST_SYNC_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Entry {
    /// Container name, without the leading `/`.
    name: String,
    /// What a lookup answers.
    state: ContainerStatus,
    /// Engine time (ns since the epoch) of the newest information in this entry.
    as_of: i64,
    /// Whether the container has a restart policy (None: not known yet).
    restarts: Option<bool>,
    /// False after a `die` that a restart may follow: lookups miss (and inspect) meanwhile.
    confirmed: bool,
}

impl Entry {
    /// An entry for container `id` named `name`.
    fn new(
        id: String,
        name: String,
        state: (bool, i64, &str),
        owner: Option<Owner>,
        as_of: i64,
    ) -> Self {
        let (running, exit_code, status) = state;
        Entry {
            name,
            state: ContainerStatus {
                id,
                running,
                exit_code,
                status: status.to_owned(),
                owner,
                // Events do not carry addresses (a restart may publish another port): only a
                // listing or an inspect gives them.
                endpoints: None,
            },
            as_of,
            restarts: None,
            confirmed: true,
        }
    }

    fn id(&self) -> &str {
        &self.state.id
    }
}

#[derive(Default)]
struct Maps {
    by_id: HashMap<String, Entry>,
    name_to_id: HashMap<String, String>,
    /// Ids of containers the engine destroyed: an inspect that started before the destruction
    /// and answers after it must not bring them back. Ids are never reused.
    destroyed: HashSet<String>,
}

impl Maps {
    fn get(&self, key: &str) -> Option<&Entry> {
        self.by_id.get(key).or_else(|| {
            self.name_to_id
                .get(key.trim_start_matches('/'))
                .and_then(|id| self.by_id.get(id))
        })
    }

    fn insert(&mut self, entry: Entry) {
        if let Some(old) = self.by_id.get(entry.id()) {
            if old.name != entry.name {
                self.name_to_id.remove(&old.name);
            }
        }
        self.name_to_id
            .insert(entry.name.clone(), entry.id().to_owned());
        self.by_id.insert(entry.id().to_owned(), entry);
    }

    fn remove(&mut self, key: &str) {
        let id = if self.by_id.contains_key(key) {
            Some(key.to_owned())
        } else {
            self.name_to_id.get(key.trim_start_matches('/')).cloned()
        };
        if let Some(id) = id {
            if let Some(old) = self.by_id.remove(&id) {
                if self.name_to_id.get(&old.name) == Some(&id) {
                    self.name_to_id.remove(&old.name);
                }
            }
        }
    }
}

/// Counters that show what the cache did; exposed to Python for tests and benchmarks.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Events applied.
    pub events: AtomicU64,
    /// Full listings (first sync and every resync).
    pub resyncs: AtomicU64,
    /// Disconnects of the events stream.
    pub disconnects: AtomicU64,
    /// Renewals of a silent events stream (`SILENCE_RENEW`).
    pub renewals: AtomicU64,
}

/// The shared state cache.
#[derive(Default)]
pub struct StateCache {
    maps: RwLock<Maps>,
    synced: AtomicBool,
    started: AtomicBool,
    /// Set once the watcher's first attempt ended (synced, or the listing failed).
    first_attempt_done: AtomicBool,
    first_attempt: tokio::sync::Notify,
    /// Counters.
    pub stats: CacheStats,
}

impl StateCache {
    /// Whether the cache currently mirrors the engine.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Waits, at most `limit`, until the watcher's first attempt to sync has ended (a cache
    /// that was synced once, or whose first listing failed, returns at once): after a fresh
    /// connection a lookup is then answered from the listing instead of an inspect.
    pub async fn wait_first_sync(&self, limit: Duration) {
        if !self.started.load(Ordering::Acquire) || self.first_attempt_done.load(Ordering::Acquire)
        {
            return;
        }
        let notified = self.first_attempt.notified();
        tokio::pin!(notified);
        // Registered before the flag is read again: a notification in between is not lost.
        notified.as_mut().enable();
        if self.first_attempt_done.load(Ordering::Acquire) {
            return;
        }
        let _ = tokio::time::timeout(limit, notified).await;
    }

    fn end_first_attempt(&self) {
        if !self.first_attempt_done.swap(true, Ordering::AcqRel) {
            self.first_attempt.notify_waiters();
        }
    }

    /// The cached state of a container (by id or name); `None` when the cache is not synced or
    /// does not know it (then the caller inspects).
    pub fn lookup(&self, key: &str) -> Option<ContainerStatus> {
        if !self.is_synced() {
            return None;
        }
        let maps = self
            .maps
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        maps.get(key)
            .filter(|entry| entry.confirmed)
            .map(|entry| entry.state.clone())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Maps> {
        self.maps
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records what an inspect showed, if the container is one the watcher follows and nothing
    /// newer is known.
    pub fn record_inspect(&self, inspect: &ContainerInspectResponse) {
        let labels = inspect.config.as_ref().and_then(|c| c.labels.as_ref());
        if labels
            .and_then(|l| l.get(MANAGED_LABEL))
            .map(String::as_str)
            != Some(MANAGED_VALUE)
        {
            // Not followed by the events stream: caching it would go stale.
            return;
        }
        let Some(name) = inspect.name.as_deref() else {
            return;
        };
        let status = ContainerStatus::from_inspect(inspect);
        if status.id.is_empty() {
            return;
        }
        let state = inspect.state.as_ref();
        let started = state
            .and_then(|s| s.started_at.as_deref())
            .and_then(parse_rfc3339_nanos);
        let finished = state
            .and_then(|s| s.finished_at.as_deref())
            .and_then(parse_rfc3339_nanos);
        let as_of = started.max(finished).unwrap_or(0);
        let policy = inspect
            .host_config
            .as_ref()
            .and_then(|h| h.restart_policy.as_ref())
            .and_then(|p| p.name);
        let entry = Entry {
            name: name.trim_start_matches('/').to_owned(),
            state: status,
            as_of,
            restarts: Some(policy.is_some_and(|p| {
                p != bollard::models::RestartPolicyNameEnum::NO
                    && p != bollard::models::RestartPolicyNameEnum::EMPTY
            })),
            confirmed: true,
        };
        let mut maps = self.write();
        if maps.destroyed.contains(entry.id()) {
            return;
        }
        match maps.by_id.get_mut(entry.id()) {
            // Older than what the events said; but the restart policy never changes, and an
            // inspect showing the container neither running nor restarting confirms a death.
            Some(existing) if existing.as_of > entry.as_of => {
                existing.restarts = entry.restarts;
                if !existing.confirmed && !entry.state.running && !existing.state.running {
                    existing.confirmed = true;
                }
                // The `start` event of the very start this inspect shows (the engine sends it
                // right after setting `StartedAt`) knows no endpoints; the inspect does.
                if existing.state.running
                    && entry.state.running
                    && existing.state.endpoints.is_none()
                    && existing.as_of - entry.as_of < SAME_START_NANOS
                {
                    existing.state.endpoints = entry.state.endpoints;
                }
            }
            _ => maps.insert(entry),
        }
    }

    /// The state word (`running`, `exited`, ...) of every container the cache holds that was
    /// made by one of the hubs `hub_ids`, for the metrics.
    pub fn states_of(&self, hub_ids: &[String]) -> Vec<String> {
        let maps = self
            .maps
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        maps.by_id
            .values()
            .filter(|e| {
                e.state
                    .owner
                    .as_ref()
                    .is_some_and(|o| hub_ids.contains(&o.hub))
            })
            .map(|e| e.state.status.clone())
            .collect()
    }

    /// Forgets a container (after rustdocker stopped or removed it); the next lookup misses
    /// and inspects, and later events re-add it.
    pub fn forget(&self, key: &str) {
        self.write().remove(key);
    }

    fn replace_all(&self, entries: Vec<Entry>) {
        let mut current = self.write();
        let mut maps = Maps {
            destroyed: std::mem::take(&mut current.destroyed),
            ..Maps::default()
        };
        for mut entry in entries {
            if !maps.destroyed.contains(entry.id()) {
                // The restart policy never changes: what an inspect told stays known.
                entry.restarts = current.by_id.get(entry.id()).and_then(|e| e.restarts);
                maps.insert(entry);
            }
        }
        *current = maps;
    }

    fn apply(&self, event: &EventMessage) {
        let Some(actor) = event.actor.as_ref() else {
            return;
        };
        let Some(id) = actor.id.clone() else {
            return;
        };
        let attributes = actor.attributes.as_ref();
        let name = attributes
            .and_then(|a| a.get("name"))
            .cloned()
            .unwrap_or_default();
        // Container events carry the container's labels among their attributes.
        let owner = attributes.and_then(|a| Owner::from_labels(|key| a.get(key)));
        let time = event.time_nano.unwrap_or(0);
        let action = event.action.as_deref().unwrap_or_default();
        // `exec_start: sh -c ...` and friends carry a suffix after a colon.
        let verb = action.split(':').next().unwrap_or_default();
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        let mut maps = self.write();
        if let Some(existing) = maps.by_id.get(&id) {
            if existing.as_of > time {
                return; // older than what we know
            }
        }
        match verb {
            "start" | "unpause" | "restart" => {
                let restarts = maps.by_id.get(&id).and_then(|e| e.restarts);
                let mut entry = Entry::new(id, name, (true, 0, "running"), owner, time);
                entry.restarts = restarts;
                maps.insert(entry);
            }
            "die" => {
                let exit_code = attributes
                    .and_then(|a| a.get("exitCode"))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                // A container with a restart policy that the engine is restarting counts as
                // running, and the event does not say whether it will be restarted: unless the
                // container is known to have no restart policy, the entry is kept (for the
                // order of events) but not answered from, so polls inspect (`Restarting` is set
                // before the event is sent) until its next event.
                let restarts = maps.by_id.get(&id).and_then(|e| e.restarts);
                let mut entry = Entry::new(id, name, (false, exit_code, "exited"), owner, time);
                entry.restarts = restarts;
                entry.confirmed = restarts == Some(false);
                maps.insert(entry);
            }
            "destroy" => {
                maps.remove(&id);
                if maps.destroyed.len() >= MAX_TOMBSTONES {
                    maps.destroyed.clear();
                }
                maps.destroyed.insert(id);
            }
            "rename" => {
                if let Some(mut entry) = maps.by_id.get(&id).cloned() {
                    entry.name = name;
                    entry.as_of = time;
                    maps.insert(entry);
                }
            }
            // `create` is not a state a spawner polls (it is not started yet); paused containers
            // still hold the server; the rest do not change running/stopped.
            _ => {}
        }
    }
}

/// Parses the engine's RFC 3339 UTC timestamps (`2026-11-26T10:16:02.123456789Z`) into ns since
/// the epoch. `0001-01-01T00:00:00Z` (never) and anything unparsable give `None`.
#[must_use]
pub fn parse_rfc3339_nanos(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.splitn(3, '-').map(str::parse::<i64>);
    let (year, month, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    if year < 1970 || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(str::parse::<i64>);
    let (hour, minute, second) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let mut nanos: i64 = 0;
    let digits: String = frac.chars().take(9).collect();
    if !digits.is_empty() {
        nanos = digits.parse::<i64>().ok()? * 10_i64.pow(9 - u32::try_from(digits.len()).ok()?);
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// How long after the engine's time of `event` it is applied (0 when the clocks disagree the
/// other way).
fn event_lag(event: &EventMessage) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    let lag = now.saturating_sub(event.time_nano.unwrap_or(now));
    Duration::from_nanos(u64::try_from(lag).unwrap_or(0))
}

fn managed_filter() -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_owned(),
        vec![format!("{MANAGED_LABEL}={MANAGED_VALUE}")],
    )])
}

fn exit_code_from_status(status: &str) -> i64 {
    // `docker ps` status text: "Exited (137) 5 seconds ago".
    status
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .and_then(|(code, _)| code.parse().ok())
        .unwrap_or(0)
}

impl Engine {
    /// Starts the watcher once per engine connection. Runs for the life of the process; it
    /// touches Python only to log, through `log`, which gives up while the interpreter shuts
    /// down, so it is safe at interpreter exit.
    pub fn start_cache(&self) {
        if self.cache().started.swap(true, Ordering::AcqRel) {
            return;
        }
        metrics::register_cache(self.cache());
        let engine = self.clone();
        tokio::spawn(async move {
            let cache = engine.cache().clone();
            // A bug in the watcher must not leave the cache answering from a frozen map: it
            // stops answering, and polls inspect each container from then on.
            if let Err(panic) = AssertUnwindSafe(engine.watch()).catch_unwind().await {
                cache.synced.store(false, Ordering::Release);
                cache.end_first_attempt();
                let err = CoreError::from_panic("the state cache's watcher", panic.as_ref());
                log::warn(&format!(
                    "{err}; the cache is off, polls inspect each container from now on"
                ));
            }
        });
    }

    async fn watch(self) {
        let cache = self.cache().clone();
        let mut backoff = Duration::from_millis(100);
        // Failures in a row: the first is a warning, repeats while the engine stays away are
        // debug lines, so an engine that is down for an hour does not flood the hub's log.
        let mut failures: u32 = 0;
        loop {
            let since = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs().saturating_sub(REPLAY_SECONDS));
            let options = EventsOptions {
                since: Some(since.to_string()),
                filters: Some({
                    let mut filters = managed_filter();
                    filters.insert("type".to_owned(), vec!["container".to_owned()]);
                    filters
                }),
                ..Default::default()
            };
            let mut events = Box::pin(self.docker().events(Some(options)));
            match self.list_managed().await {
                Err(e) => {
                    // After a renewal the map may be stale: stop answering from it.
                    cache.synced.store(false, Ordering::Release);
                    // Lookups waiting for the first sync inspect instead.
                    cache.end_first_attempt();
                    failures += 1;
                    let message = format!(
                        "state cache: {e}; polls inspect each container until it is back (next try in {} ms)",
                        backoff.as_millis()
                    );
                    if failures == 1 {
                        log::warn(&message);
                    } else {
                        log::debug(&message);
                    }
                }
                Ok(entries) => {
                    // The engine answers: what failed starts could not remove goes now.
                    self.remove_leftovers();
                    let count = entries.len();
                    cache.replace_all(entries);
                    cache.stats.resyncs.fetch_add(1, Ordering::Relaxed);
                    metrics::cache_event(CacheEvent::Resync);
                    // The replayed history is applied in order before the cache answers lookups:
                    // the replay arrives at once, so a quiet 100 ms (or 1 s at most, on a busy
                    // engine) marks the cache synced.
                    let replay_deadline = tokio::time::Instant::now() + Duration::from_secs(1);
                    let mut replaying = true;
                    let ended = loop {
                        let next = if replaying {
                            let quiet = tokio::time::Instant::now() + Duration::from_millis(100);
                            let deadline = quiet.min(replay_deadline);
                            if let Ok(item) = tokio::time::timeout_at(deadline, events.next()).await
                            {
                                item
                            } else {
                                replaying = false;
                                cache.synced.store(true, Ordering::Release);
                                cache.end_first_attempt();
                                backoff = Duration::from_millis(100);
                                log::info(&format!(
                                    "state cache: synced with the engine ({count} managed containers)"
                                ));
                                continue;
                            }
                        } else if let Ok(item) =
                            tokio::time::timeout(SILENCE_RENEW, events.next()).await
                        {
                            item
                        } else {
                            break None;
                        };
                        match next {
                            Some(Ok(event)) => {
                                cache.apply(&event);
                                // Replayed history is old by design: only live events tell
                                // how far behind the cache is.
                                let lag = (!replaying).then(|| event_lag(&event));
                                metrics::cache_event(CacheEvent::Applied(lag));
                            }
                            Some(Err(e)) => {
                                break Some(self.err("follow container events", e).to_string())
                            }
                            None => break Some("the engine closed the events stream".to_owned()),
                        }
                    };
                    let Some(ended) = ended else {
                        // Silence: renew at once, still answering from the map meanwhile.
                        cache.stats.renewals.fetch_add(1, Ordering::Relaxed);
                        metrics::cache_event(CacheEvent::Renewal);
                        log::debug("state cache: no events for a while; renewing the stream");
                        continue;
                    };
                    cache.synced.store(false, Ordering::Release);
                    cache.end_first_attempt();
                    cache.stats.disconnects.fetch_add(1, Ordering::Relaxed);
                    metrics::cache_event(CacheEvent::Disconnect);
                    // Counts as the first failure: a reconnect that keeps failing is then only
                    // logged at debug level.
                    failures = 1;
                    log::warn(&format!(
                        "state cache: {ended}; resyncing (polls inspect each container meanwhile)"
                    ));
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// The managed containers as a listing shows them. Each entry is dated with the engine's
    /// clock just before the listing, so replayed events older than it (which the listing
    /// already reflects) change nothing, and a listed container keeps the endpoints the listing
    /// gave it (an event knows none).
    async fn list_managed(&self) -> CoreResult<Vec<Entry>> {
        let listed_at = match metrics::timed(Verb::Info, self.docker().info()).await {
            Ok(info) => info
                .system_time
                .as_deref()
                .and_then(parse_rfc3339_nanos)
                .unwrap_or(0),
            Err(e) => return Err(self.err("read the engine's clock", e)),
        };
        let options = ListContainersOptions {
            all: true,
            filters: Some(managed_filter()),
            ..Default::default()
        };
        let list = metrics::timed(
            Verb::ListContainers,
            self.docker().list_containers(Some(options)),
        )
        .await
        .map_err(|e| self.err("list containers", e))?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let id = c.id.clone()?;
                let name = c
                    .names
                    .as_ref()
                    .and_then(|n| n.first())
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .unwrap_or_default();
                let state = c.state.map(|s| s.to_string()).unwrap_or_default();
                let running = matches!(
                    c.state,
                    Some(
                        ContainerSummaryStateEnum::RUNNING
                            | ContainerSummaryStateEnum::PAUSED
                            | ContainerSummaryStateEnum::RESTARTING
                    )
                );
                let exit_code = if running {
                    0
                } else {
                    exit_code_from_status(c.status.as_deref().unwrap_or_default())
                };
                let owner = c
                    .labels
                    .as_ref()
                    .and_then(|labels| Owner::from_labels(|key| labels.get(key)));
                let endpoints = running.then(|| Endpoints::of_summary(&c));
                let mut entry =
                    Entry::new(id, name, (running, exit_code, &state), owner, listed_at);
                entry.state.endpoints = endpoints;
                Some(entry)
            })
            .collect())
    }

    /// The cached state of a container, when the cache is synced and knows it.
    #[must_use]
    pub fn cached_status(&self, key: &str) -> Option<ContainerStatus> {
        self.cache().lookup(key)
    }

    /// A container's state for a poll: from the cache once it is synced (a fresh connection's
    /// first sync is awaited, see `FIRST_SYNC_WAIT`), else from an inspect. `None` when it does
    /// not exist.
    pub async fn polled_status(&self, key: &str) -> CoreResult<Option<ContainerStatus>> {
        self.cache().wait_first_sync(FIRST_SYNC_WAIT).await;
        if let Some(status) = self.cached_status(key) {
            return Ok(Some(status));
        }
        self.container_status(key).await
    }

    /// The shared state cache of this connection.
    #[must_use]
    pub fn cache(&self) -> &Arc<StateCache> {
        &self.cache
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_rfc3339_nanos("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_nanos("2026-11-26T10:16:02.123456789Z"),
            Some(1_795_688_162_123_456_789)
        );
        assert_eq!(
            parse_rfc3339_nanos("2000-02-29T12:00:00.5Z"),
            Some(951_825_600_500_000_000)
        );
        assert_eq!(parse_rfc3339_nanos("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_nanos("garbage"), None);
    }

    #[test]
    fn exit_codes_from_status_text() {
        assert_eq!(exit_code_from_status("Exited (137) 5 seconds ago"), 137);
        assert_eq!(exit_code_from_status("Created"), 0);
    }

    fn event(action: &str, id: &str, time: i64, exit: Option<&str>) -> EventMessage {
        let mut attributes = HashMap::from([("name".to_owned(), format!("n-{id}"))]);
        if let Some(code) = exit {
            attributes.insert("exitCode".to_owned(), code.to_owned());
        }
        EventMessage {
            action: Some(action.to_owned()),
            actor: Some(bollard::models::EventActor {
                id: Some(id.to_owned()),
                attributes: Some(attributes),
            }),
            time_nano: Some(time),
            ..Default::default()
        }
    }

    #[test]
    fn events_update_and_stale_events_are_ignored() {
        let cache = StateCache::default();
        cache.synced.store(true, Ordering::Release);
        cache.apply(&event("create", "a", 1, None));
        assert!(cache.lookup("a").is_none());
        cache.apply(&event("start", "a", 2, None));
        assert!(cache.lookup("n-a").is_some_and(|s| s.running));
        // Known (from an inspect) to have no restart policy: its death is final.
        if let Some(entry) = cache.write().by_id.get_mut("a") {
            entry.restarts = Some(false);
        }
        cache.apply(&event("die", "a", 5, Some("137")));
        let s = cache.lookup("a").unwrap();
        assert!(!s.running);
        assert_eq!(s.exit_code, 137);
        // A late event older than what is known changes nothing.
        cache.apply(&event("start", "a", 3, None));
        assert!(!cache.lookup("a").unwrap().running);
        cache.apply(&event("destroy", "a", 6, None));
        assert!(cache.lookup("a").is_none());
        assert!(cache.lookup("n-a").is_none());
        // A container whose restart policy is not known: after its death polls inspect, until
        // the restart's `start` event.
        cache.apply(&event("start", "r", 8, None));
        cache.apply(&event("die", "r", 9, Some("1")));
        assert!(cache.lookup("r").is_none());
        cache.apply(&event("start", "r", 10, None));
        assert!(cache.lookup("r").is_some_and(|s| s.running));
        cache.synced.store(false, Ordering::Release);
        cache.apply(&event("start", "b", 7, None));
        assert!(
            cache.lookup("b").is_none(),
            "unsynced caches answer nothing"
        );
    }

    #[test]
    fn a_late_inspect_never_brings_back_a_destroyed_container() {
        use bollard::models::{ContainerConfig, ContainerInspectResponse, ContainerState};
        let cache = StateCache::default();
        cache.synced.store(true, Ordering::Release);
        let running = ContainerInspectResponse {
            id: Some("t".to_owned()),
            name: Some("/n-t".to_owned()),
            config: Some(ContainerConfig {
                labels: Some(HashMap::from([(
                    MANAGED_LABEL.to_owned(),
                    MANAGED_VALUE.to_owned(),
                )])),
                ..Default::default()
            }),
            state: Some(ContainerState {
                running: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        cache.apply(&event("start", "t", 1, None));
        cache.apply(&event("destroy", "t", 2, None));
        // An inspect that began before the destruction answers after it.
        cache.record_inspect(&running);
        assert!(cache.lookup("t").is_none());
        assert!(cache.lookup("n-t").is_none());
        // Nor does a resync listing that raced with it.
        cache.replace_all(vec![Entry::new(
            "t".to_owned(),
            "n-t".to_owned(),
            (true, 0, "running"),
            None,
            0,
        )]);
        assert!(cache.lookup("t").is_none());
    }
}

//! What a start is doing now, for the spawn page: its phase, and during a pull the bytes each
//! layer has downloaded and extracted. And one pull per image at a time: a start that needs an
//! image another start (or the pre-pull) is already pulling joins that pull and reads its
//! progress instead of asking the engine for a second one.
//!
//! Both are plain shared state read by `snapshot` (Python polls it a few times a second); no
//! callback crosses into Python.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use bollard::models::CreateImageInfo;
use serde::Serialize;
use tokio::sync::watch;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked while holding it; the data is valid.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ------------------------------------------------------------------ pulls

/// Where one layer of a pull stands, from the engine's progress messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Layer {
    /// Compressed bytes downloaded so far.
    pub downloaded: u64,
    /// Bytes extracted so far (the engine counts them against the compressed size).
    pub extracted: u64,
    /// The layer's compressed size; 0 until the engine says it.
    pub size: u64,
    /// The engine had it already, or it is downloaded and extracted.
    pub done: bool,
    /// The engine had it already: nothing to fetch.
    pub cached: bool,
}

impl Layer {
    /// Applies one progress message of this layer (Docker's `status` strings).
    fn apply(&mut self, status: &str, current: Option<u64>, total: Option<u64>) {
        if let Some(total) = total.filter(|t| *t > 0) {
            self.size = total;
        }
        match status {
            "Downloading" => self.downloaded = current.unwrap_or(self.downloaded),
            "Verifying Checksum" | "Download complete" => self.downloaded = self.size,
            "Extracting" => {
                self.downloaded = self.size;
                self.extracted = current.unwrap_or(self.extracted);
            }
            "Pull complete" => {
                self.downloaded = self.size;
                self.extracted = self.size;
                self.done = true;
            }
            "Already exists" => {
                self.done = true;
                self.cached = true;
            }
            _ => {}
        }
    }
}

/// How a pull ended, as the starts that joined it learn it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEnd {
    /// The image is there.
    Pulled,
    /// The pull failed with this message (the registry's or the engine's).
    Failed(String),
    /// The start that led the pull went away (cancelled) before it ended: a start still
    /// waiting for the image leads a new pull (the engine joins the one it may still run).
    Abandoned,
}

/// One pull in flight, shared by every start that needs the image.
#[derive(Debug)]
pub struct PullState {
    image: String,
    started: Instant,
    layers: Mutex<BTreeMap<String, Layer>>,
    ended: watch::Sender<Option<PullEnd>>,
}

impl PullState {
    fn new(image: &str) -> Self {
        PullState {
            image: image.to_owned(),
            started: Instant::now(),
            layers: Mutex::default(),
            ended: watch::Sender::new(None),
        }
    }

    /// Records one message of the engine's pull stream; returns how many more bytes of the
    /// layer it says are downloaded (what the pull metrics count).
    pub fn record(&self, info: &CreateImageInfo) -> u64 {
        let (Some(id), Some(status)) = (info.id.as_deref(), info.status.as_deref()) else {
            return 0;
        };
        // The first message names the tag being pulled ("Pulling from ..."), not a layer.
        if status.starts_with("Pulling from") || id.contains(':') {
            return 0;
        }
        let detail = info.progress_detail.as_ref();
        let as_bytes = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok());
        let mut layers = lock(&self.layers);
        let layer = layers.entry(id.to_owned()).or_default();
        let before = layer.downloaded;
        layer.apply(
            status,
            as_bytes(detail.and_then(|d| d.current)),
            as_bytes(detail.and_then(|d| d.total)),
        );
        layer.downloaded.saturating_sub(before)
    }

    /// Waits until the pull has ended; `None` if the state was dropped without an end.
    pub async fn ended(&self) -> PullEnd {
        let mut rx = self.ended.subscribe();
        let end = match rx.wait_for(Option::is_some).await {
            Ok(end) => end.clone().unwrap_or(PullEnd::Abandoned),
            Err(_) => PullEnd::Abandoned,
        };
        end
    }

    /// How the pull ended, if it has.
    pub fn end(&self) -> Option<PullEnd> {
        self.ended.borrow().clone()
    }

    /// The pull's figures now.
    pub fn snapshot(&self) -> PullSnapshot {
        let layers = lock(&self.layers);
        let mut s = PullSnapshot {
            image: self.image.clone(),
            elapsed: self.started.elapsed().as_secs_f64(),
            layers: layers.len(),
            ..PullSnapshot::default()
        };
        for layer in layers.values() {
            if layer.done {
                s.layers_done += 1;
            }
            if layer.cached {
                continue;
            }
            if layer.size == 0 {
                s.sizes_unknown += 1;
            }
            s.total += layer.size;
            s.downloaded += layer.downloaded.min(layer.size);
            s.extracted += layer.extracted.min(layer.size);
        }
        s
    }
}

/// A pull's figures at one moment (bytes are compressed bytes, as the engine reports them).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PullSnapshot {
    /// The image being pulled.
    pub image: String,
    /// Seconds since the pull started.
    pub elapsed: f64,
    /// Layers the engine has named so far.
    pub layers: usize,
    /// Layers done (extracted, or there already).
    pub layers_done: usize,
    /// Layers whose size the engine has not said yet.
    pub sizes_unknown: usize,
    /// Bytes to fetch, over the layers whose size is known.
    pub total: u64,
    /// Bytes downloaded.
    pub downloaded: u64,
    /// Bytes extracted.
    pub extracted: u64,
}

/// A pull's key: the engine's Docker host, the image, and a fingerprint of the credentials it
/// is pulled with (`credentials_key`): a start with other credentials never takes the result
/// of a pull made with the wrong ones, or none.
type PullKey = (String, String, u64);

/// A fingerprint of the credentials a pull sends (0: none). In-process only, never shown.
#[must_use]
pub fn credentials_key(credentials: Option<&bollard::auth::DockerCredentials>) -> u64 {
    use std::hash::{Hash, Hasher};
    let Some(c) = credentials else {
        return 0;
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (
        &c.username,
        &c.password,
        &c.auth,
        &c.email,
        &c.serveraddress,
        &c.identitytoken,
        &c.registrytoken,
    )
        .hash(&mut hasher);
    hasher.finish() | 1
}

/// The pulls in flight, by engine and image.
static PULLS: LazyLock<Mutex<HashMap<PullKey, Arc<PullState>>>> = LazyLock::new(Mutex::default);

/// A start's part in the pull of an image.
pub enum Role {
    /// No pull of the image was in flight: this start runs it, and must end it (`Lead::end`;
    /// dropping the `Lead` ends it as abandoned).
    Lead(Lead),
    /// Another start is pulling it: wait for its end.
    Join(Arc<PullState>),
}

/// The start that runs a pull others may have joined.
pub struct Lead {
    key: PullKey,
    state: Arc<PullState>,
    ended: bool,
}

impl Lead {
    /// The pull's shared state.
    pub fn state(&self) -> &Arc<PullState> {
        &self.state
    }

    /// Ends the pull for everyone who joined it.
    pub fn end(mut self, end: PullEnd) {
        self.finish(end);
    }

    fn finish(&mut self, end: PullEnd) {
        if self.ended {
            return;
        }
        self.ended = true;
        let mut pulls = lock(&PULLS);
        if pulls
            .get(&self.key)
            .is_some_and(|s| Arc::ptr_eq(s, &self.state))
        {
            pulls.remove(&self.key);
        }
        drop(pulls);
        self.state.ended.send_replace(Some(end));
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        self.finish(PullEnd::Abandoned);
    }
}

/// This start's part in pulling `image` from the engine at `host` with the credentials of
/// fingerprint `auth` (`credentials_key`): lead a new pull, or join the one in flight.
pub fn join_or_lead(host: &str, image: &str, auth: u64) -> Role {
    let key = (host.to_owned(), image.to_owned(), auth);
    let mut pulls = lock(&PULLS);
    if let Some(state) = pulls.get(&key) {
        if state.end().is_none() {
            return Role::Join(state.clone());
        }
    }
    let state = Arc::new(PullState::new(image));
    pulls.insert(key.clone(), state.clone());
    Role::Lead(Lead {
        key,
        state,
        ended: false,
    })
}

/// The pull of `image` with credentials `auth` in flight on the engine at `host`, if any.
pub fn pull_in_flight(host: &str, image: &str, auth: u64) -> Option<Arc<PullState>> {
    lock(&PULLS)
        .get(&(host.to_owned(), image.to_owned(), auth))
        .cloned()
}

// ------------------------------------------------------------------ starts

/// The steps of a start, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for an earlier operation on the same container (a stop) to end.
    Queued,
    /// Creating the server's named volumes.
    Volumes,
    /// Creating (or finding) the container.
    Create,
    /// Pulling the image.
    Pull,
    /// Starting the container (or the swarm service).
    Start,
    /// Waiting for the swarm to run the service's task.
    Task,
}

impl Phase {
    /// The phase's name, as Python reads it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Volumes => "volumes",
            Phase::Create => "create",
            Phase::Pull => "pull",
            Phase::Start => "start",
            Phase::Task => "task",
        }
    }
}

/// What one start is doing now.
#[derive(Debug)]
pub struct StartProgress {
    inner: Mutex<StartInner>,
}

#[derive(Debug)]
struct StartInner {
    phase: Phase,
    since: Instant,
    pull: Option<(Arc<PullState>, bool)>,
    detail: String,
    node: String,
}

impl StartProgress {
    /// Enters `phase`.
    pub fn phase(&self, phase: Phase) {
        let mut inner = lock(&self.inner);
        if inner.phase != phase {
            inner.phase = phase;
            inner.since = Instant::now();
        }
    }

    /// Enters the pull phase, reading `pull` (`joined`: another start runs it).
    pub fn pulling(&self, pull: &Arc<PullState>, joined: bool) {
        self.phase(Phase::Pull);
        lock(&self.inner).pull = Some((pull.clone(), joined));
    }

    /// A word on the current phase (a swarm task's state, why it waits).
    pub fn detail(&self, detail: &str) {
        let mut inner = lock(&self.inner);
        if inner.detail != detail {
            detail.clone_into(&mut inner.detail);
        }
    }

    /// The swarm node the start's task is on (its hostname).
    pub fn node(&self, hostname: &str) {
        let mut inner = lock(&self.inner);
        if inner.node != hostname {
            hostname.clone_into(&mut inner.node);
        }
    }

    /// The start's progress now.
    pub fn snapshot(&self) -> StartSnapshot {
        let inner = lock(&self.inner);
        StartSnapshot {
            phase: inner.phase.name(),
            phase_seconds: inner.since.elapsed().as_secs_f64(),
            detail: inner.detail.clone(),
            node: inner.node.clone(),
            pull: inner
                .pull
                .as_ref()
                .filter(|_| inner.phase == Phase::Pull)
                .map(|(p, _)| p.snapshot()),
            joined: inner.pull.as_ref().is_some_and(|(_, joined)| *joined),
        }
    }
}

/// A start's progress at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct StartSnapshot {
    /// `Phase::name` of the current phase.
    pub phase: &'static str,
    /// Seconds in it.
    pub phase_seconds: f64,
    /// A word on it (may be empty).
    pub detail: String,
    /// The swarm node its task is on (may be empty).
    pub node: String,
    /// During a pull: its figures.
    pub pull: Option<PullSnapshot>,
    /// During a pull: whether another start (or the pre-pull) runs it.
    pub joined: bool,
}

static STARTS: LazyLock<Mutex<HashMap<String, Arc<StartProgress>>>> = LazyLock::new(Mutex::default);

/// A start's progress, readable by its ticket while this lives.
pub struct Tracked {
    ticket: String,
    progress: Arc<StartProgress>,
}

impl Tracked {
    /// The progress to update.
    pub fn progress(&self) -> &StartProgress {
        &self.progress
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut starts = lock(&STARTS);
        if starts
            .get(&self.ticket)
            .is_some_and(|p| Arc::ptr_eq(p, &self.progress))
        {
            starts.remove(&self.ticket);
        }
    }
}

/// Makes the progress of the start with `ticket` readable until the returned value is dropped.
pub fn track(ticket: &str) -> Tracked {
    let progress = Arc::new(StartProgress {
        inner: Mutex::new(StartInner {
            phase: Phase::Queued,
            since: Instant::now(),
            pull: None,
            detail: String::new(),
            node: String::new(),
        }),
    });
    lock(&STARTS).insert(ticket.to_owned(), progress.clone());
    Tracked {
        ticket: ticket.to_owned(),
        progress,
    }
}

/// The progress of the start with `ticket`, while it runs.
pub fn snapshot(ticket: &str) -> Option<StartSnapshot> {
    let progress = lock(&STARTS).get(ticket).cloned();
    progress.map(|p| p.snapshot())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::ProgressDetail;

    fn msg(id: &str, status: &str, current: Option<i64>, total: Option<i64>) -> CreateImageInfo {
        CreateImageInfo {
            id: Some(id.to_owned()),
            status: Some(status.to_owned()),
            progress_detail: Some(ProgressDetail { current, total }),
            ..Default::default()
        }
    }

    #[test]
    fn layers_add_up() {
        let state = PullState::new("img:1");
        state.record(&msg("img:1", "Pulling from library/img", None, None));
        state.record(&msg("aaa", "Pulling fs layer", None, None));
        state.record(&msg("bbb", "Already exists", None, None));
        state.record(&msg("ccc", "Waiting", None, None));
        // What the pull metrics count: the bytes each message adds to a layer's download.
        assert_eq!(
            state.record(&msg("aaa", "Downloading", Some(40), Some(100))),
            40
        );
        let s = state.snapshot();
        assert_eq!((s.layers, s.layers_done, s.sizes_unknown), (3, 1, 1));
        assert_eq!((s.total, s.downloaded, s.extracted), (100, 40, 0));
        state.record(&msg("ccc", "Downloading", Some(10), Some(300)));
        assert_eq!(
            state.record(&msg("aaa", "Download complete", None, None)),
            60
        );
        state.record(&msg("aaa", "Extracting", Some(50), Some(100)));
        let s = state.snapshot();
        assert_eq!((s.total, s.downloaded, s.extracted), (400, 110, 50));
        state.record(&msg("aaa", "Pull complete", None, None));
        state.record(&msg("ccc", "Pull complete", None, None));
        let s = state.snapshot();
        assert_eq!((s.total, s.downloaded, s.extracted), (400, 400, 400));
        assert_eq!((s.layers_done, s.sizes_unknown), (3, 0));
        // Nonsense from an engine never goes beyond the size or below zero.
        state.record(&msg("ddd", "Downloading", Some(-5), Some(-1)));
        state.record(&msg("eee", "Downloading", Some(500), Some(100)));
        let s = state.snapshot();
        assert_eq!((s.total, s.downloaded), (500, 500));
    }

    #[tokio::test]
    async fn one_pull_per_image_and_a_new_lead_after_an_abandoned_one() {
        let Role::Lead(lead) = join_or_lead("h", "x:1", 0) else {
            panic!("the first start leads");
        };
        let Role::Join(joined) = join_or_lead("h", "x:1", 0) else {
            panic!("the second joins");
        };
        assert!(Arc::ptr_eq(&joined, lead.state()));
        assert!(matches!(
            join_or_lead("other-host", "x:1", 0),
            Role::Lead(_)
        ));
        let waiter = tokio::spawn(async move { joined.ended().await });
        drop(lead); // the leading start was cancelled
        assert_eq!(waiter.await.unwrap(), PullEnd::Abandoned);
        let Role::Lead(lead) = join_or_lead("h", "x:1", 0) else {
            panic!("a waiting start leads a new pull");
        };
        let Role::Join(joined) = join_or_lead("h", "x:1", 0) else {
            panic!("joins the new one");
        };
        lead.end(PullEnd::Failed("denied".to_owned()));
        assert_eq!(joined.ended().await, PullEnd::Failed("denied".to_owned()));
        assert!(pull_in_flight("h", "x:1", 0).is_none());
    }

    #[test]
    fn pulls_with_other_credentials_are_not_joined() {
        use bollard::auth::DockerCredentials;
        let creds = |password: &str| DockerCredentials {
            username: Some("robot".to_owned()),
            password: Some(password.to_owned()),
            serveraddress: Some("reg:5000".to_owned()),
            ..Default::default()
        };
        let (right, wrong) = (creds("right"), creds("wrong"));
        let none = credentials_key(None);
        let (right_key, wrong_key) = (credentials_key(Some(&right)), credentials_key(Some(&wrong)));
        assert_eq!(right_key, credentials_key(Some(&right.clone())));
        assert!(none != right_key && right_key != wrong_key && none != wrong_key);
        // A pull with wrong credentials (or none) in flight: a start with the right ones leads
        // its own, so it never inherits the other's refusal.
        let Role::Lead(_without) = join_or_lead("h", "y:1", none) else {
            panic!("the first start leads");
        };
        let Role::Lead(_wrong) = join_or_lead("h", "y:1", wrong_key) else {
            panic!("other credentials lead their own pull");
        };
        let Role::Lead(right_lead) = join_or_lead("h", "y:1", right_key) else {
            panic!("other credentials lead their own pull");
        };
        let Role::Join(joined) = join_or_lead("h", "y:1", right_key) else {
            panic!("the same credentials join");
        };
        assert!(Arc::ptr_eq(&joined, right_lead.state()));
    }

    #[test]
    fn starts_are_readable_while_tracked() {
        let tracked = track("t1");
        tracked.progress().phase(Phase::Create);
        let s = snapshot("t1").unwrap();
        assert_eq!((s.phase, s.pull.is_none()), ("create", true));
        let pull = Arc::new(PullState::new("x"));
        tracked.progress().pulling(&pull, true);
        let s = snapshot("t1").unwrap();
        assert_eq!(s.phase, "pull");
        assert!(s.joined && s.pull.is_some());
        drop(tracked);
        assert!(snapshot("t1").is_none());
    }
}

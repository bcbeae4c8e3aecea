//! Per-object operation locks.
//!
//! Operations on one container (start, stop, remove) are serialised so they cannot interleave,
//! while different users' containers never wait on each other: there is no global lock, only a
//! map lookup held for microseconds. Entries are weak and are pruned as locks are dropped.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use tokio::sync::{oneshot, Mutex as AsyncMutex, OwnedMutexGuard};

use crate::errors::{CoreError, CoreResult};

static LOCKS: LazyLock<Mutex<HashMap<String, Weak<AsyncMutex<()>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn lock_for(name: &str) -> Arc<AsyncMutex<()>> {
    // A poisoned map only means another thread panicked while holding it; the map is still valid.
    let mut map = LOCKS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(existing) = map.get(name).and_then(Weak::upgrade) {
        return existing;
    }
    if map.len() > 1024 {
        map.retain(|_, weak| weak.strong_count() > 0);
    }
    let lock = Arc::new(AsyncMutex::new(()));
    map.insert(name.to_owned(), Arc::downgrade(&lock));
    lock
}

/// Waits for and takes the operation lock of the object `name`.
pub async fn acquire(name: &str) -> OwnedMutexGuard<()> {
    lock_for(name).lock_owned().await
}

/// Sets its flag when dropped: tells a detached task that its caller went away.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Runs `work` in a task of its own that holds the operation lock of `name`, and returns its
/// result. `work` gets a probe telling whether the caller is still waiting, to stop early
/// between steps. If the caller is dropped (an asyncio cancellation, e.g. JupyterHub's
/// `start_timeout`) before the result is delivered, `undo` runs on that result while the lock
/// is still held, so a cancelled operation leaves nothing behind and nothing else touches the
/// object until it has been undone.
pub async fn run_undoable<T, W, WF, U, UF>(name: String, work: W, undo: U) -> CoreResult<T>
where
    T: Send + 'static,
    W: FnOnce(Arc<dyn Fn() -> bool + Send + Sync>) -> WF + Send + 'static,
    WF: Future<Output = CoreResult<T>> + Send + 'static,
    U: FnOnce(T) -> UF + Send + 'static,
    UF: Future<Output = ()> + Send + 'static,
{
    let gone = Arc::new(AtomicBool::new(false));
    let _caller = SetOnDrop(gone.clone());
    let (tx, rx) = oneshot::channel::<CoreResult<T>>();
    let task_name = name.clone();
    tokio::spawn(async move {
        let _guard = acquire(&task_name).await;
        let probe: Arc<dyn Fn() -> bool + Send + Sync> =
            Arc::new(move || gone.load(Ordering::Acquire));
        let result = work(probe).await;
        if let Err(Ok(value)) = tx.send(result) {
            undo(value).await;
        }
    });
    rx.await.unwrap_or_else(|_| {
        Err(CoreError::Request {
            action: format!("operate on '{name}'"),
            message: "the task ended without a result (the runtime is shutting down)".to_owned(),
        })
    })
}

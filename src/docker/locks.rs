//! Per-object operation locks, and the hand-over of an operation's result to Python.
//!
//! Operations on one container (start, stop, remove) are serialised so they cannot interleave,
//! while different users' containers never wait on each other: there is no global lock, only a
//! map lookup held for microseconds. Entries are weak and are pruned as locks are dropped.
//!
//! A result that reaches the Rust side of an awaitable is not yet in the spawner's hands: asyncio
//! may cancel the awaiting task after the Rust future finished and before the coroutine resumes,
//! and the result is then thrown away with a running container nobody tracks; and the Rust
//! future is dropped only some time after the cancellation, so a result can still be handed
//! over after it. So every `run_undoable` operation is registered by name until it ends, and
//! its result stays pending, with the lock held, until Python settles it (`settle`): claimed
//! right after the await returns, or abandoned from the cancellation handler. An abandoned
//! operation stops at its next step and undoes what it did, whether its result was already
//! handed over or not; one nobody settles within `CLAIM_TIMEOUT` is undone too.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::{oneshot, Mutex as AsyncMutex, Notify, OwnedMutexGuard};

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

/// How long a delivered result waits for Python to claim it before it is undone. Claiming is
/// synchronous right after the await returns, so only a stalled event loop comes near this.
pub const CLAIM_TIMEOUT: Duration = Duration::from_secs(60);

/// Where an operation's result stands: `PENDING` until Python settles it (or it times out).
const PENDING: u8 = 0;
const CLAIMED: u8 = 1;
const ABANDONED: u8 = 2;

/// An operation of `run_undoable`, as `settle` reaches it by its ticket.
#[derive(Default)]
struct Operation {
    /// `PENDING`, `CLAIMED` or `ABANDONED`; decided once (compare-and-swap), so a claim and a
    /// timeout can never both win.
    state: AtomicU8,
    /// Wakes the operation waiting for its result to be settled.
    settled: Notify,
}

/// The operations under way, by ticket: one per call, made by the caller, so two servers whose
/// containers share a name (a collision of templates) never settle each other's start.
static OPERATIONS: LazyLock<Mutex<HashMap<String, Arc<Operation>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn operations() -> std::sync::MutexGuard<'static, HashMap<String, Arc<Operation>>> {
    // A poisoned map only means another thread panicked while holding it; the map is still valid.
    OPERATIONS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Settles the operation with `ticket`: its result `claimed` by the spawner, or abandoned (its
/// caller was cancelled: it stops and is undone). Returns whether this decided it: a claim that
/// comes too late (the operation already gave up waiting and is undoing) returns false, and the
/// caller must not use the result. No such operation is a no-op (false).
pub fn settle(ticket: &str, claimed: bool) -> bool {
    let Some(operation) = operations().get(ticket).cloned() else {
        return false;
    };
    let to = if claimed { CLAIMED } else { ABANDONED };
    let decided = operation
        .state
        .compare_exchange(PENDING, to, Ordering::AcqRel, Ordering::Acquire)
        .is_ok();
    // A permit is stored if the operation is not waiting yet.
    operation.settled.notify_one();
    decided
}

impl Operation {
    fn abandoned(&self) -> bool {
        self.state.load(Ordering::Acquire) == ABANDONED
    }

    /// Waits until the result is claimed (true) or abandoned, or `CLAIM_TIMEOUT` passes, which
    /// abandons it (false).
    async fn claimed(&self) -> bool {
        let wait = async {
            loop {
                let notified = self.settled.notified();
                match self.state.load(Ordering::Acquire) {
                    CLAIMED => return true,
                    ABANDONED => return false,
                    _ => notified.await,
                }
            }
        };
        if let Ok(claimed) = tokio::time::timeout(CLAIM_TIMEOUT, wait).await {
            return claimed;
        }
        // Timed out: abandon it, unless a claim won the race.
        self.state
            .compare_exchange(PENDING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_err_and(|now| now == CLAIMED)
    }
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
/// `start_timeout`) before the result is delivered, or the delivered result is not claimed
/// (`settle`), `undo` runs on that result while the lock is still held, so a cancelled operation
/// leaves nothing behind and nothing else touches the object until it has been undone. A panic
/// in `work` is returned as `CoreError::Internal`.
pub async fn run_undoable<T, W, WF, U, UF>(
    name: String,
    ticket: String,
    work: W,
    undo: U,
) -> CoreResult<T>
where
    T: Clone + Send + 'static,
    W: FnOnce(Arc<dyn Fn() -> bool + Send + Sync>) -> WF + Send + 'static,
    WF: Future<Output = CoreResult<T>> + Send + 'static,
    U: FnOnce(T) -> UF + Send + 'static,
    UF: Future<Output = ()> + Send + 'static,
{
    let gone = Arc::new(AtomicBool::new(false));
    let _caller = SetOnDrop(gone.clone());
    let operation = Arc::new(Operation::default());
    operations().insert(ticket.clone(), operation.clone());
    let (tx, rx) = oneshot::channel::<CoreResult<T>>();
    let task_name = name.clone();
    tokio::spawn(async move {
        let _guard = acquire(&task_name).await;
        let watched = operation.clone();
        let probe: Arc<dyn Fn() -> bool + Send + Sync> =
            Arc::new(move || gone.load(Ordering::Acquire) || watched.abandoned());
        // A panic in `work` becomes an error for the caller, instead of a task that ends with
        // no result (which the caller could only report as a runtime shutting down).
        let result = AssertUnwindSafe(work(probe))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                Err(CoreError::from_panic(
                    &format!("the operation on '{task_name}'"),
                    panic.as_ref(),
                ))
            });
        match result {
            // Errors leave nothing to undo (`work` cleans up after itself).
            Err(err) => {
                let _ = tx.send(Err(err));
            }
            Ok(value) => {
                let kept = value.clone();
                let claimed = !operation.abandoned()
                    && tx.send(Ok(value)).is_ok()
                    && operation.claimed().await;
                if !claimed {
                    undo(kept).await;
                }
            }
        }
        operations().remove(&ticket);
    });
    rx.await.unwrap_or_else(|_| {
        Err(CoreError::Request {
            action: format!("operate on '{name}'"),
            message: "the task ended without a result (the runtime is shutting down)".to_owned(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_operation_is_an_internal_error() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let result: CoreResult<()> = runtime.block_on(run_undoable(
            "jupyter-alice".to_owned(),
            "t-panic".to_owned(),
            |_| async { panic!("boom") },
            |()| async {},
        ));
        let err = result.unwrap_err();
        assert!(matches!(err, CoreError::Internal(_)), "{err}");
        assert!(
            err.to_string()
                .contains("the operation on 'jupyter-alice': boom"),
            "{err}"
        );
    }

    #[test]
    fn a_result_is_undone_when_abandoned_after_delivery_and_kept_when_claimed() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        for claimed in [false, true] {
            let undone = Arc::new(AtomicBool::new(false));
            let flag = undone.clone();
            let name = format!("jupyter-settle-{claimed}");
            runtime.block_on(async {
                let result = run_undoable(
                    name.clone(),
                    name.clone(),
                    |_| async { Ok(7) },
                    move |_| async move { flag.store(true, Ordering::Release) },
                )
                .await;
                assert_eq!(result.unwrap(), 7);
                // The result reached the caller; the spawner then claims it, or its await was
                // cancelled in the meantime and abandons it.
                assert!(settle(&name, claimed));
                drop(acquire(&name).await);
                assert!(!settle(&name, claimed), "settled twice");
            });
            assert_eq!(
                undone.load(Ordering::Acquire),
                !claimed,
                "claimed={claimed}"
            );
        }
    }

    #[test]
    fn an_abandonment_before_the_result_is_not_lost() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let undone = Arc::new(AtomicBool::new(false));
        let flag = undone.clone();
        runtime.block_on(async {
            let name = "jupyter-early-abandon".to_owned();
            let op = tokio::spawn(run_undoable(
                name.clone(),
                name.clone(),
                |gone| async move {
                    // Works until it is told its caller is gone, then reports success anyway
                    // (the hand-over must still not count as claimed).
                    while !gone() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Ok(1)
                },
                move |_| async move { flag.store(true, Ordering::Release) },
            ));
            while operations().get(&name).is_none() {
                tokio::task::yield_now().await;
            }
            settle(&name, false);
            let _ = op.await;
            drop(acquire(&name).await);
        });
        assert!(undone.load(Ordering::Acquire));
    }
}

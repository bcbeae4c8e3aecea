//! Per-object operation locks.
//!
//! Operations on one container (start, stop, remove) are serialised so they cannot interleave,
//! while different users' containers never wait on each other: there is no global lock, only a
//! map lookup held for microseconds. Entries are weak and are pruned as locks are dropped.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

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

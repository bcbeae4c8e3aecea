//! Containers a failed or cancelled start could not remove because the engine did not answer
//! (it was restarting, stopped or unreachable): removed as soon as it answers again.
//!
//! A start that fails half-way removes what it created; when the engine is down, that removal
//! fails too, and the hub, which saw the start fail, no longer knows about the container. It
//! would stay until that server's next start. So its id is kept here, and the state cache's
//! watcher, which notices first when the engine answers again (its listing succeeds), has them
//! removed, each under its name's lock, unless a start has taken the container over since.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::{locks, Engine};
use crate::log;

/// The containers left behind, by id (ids are never reused), with their names.
#[derive(Default)]
pub struct Leftovers {
    by_id: Mutex<HashMap<String, String>>,
    /// Whether a removal round is under way (one at a time).
    reaping: AtomicBool,
}

impl Leftovers {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // A poisoned map only means another thread panicked while holding it; it is still valid.
        self.by_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether container `id` is waiting for removal.
    pub fn contains(&self, id: &str) -> bool {
        self.map().contains_key(id)
    }

    /// Whether none does.
    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }
}

impl Engine {
    /// Container `id` (named `name`), made by a start that failed or was cancelled, could not
    /// be removed: it is removed once the engine answers again.
    pub(crate) fn leave_for_later(&self, id: &str, name: &str) {
        self.leftovers()
            .map()
            .insert(id.to_owned(), name.to_owned());
        log::warn(&format!(
            "container '{name}' ({}) is removed as soon as the engine answers again",
            &id[..id.len().min(12)]
        ));
    }

    /// A start has the container `id` now (it found it and uses it): not to be removed.
    pub(crate) fn taken_over(&self, id: &str) {
        self.leftovers().map().remove(id);
    }

    /// Removes the containers left behind, in a task of its own (the watcher calls this each
    /// time the engine answers a listing). Each removal holds its name's lock, the one starts and
    /// stops take, and skips a container a start has taken over meanwhile.
    pub(crate) fn remove_leftovers(&self) {
        let leftovers = self.leftovers().clone();
        if leftovers.is_empty() || leftovers.reaping.swap(true, Ordering::AcqRel) {
            return;
        }
        let engine = self.clone();
        tokio::spawn(async move {
            let pending: Vec<(String, String)> = leftovers
                .map()
                .iter()
                .map(|(id, name)| (id.clone(), name.clone()))
                .collect();
            for (id, name) in pending {
                let _guard = locks::acquire(&name).await;
                if !leftovers.contains(&id) {
                    continue;
                }
                match engine.remove_container(&id, true).await {
                    Ok(()) => {
                        leftovers.map().remove(&id);
                        log::info(&format!(
                            "removed container '{name}', left behind by a start that failed while the engine was away"
                        ));
                    }
                    // Still away: the next listing tries again.
                    Err(e) => log::debug(&format!("container '{name}' left behind: {e}")),
                }
            }
            leftovers.reaping.store(false, Ordering::Release);
        });
    }
}

impl Engine {
    fn leftovers(&self) -> &Arc<Leftovers> {
        &self.leftovers
    }
}

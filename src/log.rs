//! The core's log lines, in the hub's log.
//!
//! Some failures are not the caller's to handle: the clean-up after a start that failed or was
//! cancelled, the events cache losing its stream. They used to be dropped; now they are written
//! to a Python `logging.Logger` that the spawner registers once with `set_logger`. With no logger
//! registered nothing is written, and Python is not touched at all.
//!
//! Messages name the action and the object, and never carry secrets (environment values,
//! tokens): they end up in log files other people read.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use pyo3::prelude::*;

use crate::errors::{CoreError, CoreResult};

/// `logging.DEBUG`.
pub const DEBUG: i32 = 10;
/// `logging.INFO`.
pub const INFO: i32 = 20;
/// `logging.WARNING`.
pub const WARNING: i32 = 30;

/// The registered logger. Taken only briefly, with the thread attached to Python, to swap or
/// clone the reference; the logger itself is called after the lock is released, so a handler
/// that logs again, or a logger's `__del__`, cannot deadlock on it.
static SINK: Mutex<Option<Py<PyAny>>> = Mutex::new(None);
/// Whether a logger is registered: lets `emit` return without attaching to Python when not.
static HAS_SINK: AtomicBool = AtomicBool::new(false);

/// Registers the logger the core writes to: any object with a `log(level: int, msg: str)`
/// method, normally the spawner's `logging.Logger`. `None` unregisters it. Process-wide: the
/// last registration wins.
#[pyfunction]
#[pyo3(signature = (logger))]
pub fn set_logger(logger: Option<Bound<'_, PyAny>>) -> CoreResult<()> {
    if let Some(logger) = &logger {
        let callable = logger
            .getattr("log")
            .is_ok_and(|method| method.is_callable());
        if !callable {
            let shown = logger
                .repr()
                .map_or_else(|_| "the object".to_owned(), |r| r.to_string());
            return Err(CoreError::InvalidSpec(format!(
                "set_logger({shown}) is not allowed: give a logging.Logger, or an object with a log(level, msg) method"
            )));
        }
    }
    let new = logger.map(Bound::unbind);
    let old = {
        let mut sink = SINK.lock().unwrap_or_else(PoisonError::into_inner);
        HAS_SINK.store(new.is_some(), Ordering::Release);
        std::mem::replace(&mut *sink, new)
    };
    // Released outside the lock: dropping the last reference may run Python code.
    drop(old);
    Ok(())
}

/// Writes `message` at `level` to the registered logger, if any. A failure of the logger itself
/// is ignored (logging must never turn a clean-up into an error), and so is a call made while
/// the interpreter shuts down.
pub fn emit(level: i32, message: &str) {
    if !HAS_SINK.load(Ordering::Acquire) {
        return;
    }
    // `try_attach`, not `attach`: a tokio thread logging during interpreter shutdown must give
    // up instead of blocking forever on an interpreter that is going away.
    let _ = Python::try_attach(|py| {
        let sink = SINK
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|sink| sink.clone_ref(py));
        if let Some(sink) = sink {
            // Best effort: a broken handler is Python's logging's business, not ours.
            let _ = sink.call_method1(py, "log", (level, message));
        }
    });
}

/// Logs at `WARNING`: something failed and was left for the operator to look at.
pub fn warn(message: &str) {
    emit(WARNING, message);
}

/// Logs at `INFO`: something worth knowing happened (a resync, an undone start).
pub fn info(message: &str) {
    emit(INFO, message);
}

/// Logs at `DEBUG`.
pub fn debug(message: &str) {
    emit(DEBUG, message);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test, because the logger is process-wide: tests running in parallel would race.
    #[test]
    fn logs_reach_the_registered_logger_and_nothing_else_happens() {
        // No logger and no interpreter yet: logging must not touch Python at all.
        assert!(!HAS_SINK.load(Ordering::Acquire));
        warn("after a failed start of container 'jupyter-alice': boom");

        Python::initialize();
        Python::attach(|py| {
            let code = c"
class Recorder:
    def __init__(self): self.lines = []
    def log(self, level, msg): self.lines.append((level, msg))
class Broken:
    def log(self, level, msg): raise RuntimeError('broken handler')
";
            let ns = pyo3::types::PyDict::new(py);
            py.run(code, Some(&ns), None).unwrap();
            let make = |name: &str| ns.get_item(name).unwrap().unwrap().call0().unwrap();
            let recorder = make("Recorder");
            set_logger(Some(recorder.clone())).unwrap();
            warn("w");
            info("i");
            // From a thread of its own, as tokio's workers log.
            py.detach(|| std::thread::spawn(|| debug("d")).join().unwrap());
            let lines: Vec<(i32, String)> = recorder.getattr("lines").unwrap().extract().unwrap();
            assert_eq!(
                lines,
                vec![
                    (WARNING, "w".to_owned()),
                    (INFO, "i".to_owned()),
                    (DEBUG, "d".to_owned())
                ]
            );
            // A logger that raises is ignored, and leaves no exception set.
            set_logger(Some(make("Broken"))).unwrap();
            warn("ignored");
            assert!(!PyErr::occurred(py));
            // Something without a log method is refused, naming it.
            let five = pyo3::types::PyInt::new(py, 5).into_any();
            let err = set_logger(Some(five)).unwrap_err();
            assert!(
                err.to_string().starts_with("set_logger(5) is not allowed"),
                "{err}"
            );
            set_logger(None).unwrap();
            assert!(!HAS_SINK.load(Ordering::Acquire));
            warn("nowhere");
        });
    }
}

//! One error type for the whole core, and the single place where it becomes a Python exception.
//!
//! Messages say what was being done, to what, and what the engine said, e.g.
//! `create container 'jupyter-alice': Docker responded with status code 409: Conflict ...`,
//! because the operator reads them in the hub's log with nothing else to go on.

use std::fmt;

use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::{create_exception, PyErr};

create_exception!(
    rustdocker._core,
    RustDockerError,
    PyException,
    "Base class of every error raised by rustdocker's Docker layer."
);
create_exception!(
    rustdocker._core,
    DockerConnectionError,
    RustDockerError,
    "The Docker engine could not be reached (socket missing, refused, TLS failure, timeout)."
);
create_exception!(
    rustdocker._core,
    DockerApiError,
    RustDockerError,
    "The Docker engine answered a request with an error status (`status_code` attribute)."
);
create_exception!(
    rustdocker._core,
    NotFoundError,
    DockerApiError,
    "The engine answered 404: the container, image or volume does not exist."
);
create_exception!(
    rustdocker._core,
    ConflictError,
    DockerApiError,
    "The engine answered 409: e.g. a name already in use or a removal already in progress."
);

/// Everything that can go wrong in the core.
#[derive(Debug)]
pub enum CoreError {
    /// The engine could not be reached at all.
    Connection {
        /// The Docker host we tried (`unix:///var/run/docker.sock`, `tcp://...`).
        host: String,
        /// What failed.
        message: String,
    },
    /// The engine answered with an error status.
    Api {
        /// The verb and object, e.g. `create container 'jupyter-alice'`.
        action: String,
        /// The HTTP status the engine returned.
        status: u16,
        /// The engine's own message.
        message: String,
    },
    /// Any other failure of a request (bad JSON from the engine, stream error, ...).
    Request {
        /// The verb and object.
        action: String,
        /// What failed.
        message: String,
    },
    /// The spec handed over by Python is invalid: names the field, the value and what is allowed.
    /// Only for bad configuration or arguments; it becomes a `ValueError`.
    InvalidSpec(String),
    /// The engine answered, but what it holds does not allow the operation (a container not on
    /// the configured network, an image without a command to append `args` to).
    State {
        /// The verb and object.
        action: String,
        /// What is wrong, and what would fix it.
        message: String,
    },
    /// A bug in the core (a panic caught at the Python boundary): the whole message, naming
    /// the operation and asking for a report.
    Internal(String),
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::Connection { host, message } => {
                write!(f, "cannot reach the Docker engine at {host}: {message}")
            }
            CoreError::Api {
                action,
                status,
                message,
            } => write!(
                f,
                "{action}: Docker responded with status code {status}: {message}"
            ),
            CoreError::Request { action, message } | CoreError::State { action, message } => {
                write!(f, "{action}: {message}")
            }
            CoreError::InvalidSpec(message) | CoreError::Internal(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for CoreError {}

impl CoreError {
    /// Classifies a bollard error raised while doing `action` against the engine at `host`.
    pub fn from_bollard(
        action: impl Into<String>,
        host: &str,
        err: bollard::errors::Error,
    ) -> Self {
        use bollard::errors::Error as E;
        let action = action.into();
        match err {
            E::DockerResponseServerError {
                status_code,
                message,
            } => CoreError::Api {
                action,
                status: status_code,
                message,
            },
            // Transport-level failures: the engine is not there, refused us, or hung.
            E::IOError { .. }
            | E::HyperLegacyError { .. }
            | E::HttpClientError { .. }
            | E::HyperResponseError { .. }
            | E::SocketNotFoundError(_)
            | E::RequestTimeoutError
            | E::UnsupportedURISchemeError { .. }
            | E::CertPathError { .. }
            | E::CertParseError { .. }
            | E::CertMultipleKeys { .. }
            | E::NoNativeCertsError { .. }
            | E::LoadNativeCertsErrors { .. } => CoreError::Connection {
                host: host.to_owned(),
                message: format!("{action}: {}", error_chain(&err)),
            },
            other => CoreError::Request {
                action,
                message: error_chain(&other),
            },
        }
    }

    /// A bug found while doing `what`, e.g. a panic caught before it reached Python.
    #[must_use]
    pub fn internal(what: &str, message: &str) -> Self {
        CoreError::Internal(format!(
            "internal error in {what}: {message}; please report it"
        ))
    }

    /// A panic caught while doing `what` (its payload from `catch_unwind`), as an error.
    #[must_use]
    pub fn from_panic(what: &str, payload: &(dyn std::any::Any + Send)) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("a panic without a message");
        CoreError::internal(what, message)
    }

    /// The same error with `f` applied to the text it carries (what the engine said, or the
    /// whole message), e.g. to redact secrets.
    #[must_use]
    pub fn map_message(self, f: impl Fn(String) -> String) -> Self {
        match self {
            CoreError::Connection { host, message } => CoreError::Connection {
                host,
                message: f(message),
            },
            CoreError::Api {
                action,
                status,
                message,
            } => CoreError::Api {
                action,
                status,
                message: f(message),
            },
            CoreError::Request { action, message } => CoreError::Request {
                action,
                message: f(message),
            },
            CoreError::State { action, message } => CoreError::State {
                action,
                message: f(message),
            },
            CoreError::InvalidSpec(message) => CoreError::InvalidSpec(f(message)),
            CoreError::Internal(message) => CoreError::Internal(f(message)),
        }
    }

    /// The HTTP status of an API error, if this is one.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            CoreError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// What went wrong, without the action (the engine's or registry's own words where it
    /// gave them).
    #[must_use]
    pub fn message(&self) -> &str {
        match self {
            CoreError::Connection { message, .. }
            | CoreError::Api { message, .. }
            | CoreError::Request { message, .. }
            | CoreError::State { message, .. }
            | CoreError::InvalidSpec(message)
            | CoreError::Internal(message) => message,
        }
    }

    /// True for a 404 from the engine.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

/// Joins an error with its sources, so "connection refused" from deep in hyper is not lost.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = inner.source();
    }
    out
}

/// The one conversion point from core errors to Python exceptions.
impl From<CoreError> for PyErr {
    fn from(err: CoreError) -> PyErr {
        let message = err.to_string();
        match &err {
            CoreError::Connection { .. } => DockerConnectionError::new_err(message),
            CoreError::InvalidSpec(_) => PyValueError::new_err(message),
            CoreError::Request { .. } | CoreError::State { .. } | CoreError::Internal(_) => {
                RustDockerError::new_err(message)
            }
            CoreError::Api { status, .. } => {
                let status = *status;
                let pyerr = match status {
                    404 => NotFoundError::new_err(message),
                    409 => ConflictError::new_err(message),
                    _ => DockerApiError::new_err(message),
                };
                Python::attach(|py| {
                    // Best effort: the message already carries the status for anyone reading it.
                    let _ = pyerr.value(py).setattr("status_code", status);
                });
                pyerr
            }
        }
    }
}

/// Result alias for the core.
pub type CoreResult<T> = Result<T, CoreError>;

impl From<crate::template::TemplateError> for CoreError {
    fn from(err: crate::template::TemplateError) -> Self {
        CoreError::InvalidSpec(err.to_string())
    }
}

impl From<crate::memory::MemoryError> for CoreError {
    fn from(err: crate::memory::MemoryError) -> Self {
        CoreError::InvalidSpec(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_internal_errors_naming_the_operation() {
        let payload = std::panic::catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
        let err = CoreError::from_panic("DockerClient.start_server", payload.as_ref());
        assert!(matches!(err, CoreError::Internal(_)));
        assert_eq!(
            err.to_string(),
            "internal error in DockerClient.start_server: boom 1; please report it"
        );
        let payload = std::panic::catch_unwind(|| panic!("static")).unwrap_err();
        let err = CoreError::from_panic("escape", payload.as_ref());
        assert_eq!(
            err.to_string(),
            "internal error in escape: static; please report it"
        );
    }

    #[test]
    fn state_errors_name_the_action() {
        let err = CoreError::State {
            action: "find the address of container 'jupyter-alice'".to_owned(),
            message: "it has no IP address on Docker network 'jhub'".to_owned(),
        };
        assert_eq!(
            err.to_string(),
            "find the address of container 'jupyter-alice': it has no IP address on Docker network 'jhub'"
        );
        assert_eq!(err.status(), None);
    }
}

//! Every Docker Engine API call rustdocker makes, on one shared, version-negotiated bollard client.

pub mod cache;
pub mod containers;
pub mod exec;
pub mod images;
pub mod leftovers;
pub mod locks;
pub mod progress;
pub mod services;
pub mod volumes;

use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;

use crate::errors::{CoreError, CoreResult};

/// The label on every container and volume rustdocker creates (set by the Python layer); the
/// state cache follows exactly the containers carrying it.
pub const MANAGED_LABEL: &str = "org.rustdocker.managed-by";
/// Its value.
pub const MANAGED_VALUE: &str = "rustdocker";
/// Label with the hub (`hub_id`) an object was made by.
pub const HUB_LABEL: &str = "org.rustdocker.hub";
/// Label with the user a container was made for.
pub const USER_LABEL: &str = "org.rustdocker.user";
/// Label with the server a container was made for.
pub const SERVER_LABEL: &str = "org.rustdocker.server";
/// Label on a named volume saying whose it is: `server` (that one server's own), `user` (shared
/// by the user's servers) or `shared` (by several users). Only `server` and `user` volumes are
/// ever removed, when the server or user is deleted and the operator asked (`remove_on_delete`).
pub const SCOPE_LABEL: &str = "org.rustdocker.scope";
/// Label on a named volume made by a SwarmSpawner start, which records in the server's state
/// the node its task ran on (`place_on_volume_node`). A user's volume on the hub's engine
/// without it was made before nodes were recorded (by DockerSpawner, or a container spawner):
/// the user's files are there, so a start with no record is held to the hub's node.
pub const NODE_RECORDED_LABEL: &str = "org.rustdocker.node-recorded";

/// The engine bollard talks to when neither the settings nor `DOCKER_HOST` name one.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// The longest request timeout (`docker_timeout`) accepted, in seconds: one day. Longer is no
/// timeout in practice, and far larger values overflow a `Duration`.
pub const MAX_DOCKER_TIMEOUT_SECS: u64 = 86_400;

/// `docker_timeout` (seconds) as the client's request timeout. The client counts whole seconds,
/// so a fraction is rounded up; below 1 s it would count 0, and every request would time out at
/// once, so those values are refused, as are NaN, infinities and values above
/// `MAX_DOCKER_TIMEOUT_SECS`.
pub fn client_timeout(seconds: f64) -> CoreResult<Duration> {
    #[allow(clippy::cast_precision_loss)]
    let max = MAX_DOCKER_TIMEOUT_SECS as f64;
    let refused = || {
        CoreError::InvalidSpec(format!(
            "DockerSpawner.docker_timeout = {seconds} is not allowed: use a number of seconds from 1 to {MAX_DOCKER_TIMEOUT_SECS}"
        ))
    };
    if !(1.0..=max).contains(&seconds) {
        return Err(refused());
    }
    Duration::try_from_secs_f64(seconds.ceil()).map_err(|_| refused())
}

/// Client certificate files for a TLS engine (`dockerd --tlsverify`).
#[derive(Debug)]
pub struct TlsFiles {
    /// CA certificate that signed the engine's certificate.
    pub ca: std::path::PathBuf,
    /// Client certificate.
    pub cert: std::path::PathBuf,
    /// Client key.
    pub key: std::path::PathBuf,
}

/// A connected engine: a cheap-to-clone handle shared by every spawner of a hub process.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    host: String,
    cache: Arc<cache::StateCache>,
    leftovers: Arc<leftovers::Leftovers>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// The Docker host to use: `host` if given, else `DOCKER_HOST`, else the local socket; an
/// `https://` URL (docker-py's spelling of a TLS host) becomes `tcp://`. The one place that
/// reads `DOCKER_HOST`.
#[must_use]
pub fn resolve_host(host: Option<String>) -> String {
    let host = host
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_owned());
    match host.strip_prefix("https://") {
        Some(rest) => format!("tcp://{rest}"),
        None => host,
    }
}

/// The engine's own hostname for a `tcp://` (or `http(s)://`) Docker host, else loopback.
#[must_use]
pub fn engine_hostname(host: &str) -> String {
    let rest = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))
        .or_else(|| host.strip_prefix("https://"));
    match rest {
        Some(rest) => {
            let authority = rest.split('/').next().unwrap_or(rest);
            if let Some(bracketed) = authority.strip_prefix('[') {
                bracketed.split(']').next().unwrap_or(bracketed).to_owned()
            } else {
                authority.split(':').next().unwrap_or(authority).to_owned()
            }
        }
        None => "127.0.0.1".to_owned(),
    }
}

impl Engine {
    /// Connects to `host` (or `DOCKER_HOST`, or the local socket) and negotiates the API version,
    /// so an older engine (20.10 speaks 1.41) and current ones both work.
    pub async fn connect(
        host: Option<String>,
        timeout: Duration,
        tls: Option<TlsFiles>,
    ) -> CoreResult<Self> {
        let host = resolve_host(host);
        let docker = match &tls {
            Some(files) => {
                if !(host.starts_with("tcp://") || host.starts_with("https://")) {
                    return Err(CoreError::InvalidSpec(format!(
                        "TLS is configured but the Docker host '{host}' is not a tcp:// address"
                    )));
                }
                Docker::connect_with_ssl(
                    &host,
                    &files.key,
                    &files.cert,
                    &files.ca,
                    timeout.as_secs().max(1),
                    bollard::API_DEFAULT_VERSION,
                )
            }
            // Plain connections; DOCKER_TLS_VERIFY is resolved by the Python layer into `tls`,
            // so bollard's own reading of it is bypassed for tcp:// hosts.
            None if host.starts_with("tcp://") => Docker::connect_with_http(
                &host,
                timeout.as_secs().max(1),
                bollard::API_DEFAULT_VERSION,
            ),
            None => Docker::connect_with_host(&host),
        }
        .map_err(|e| CoreError::from_bollard("connect", &host, e))?
        .with_timeout(timeout);
        let docker =
            crate::metrics::timed(crate::metrics::Verb::Version, docker.negotiate_version())
                .await
                .map_err(|e| CoreError::from_bollard("negotiate the API version", &host, e))
                .map_err(|e| match e {
                    CoreError::Connection { .. } => e,
                    other => CoreError::Connection {
                        host: host.clone(),
                        message: other.to_string(),
                    },
                })?;
        let engine = Engine {
            docker,
            host,
            cache: Arc::default(),
            leftovers: Arc::default(),
        };
        engine.start_cache();
        Ok(engine)
    }

    /// The Docker host this engine was reached at.
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The negotiated API version, e.g. `1.41`.
    #[must_use]
    pub fn api_version(&self) -> String {
        let v = self.docker.client_version();
        format!("{}.{}", v.major_version, v.minor_version)
    }

    /// The hostname to connect to when the engine publishes on all interfaces: the engine's host
    /// for `tcp://`, loopback for a local socket.
    #[must_use]
    pub fn connect_hostname(&self) -> String {
        engine_hostname(&self.host)
    }

    /// The address to connect to for a port published on `host_ip`: `host_ip` itself, or the
    /// engine's host when it is empty or "all interfaces" (`0.0.0.0`, `::`).
    #[must_use]
    pub fn reachable_ip(&self, host_ip: &str) -> String {
        if matches!(host_ip, "" | "0.0.0.0" | "::" | "[::]") {
            self.connect_hostname()
        } else {
            host_ip.to_owned()
        }
    }

    pub(crate) fn docker(&self) -> &Docker {
        &self.docker
    }

    pub(crate) fn err(&self, action: impl Into<String>, e: bollard::errors::Error) -> CoreError {
        CoreError::from_bollard(action, &self.host, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_timeout_range() {
        assert_eq!(client_timeout(1.0).unwrap(), Duration::from_secs(1));
        assert_eq!(client_timeout(120.0).unwrap(), Duration::from_secs(120));
        // The client counts whole seconds: a fraction is rounded up, never down to less.
        assert_eq!(client_timeout(1.2).unwrap(), Duration::from_secs(2));
        assert_eq!(
            client_timeout(86_400.0).unwrap(),
            Duration::from_secs(MAX_DOCKER_TIMEOUT_SECS)
        );
        for bad in [0.5, 0.0, -1.0, 86_400.5, 1e20, f64::NAN, f64::INFINITY] {
            let err = client_timeout(bad).unwrap_err();
            assert!(matches!(err, CoreError::InvalidSpec(_)), "{bad}");
            assert!(
                err.to_string().contains("docker_timeout")
                    && err.to_string().contains("from 1 to 86400"),
                "{err}"
            );
        }
        assert_eq!(
            client_timeout(0.5).unwrap_err().to_string(),
            "DockerSpawner.docker_timeout = 0.5 is not allowed: use a number of seconds from 1 to 86400"
        );
    }
}

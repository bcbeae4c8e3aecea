//! The container lifecycle: start (find, create, start, address), stop, remove, poll.
//!
//! `start_server` is safe to drop at any point (JupyterHub cancels `start()` on `start_timeout`):
//! the steps run in their own task that holds the container's operation lock and checks between
//! steps whether its caller is still there. When the caller has gone, the task undoes what it did
//! before releasing the lock, so a cancelled start leaves no container behind and nothing else
//! touches the container until the undo has finished.

use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum};
use bollard::query_parameters::{
    CreateContainerOptions, LogsOptions, RemoveContainerOptions, StopContainerOptions,
};
use futures_util::StreamExt;
use serde::Serialize;

use super::{locks, Engine, SERVER_LABEL, USER_LABEL};
use crate::errors::{CoreError, CoreResult};
use crate::spec::{ContainerSpec, PullPolicy};

/// What `start_server` did, returned to Python as a dict.
#[derive(Debug, Clone, Serialize)]
pub struct StartOutcome {
    /// Container id.
    pub id: String,
    /// Container name.
    pub name: String,
    /// True when this call created the container, false when it re-used an existing one.
    pub created: bool,
    /// The API token found in a re-used container's environment (DockerSpawner re-uses it).
    pub api_token: Option<String>,
    /// Address the hub connects to.
    pub ip: String,
    /// Port the hub connects to.
    pub port: u16,
    /// Whether the container was already running before this call.
    #[serde(skip)]
    pub was_running: bool,
}

/// A container's state, for `poll` and the tests.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ContainerStatus {
    /// Container id.
    pub id: String,
    /// Whether it is running (or paused: the server is still there).
    pub running: bool,
    /// Exit code once stopped.
    pub exit_code: i64,
    /// Docker's status word (`running`, `exited`, `created`, ...).
    pub status: String,
}

/// What decides where a server is reached.
#[derive(Debug, Clone)]
pub struct AddressParams {
    /// Container name or id.
    pub name: String,
    /// The server's port inside the container.
    pub port: u16,
    /// `network_name`.
    pub network_name: String,
    /// `use_internal_ip`.
    pub use_internal_ip: bool,
    /// `host_ip`.
    pub host_ip: String,
}

impl From<&ContainerSpec> for AddressParams {
    fn from(spec: &ContainerSpec) -> Self {
        AddressParams {
            name: spec.name.clone(),
            port: spec.port,
            network_name: spec.network_name.clone(),
            use_internal_ip: spec.use_internal_ip,
            host_ip: spec.host_ip.clone(),
        }
    }
}

fn status_of(inspect: &ContainerInspectResponse) -> ContainerStatus {
    let state = inspect.state.as_ref();
    let running = state.and_then(|s| s.running).unwrap_or(false);
    ContainerStatus {
        id: inspect.id.clone().unwrap_or_default(),
        running,
        exit_code: state.and_then(|s| s.exit_code).unwrap_or(0),
        status: state
            .and_then(|s| s.status)
            .map(|s: ContainerStateStatusEnum| s.to_string())
            .unwrap_or_default(),
    }
}

impl Engine {
    /// Inspects a container by name or id; `None` when it does not exist.
    pub async fn inspect_container(
        &self,
        name: &str,
    ) -> CoreResult<Option<ContainerInspectResponse>> {
        match self.docker().inspect_container(name, None).await {
            Ok(c) => Ok(Some(c)),
            Err(e) => {
                let err = self.err(format!("inspect container '{name}'"), e);
                if err.is_not_found() {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// The state of a container, `None` when it does not exist.
    pub async fn container_status(&self, name: &str) -> CoreResult<Option<ContainerStatus>> {
        let inspect = self.inspect_container(name).await?;
        if let Some(found) = &inspect {
            self.cache().record_inspect(found);
        }
        Ok(inspect.as_ref().map(status_of))
    }

    /// Starts the user's server container and returns where to reach it. Safe to drop.
    pub async fn start_server(&self, spec: ContainerSpec) -> CoreResult<StartOutcome> {
        let (engine, undoer) = (self.clone(), self.clone());
        locks::run_undoable(
            spec.name.clone(),
            move |caller_gone| async move { engine.start_steps(&spec, || caller_gone()).await },
            move |outcome| async move { undoer.undo_start(&outcome).await },
        )
        .await
    }

    async fn start_steps(
        &self,
        spec: &ContainerSpec,
        cancelled_by_caller: impl Fn() -> bool,
    ) -> CoreResult<StartOutcome> {
        let cancelled = || CoreError::Request {
            action: format!("start container '{}'", spec.name),
            message: "cancelled".to_owned(),
        };
        if cancelled_by_caller() {
            return Err(cancelled());
        }
        if spec.pull_policy == PullPolicy::Always {
            self.pull_image(&spec.image).await?;
        }
        if cancelled_by_caller() {
            return Err(cancelled());
        }
        let (id, created, api_token, was_running) = match self.create_or_find(spec).await? {
            Found::Created(id) => (id, true, None, false),
            Found::Existing(found) => {
                let api_token = found
                    .config
                    .as_ref()
                    .and_then(|c| c.env.as_ref())
                    .and_then(|env| find_api_token(env));
                let status = status_of(&found);
                (status.id, false, api_token, status.running)
            }
        };
        let outcome = async {
            if cancelled_by_caller() {
                return Err(cancelled());
            }
            self.start_container(&id, &spec.name).await?;
            let inspect = self
                .inspect_container(&id)
                .await?
                .ok_or_else(|| CoreError::Api {
                    action: format!("inspect container '{}'", spec.name),
                    status: 404,
                    message: "the container disappeared right after it was started".to_owned(),
                })?;
            // The cache learns of the start now, not only when the event arrives.
            self.cache().record_inspect(&inspect);
            let (ip, port) = self.server_address(&AddressParams::from(spec), inspect)?;
            Ok(StartOutcome {
                id: id.clone(),
                name: spec.name.clone(),
                created,
                api_token,
                ip,
                port,
                was_running,
            })
        }
        .await;
        match outcome {
            Ok(outcome) => Ok(outcome),
            Err(err) if created => {
                // Leave nothing half-done: remove what this call created, keeping its last log
                // lines in the error because they are usually the explanation.
                let logs = self.tail_logs(&id, 20).await;
                let _ = self.remove_container(&id, true).await;
                Err(with_logs(err, &spec.name, &logs))
            }
            Err(err) => Err(err),
        }
    }

    /// Creates the container, or finds the one already there. The common case (no container
    /// yet, image present) is a single create call: a name conflict or a missing image is
    /// learnt from the create's answer instead of from inspects before every spawn.
    async fn create_or_find(&self, spec: &ContainerSpec) -> CoreResult<Found> {
        let mut pulled = spec.pull_policy == PullPolicy::Always;
        // Bounded: a conflict can recur only if something else keeps recreating the name.
        for _ in 0..4 {
            match self.create_container(spec).await {
                Ok(id) => return Ok(Found::Created(id)),
                Err(err) if err.status() == Some(409) => {
                    match self.inspect_container(&spec.name).await? {
                        Some(found) if !spec.remove => {
                            check_same_server(spec, &found)?;
                            return Ok(Found::Existing(Box::new(found)));
                        }
                        // A leftover of an earlier run that should have been cleaned up.
                        Some(_) => self.remove_container(&spec.name, true).await?,
                        None => {}
                    }
                }
                Err(err) if is_missing_image(&err) && !pulled => match spec.pull_policy {
                    PullPolicy::Ifnotpresent => {
                        self.pull_image(&spec.image).await?;
                        pulled = true;
                    }
                    PullPolicy::Never | PullPolicy::Skip | PullPolicy::Always => {
                        return Err(CoreError::Api {
                            action: format!("find image '{}'", spec.image),
                            status: 404,
                            message: format!(
                                "no such image on the Docker host and pull_policy is '{}': pull or build '{}' there, or set pull_policy to 'ifnotpresent'",
                                spec.pull_policy.name(),
                                spec.image
                            ),
                        });
                    }
                },
                Err(err) => return Err(err),
            }
        }
        Err(CoreError::Api {
            action: format!("create container '{}'", spec.name),
            status: 409,
            message: "the name stays in use: another process keeps creating a container with it"
                .to_owned(),
        })
    }

    /// Reverts a start whose caller went away.
    async fn undo_start(&self, outcome: &StartOutcome) {
        if outcome.created {
            let _ = self.remove_container(&outcome.id, true).await;
        } else if !outcome.was_running {
            let _ = self.stop_container(&outcome.id, None).await;
        }
    }

    /// Waits until no operation holds the lock of container `name`.
    pub async fn wait_idle(&self, name: &str) {
        drop(locks::acquire(name).await);
    }

    /// The command to run: `cmd` (else the image's own CMD) followed by `args`; `None` leaves the
    /// image's CMD to the engine when there is nothing to append.
    pub(crate) async fn resolve_command(
        &self,
        spec: &ContainerSpec,
    ) -> CoreResult<Option<Vec<String>>> {
        match (&spec.cmd, spec.args.is_empty()) {
            (Some(cmd), _) => Ok(Some(cmd.iter().chain(spec.args.iter()).cloned().collect())),
            (None, true) => Ok(None),
            (None, false) => {
                let Some(image_cmd) = self.image_cmd(&spec.image).await? else {
                    return Err(CoreError::InvalidSpec(format!(
                        "image '{}' has no CMD, so the args {:?} have nothing to be appended to: set cmd",
                        spec.image, spec.args
                    )));
                };
                Ok(Some(
                    image_cmd
                        .into_iter()
                        .chain(spec.args.iter().cloned())
                        .collect(),
                ))
            }
        }
    }

    async fn create_container(&self, spec: &ContainerSpec) -> CoreResult<String> {
        let command = self.resolve_command(spec).await?;
        let body = spec.create_body(command)?;
        self.ensure_volumes(&spec.named_volumes(), &spec.volume_labels)
            .await?;
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        let created = self
            .docker()
            .create_container(Some(options), body)
            .await
            .map_err(|e| self.err(format!("create container '{}'", spec.name), e))?;
        Ok(created.id)
    }

    async fn start_container(&self, id: &str, name: &str) -> CoreResult<()> {
        match self.docker().start_container(id, None).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let err = self.err(format!("start container '{name}'"), e);
                // 304: already running, which is what we wanted.
                if err.status() == Some(304) {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Where the hub reaches the server, following `use_internal_ip` and the network mode.
    fn server_address(
        &self,
        spec: &AddressParams,
        inspect: ContainerInspectResponse,
    ) -> CoreResult<(String, u16)> {
        let status = status_of(&inspect);
        if !status.running {
            return Err(CoreError::Request {
                action: format!("start container '{}'", spec.name),
                message: format!(
                    "the container exited right after it was started (status {}, exit code {})",
                    status.status, status.exit_code
                ),
            });
        }
        let network_mode = inspect
            .host_config
            .as_ref()
            .and_then(|h| h.network_mode.clone())
            .unwrap_or_default();
        if network_mode == "host" {
            return Ok((self.reachable_ip(&spec.host_ip), spec.port));
        }
        let settings = inspect.network_settings.unwrap_or_default();
        if spec.use_internal_ip {
            let networks = settings.networks.unwrap_or_default();
            let net = if spec.network_name.is_empty() {
                networks.values().next()
            } else {
                networks.get(&spec.network_name)
            };
            let ip = net
                .and_then(|n| n.ip_address.clone())
                .filter(|ip| !ip.is_empty())
                .ok_or_else(|| {
                    CoreError::InvalidSpec(format!(
                        "container '{}' has no IP address on Docker network '{}' (it is on: {}): create the network with `docker network create {}` or check network_name",
                        spec.name,
                        spec.network_name,
                        networks.keys().cloned().collect::<Vec<_>>().join(", "),
                        spec.network_name
                    ))
                })?;
            return Ok((ip, spec.port));
        }
        let bindings = settings
            .ports
            .unwrap_or_default()
            .remove(&format!("{}/tcp", spec.port))
            .flatten()
            .unwrap_or_default();
        // Prefer an IPv4 binding: dual-stack engines list `::` too, which a hub may not reach.
        let binding = bindings
            .iter()
            .find(|b| b.host_ip.as_deref().is_some_and(|ip| !ip.contains(':')))
            .or_else(|| bindings.first())
            .ok_or_else(|| CoreError::Request {
                action: format!("find the published port of container '{}'", spec.name),
                message: format!("port {}/tcp is not published", spec.port),
            })?;
        let port = binding
            .host_port
            .as_deref()
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| CoreError::Request {
                action: format!("find the published port of container '{}'", spec.name),
                message: format!("the engine reported host port {:?}", binding.host_port),
            })?;
        Ok((
            self.reachable_ip(binding.host_ip.as_deref().unwrap_or_default()),
            port,
        ))
    }

    /// Where a running container's server is reached now (re-inspected, as after a hub restart
    /// whose stored URL may be stale); `None` when the container is missing or not running.
    pub async fn container_address(
        &self,
        params: &AddressParams,
    ) -> CoreResult<Option<(String, u16)>> {
        match self.inspect_container(&params.name).await? {
            Some(inspect) if status_of(&inspect).running => {
                self.server_address(params, inspect).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Stops a container; a missing or already stopped container is not an error.
    pub async fn stop_container(&self, name: &str, timeout: Option<i32>) -> CoreResult<()> {
        let options = timeout.map(|t| StopContainerOptions {
            t: Some(t),
            ..Default::default()
        });
        match self.docker().stop_container(name, options).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let err = self.err(format!("stop container '{name}'"), e);
                match err.status() {
                    Some(304 | 404) => Ok(()),
                    _ => Err(err),
                }
            }
        }
    }

    /// Removes a container. Named volumes are never removed, and neither are anonymous ones:
    /// users' data is only deleted when the operator asks.
    pub async fn remove_container(&self, name: &str, force: bool) -> CoreResult<()> {
        let options = RemoveContainerOptions {
            force,
            v: false,
            ..Default::default()
        };
        match self.docker().remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let err = self.err(format!("remove container '{name}'"), e);
                // 404: already gone. 409: a removal is already in progress.
                match err.status() {
                    Some(404 | 409) => Ok(()),
                    _ => Err(err),
                }
            }
        }
    }

    /// Stops (and, with `remove`, removes) the server, holding the container's lock.
    pub async fn stop_server(
        &self,
        name: &str,
        timeout: Option<i32>,
        remove: bool,
    ) -> CoreResult<()> {
        let _guard = locks::acquire(name).await;
        let result = async {
            self.stop_container(name, timeout).await?;
            if remove {
                self.remove_container(name, true).await?;
            }
            Ok(())
        }
        .await;
        // Whatever happened, the cached state may be out of date: the next poll inspects, and
        // the events that follow re-fill the entry.
        self.cache().forget(name);
        result
    }

    /// The last `lines` lines of a container's output, best effort.
    async fn tail_logs(&self, id: &str, lines: usize) -> String {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        };
        let mut stream = self.docker().logs(id, Some(options));
        let mut out = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            if out.len() > 8192 {
                break;
            }
        }
        out.trim_end().to_owned()
    }
}

fn with_logs(err: CoreError, name: &str, logs: &str) -> CoreError {
    if logs.is_empty() {
        return err;
    }
    let indented = logs.replace('\n', "\n    ");
    let suffix =
        format!("\n  (container '{name}' was removed; its last output was:\n    {indented})");
    match err {
        CoreError::Request { action, message } => CoreError::Request {
            action,
            message: message + &suffix,
        },
        CoreError::Api {
            action,
            status,
            message,
        } => CoreError::Api {
            action,
            status,
            message: message + &suffix,
        },
        other => other,
    }
}

/// What `create_or_find` found.
enum Found {
    Created(String),
    Existing(Box<ContainerInspectResponse>),
}

/// Refuses to resume a kept container that rustdocker made for another server: it would serve
/// that server's URL and OAuth client (after the hub renamed a server without telling us).
fn check_same_server(spec: &ContainerSpec, found: &ContainerInspectResponse) -> CoreResult<()> {
    let labels = found.config.as_ref().and_then(|c| c.labels.as_ref());
    for key in [SERVER_LABEL, USER_LABEL] {
        let theirs = labels.and_then(|l| l.get(key));
        let ours = spec.labels.get(key);
        if let (Some(theirs), Some(ours)) = (theirs, ours) {
            if theirs != ours {
                return Err(CoreError::Api {
                    action: format!("resume container '{}'", spec.name),
                    status: 409,
                    message: format!(
                        "it was created for {key}={theirs:?}, not {ours:?}; it serves that server's URL. Remove it (`docker rm {}`; its named volumes are kept) or set remove = True",
                        spec.name
                    ),
                });
            }
        }
    }
    Ok(())
}

/// A 404 that says the image is missing (and not, say, a network).
fn is_missing_image(err: &CoreError) -> bool {
    match err {
        CoreError::Api {
            status: 404,
            message,
            ..
        } => message.to_ascii_lowercase().contains("no such image"),
        _ => false,
    }
}

/// The hub's API token from a container's environment (`JUPYTERHUB_API_TOKEN`, or the legacy
/// `JPY_API_TOKEN`), whichever appears first.
#[must_use]
pub fn find_api_token(env: &[String]) -> Option<String> {
    env.iter().find_map(|entry| {
        entry
            .strip_prefix("JUPYTERHUB_API_TOKEN=")
            .or_else(|| entry.strip_prefix("JPY_API_TOKEN="))
            .map(str::to_owned)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_token_from_env() {
        let env = vec![
            "PATH=/bin".to_owned(),
            "JPY_API_TOKEN=old".to_owned(),
            "JUPYTERHUB_API_TOKEN=new".to_owned(),
        ];
        assert_eq!(find_api_token(&env).as_deref(), Some("old"));
        assert_eq!(find_api_token(&env[2..]).as_deref(), Some("new"));
        assert_eq!(find_api_token(&env[..1]), None);
    }
}

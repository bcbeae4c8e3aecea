//! The container lifecycle: start (find, create, start, address), stop, remove, poll.
//!
//! `start_server` is safe to drop at any point (JupyterHub cancels `start()` on `start_timeout`):
//! the steps run in their own task that holds the container's operation lock and checks between
//! steps whether its caller is still there. When the caller has gone, the task undoes what it did
//! before releasing the lock, so a cancelled start leaves no container behind and nothing else
//! touches the container until the undo has finished.

use std::time::{Duration, Instant};

use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummary, EndpointSettings,
    NetworkConnectRequest, PortSummaryTypeEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, LogsOptions, RemoveContainerOptions, StopContainerOptions,
};
use futures_util::StreamExt;
use serde_json::Map;

use super::progress::{self, Phase as Step, StartProgress};
use super::{locks, Engine, HUB_LABEL, MANAGED_LABEL, MANAGED_VALUE, SERVER_LABEL, USER_LABEL};
use crate::errors::{CoreError, CoreResult};
use crate::log;
use crate::metrics::{self, timed, Phase, Verb};
use crate::record::{normalise_image, ConfigRecord};
use crate::spec::{credentials_for, ConfigChange, ContainerSpec, PullPolicy};

/// What `start_server` did (the binding turns it into a `StartResult`).
#[derive(Debug, Clone)]
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
    /// Whether the container was already running before this call (an undo leaves it running).
    pub was_running: bool,
    /// What a kept container's comparison with the configuration found (see `ConfigCheck`).
    pub config: ConfigCheck,
}

/// What a start found comparing a kept container (`remove = False`) with the configuration.
#[derive(Debug, Clone, Default)]
pub struct ConfigCheck {
    /// The fields that changed since the container was made, by name (`Image`, `Env.FOO`,
    /// `HostConfig.Memory (added)`); never values.
    pub changed: Vec<String>,
    /// Whether the container was removed and made anew from the configuration.
    pub recreated: bool,
    /// What to log about it (None: nothing changed, or no container was kept).
    pub note: Option<String>,
}

/// A container's state, for `poll`: from an inspect or from the events cache.
#[derive(Debug, Clone)]
pub struct ContainerStatus {
    /// Container id.
    pub id: String,
    /// Whether it is running (or paused: the server is still there).
    pub running: bool,
    /// Exit code once stopped.
    pub exit_code: i64,
    /// Docker's status word (`running`, `exited`, `created`, ...).
    pub status: String,
    /// Who it was made for, when rustdocker made it (None: unlabelled, e.g. by DockerSpawner).
    pub owner: Option<Owner>,
    /// Where its server is reached, when known (an inspect or a listing since its last start).
    pub endpoints: Option<Endpoints>,
}

/// Where a container's server can be reached, as the engine last showed it (an inspect or a
/// listing): what `get_url` needs, so the events cache can answer it without an API call.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// `HostConfig.NetworkMode`.
    pub network_mode: String,
    /// `(network, IP address)` of every network it is on.
    pub networks: Vec<(String, String)>,
    /// `(container port, host IP, host port)` of every published TCP port.
    pub ports: Vec<(u16, String, String)>,
}

impl Endpoints {
    /// What an inspect shows.
    #[must_use]
    pub fn of_inspect(inspect: &ContainerInspectResponse) -> Self {
        let settings = inspect.network_settings.as_ref();
        let networks = network_ips(settings.and_then(|s| s.networks.as_ref()));
        let mut ports = Vec::new();
        for (key, bindings) in settings
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
        {
            let Some(port) = key.strip_suffix("/tcp").and_then(|p| p.parse::<u16>().ok()) else {
                continue;
            };
            for b in bindings.iter().flatten() {
                ports.push((
                    port,
                    b.host_ip.clone().unwrap_or_default(),
                    b.host_port.clone().unwrap_or_default(),
                ));
            }
        }
        Endpoints {
            network_mode: inspect
                .host_config
                .as_ref()
                .and_then(|h| h.network_mode.clone())
                .unwrap_or_default(),
            networks,
            ports,
        }
    }

    /// What a listing shows.
    #[must_use]
    pub fn of_summary(summary: &ContainerSummary) -> Self {
        let networks = network_ips(
            summary
                .network_settings
                .as_ref()
                .and_then(|s| s.networks.as_ref()),
        );
        let ports = summary
            .ports
            .iter()
            .flatten()
            .filter(|p| p.typ.is_none_or(|t| t == PortSummaryTypeEnum::TCP))
            .filter_map(|p| {
                Some((
                    p.private_port,
                    p.ip.clone().unwrap_or_default(),
                    p.public_port?.to_string(),
                ))
            })
            .collect();
        Endpoints {
            network_mode: summary
                .host_config
                .as_ref()
                .and_then(|h| h.network_mode.clone())
                .unwrap_or_default(),
            networks,
            ports,
        }
    }
}

/// `(network, IP address)` of a container's networks, sorted by network.
fn network_ips(
    networks: Option<&std::collections::HashMap<String, bollard::models::EndpointSettings>>,
) -> Vec<(String, String)> {
    let mut ips: Vec<(String, String)> = networks
        .into_iter()
        .flatten()
        .map(|(net, ep)| (net.clone(), ep.ip_address.clone().unwrap_or_default()))
        .collect();
    ips.sort();
    ips
}

/// Who an object was made for: the hub, user and server in its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// `org.rustdocker.hub`: the hub's `hub_id`.
    pub hub: String,
    /// `org.rustdocker.user`.
    pub user: String,
    /// `org.rustdocker.server` (empty for a user's default server).
    pub server: String,
}

impl Owner {
    /// The owner recorded by `label`, when rustdocker made the object (it carries the
    /// managed-by label); None for an unlabelled object.
    pub fn from_labels<'a>(label: impl Fn(&str) -> Option<&'a String>) -> Option<Owner> {
        if label(MANAGED_LABEL).map(String::as_str) != Some(MANAGED_VALUE) {
            return None;
        }
        let get = |key: &str| label(key).cloned().unwrap_or_default();
        Some(Owner {
            hub: get(HUB_LABEL),
            user: get(USER_LABEL),
            server: get(SERVER_LABEL),
        })
    }

    /// The owner in a container's inspect.
    pub fn of_inspect(inspect: &ContainerInspectResponse) -> Option<Owner> {
        let labels = inspect.config.as_ref().and_then(|c| c.labels.as_ref())?;
        Owner::from_labels(|key| labels.get(key))
    }

    /// A 409 refusing to start on the `kind` (`container`, `service`) `name` made for `found`,
    /// when it is not this owner's (`conflict`).
    pub fn refuse_conflict(&self, found: &Owner, kind: &str, name: &str) -> CoreResult<()> {
        match self.conflict(found, &format!("the {kind} '{name}'")) {
            Some(message) => Err(CoreError::Api {
                action: format!("start {kind} '{name}'"),
                status: 409,
                message,
            }),
            None => Ok(()),
        }
    }

    /// Why `object` (e.g. `container 'jupyter-alice'`), made for `found`, is not this owner's,
    /// with what to change; None when it is.
    #[must_use]
    pub fn conflict(&self, found: &Owner, object: &str) -> Option<String> {
        if found.hub != self.hub {
            return Some(format!(
                "{object} belongs to another hub ({HUB_LABEL}={:?}; this hub's hub_id is {:?}): two hubs on one Docker engine need different container and volume names (c.DockerSpawner.prefix or name_template), or the same hub_id if they are one hub",
                found.hub, self.hub
            ));
        }
        if found.user != self.user || found.server != self.server {
            let server = |s: &str| {
                if s.is_empty() {
                    "the default server".to_owned()
                } else {
                    format!("the server {s:?}")
                }
            };
            return Some(format!(
                "{object} was made for {} of user {:?} ({USER_LABEL}={:?}, {SERVER_LABEL}={:?}), not for {} of user {:?}, and serves that server's URL: check that name_template gives each server its own container",
                server(&found.server),
                found.user,
                found.user,
                found.server,
                server(&self.server),
                self.user
            ));
        }
        None
    }
}

/// Whether an object made for `found` may be acted on by `mine`: its own, or unlabelled and
/// `adopt_unlabelled` (the server's state or name says it is its own).
#[must_use]
pub fn owned(found: Option<&Owner>, mine: &Owner, adopt_unlabelled: bool) -> bool {
    match found {
        Some(found) => found == mine,
        None => adopt_unlabelled,
    }
}

/// `owned`, or the very container the server's state records by id (`state_id`): the hub's
/// own database is proof, whatever the labels say (a `hub_id` that changed, say).
#[must_use]
pub fn owned_container(
    found_id: &str,
    found: Option<&Owner>,
    mine: &Owner,
    adopt_unlabelled: bool,
    state_id: Option<&str>,
) -> bool {
    (!found_id.is_empty() && state_id == Some(found_id)) || owned(found, mine, adopt_unlabelled)
}

/// How `stop_server` stops, and whose container it may stop.
#[derive(Debug)]
pub struct StopParams {
    /// Seconds between SIGTERM and SIGKILL; None: the container's own setting.
    pub timeout: Option<i32>,
    /// Remove the container after stopping it (never its named volumes).
    pub remove: bool,
    /// The server asking.
    pub owner: Owner,
    /// Stop an unlabelled container too (the server's state records it).
    pub adopt_unlabelled: bool,
    /// The container id the server's state records, if any.
    pub state_id: Option<String>,
}

/// What decides where a server is reached.
#[derive(Debug)]
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

impl ContainerStatus {
    /// What an inspect shows: the one reading of a `ContainerInspectResponse` into a status,
    /// for polls, starts and the events cache alike.
    pub(crate) fn from_inspect(inspect: &ContainerInspectResponse) -> Self {
        let state = inspect.state.as_ref();
        ContainerStatus {
            id: inspect.id.clone().unwrap_or_default(),
            // A container the engine is restarting (its restart policy) still holds the server.
            running: state.and_then(|s| s.running).unwrap_or(false)
                || state.and_then(|s| s.restarting).unwrap_or(false),
            exit_code: state.and_then(|s| s.exit_code).unwrap_or(0),
            status: state
                .and_then(|s| s.status)
                .map(|s: ContainerStateStatusEnum| s.to_string())
                .unwrap_or_default(),
            owner: Owner::of_inspect(inspect),
            endpoints: Some(Endpoints::of_inspect(inspect)),
        }
    }
}

impl Engine {
    /// Inspects a container by name or id; `None` when it does not exist.
    pub async fn inspect_container(
        &self,
        name: &str,
    ) -> CoreResult<Option<ContainerInspectResponse>> {
        match timed(
            Verb::InspectContainer,
            self.docker().inspect_container(name, None),
        )
        .await
        {
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
        Ok(inspect.as_ref().map(ContainerStatus::from_inspect))
    }

    /// Starts the user's server container and returns where to reach it. Safe to drop.
    /// `ticket` names this call for `settle` (see `locks`).
    pub async fn start_server(
        &self,
        spec: ContainerSpec,
        ticket: String,
    ) -> CoreResult<StartOutcome> {
        let (engine, undoer) = (self.clone(), self.clone());
        // Readable by the ticket (`progress::snapshot`) until the start's steps end.
        let tracked = progress::track(&ticket);
        locks::run_undoable(
            spec.name.clone(),
            ticket,
            move |caller_gone| async move {
                // Whatever went wrong, the error reaches the hub's log and the user's page:
                // no secret in it (the engine quotes driver options when a mount fails).
                // Boxed: a start's steps hold a large future (pulls, networks, records).
                Box::pin(engine.start_steps(&spec, &*caller_gone, tracked.progress()))
                    .await
                    .map_err(|e| spec.redact_error(e))
            },
            move |outcome| async move { undoer.undo_start(&outcome).await },
        )
        .await
    }

    async fn start_steps(
        &self,
        spec: &ContainerSpec,
        cancelled_by_caller: &(dyn Fn() -> bool + Send + Sync),
        progress: &StartProgress,
    ) -> CoreResult<StartOutcome> {
        let cancelled = || CoreError::Request {
            action: format!("start container '{}'", spec.name),
            message: "cancelled".to_owned(),
        };
        if cancelled_by_caller() {
            return Err(cancelled());
        }
        if spec.pull_policy == PullPolicy::Always {
            let pulling = Instant::now();
            self.pull_for_start(spec, cancelled_by_caller, progress)
                .await?;
            metrics::observe_phase(Phase::Pull, pulling.elapsed());
        }
        if cancelled_by_caller() {
            return Err(cancelled());
        }
        let (found, mut creating, config) =
            Box::pin(self.create_or_find(spec, cancelled_by_caller, progress)).await?;
        let (id, created, api_token, was_running, joined) = match found {
            // A new container is on the first network only (see `connect_networks`).
            Found::Created(id) => (id, true, None, false, Vec::new()),
            Found::Existing(found) => {
                let api_token = found
                    .config
                    .as_ref()
                    .and_then(|c| c.env.as_ref())
                    .and_then(|env| find_api_token(env));
                let status = ContainerStatus::from_inspect(&found);
                // Found and used again: no longer a leftover to remove.
                self.taken_over(&status.id);
                let joined = Endpoints::of_inspect(&found)
                    .networks
                    .into_iter()
                    .map(|(net, _)| net)
                    .collect();
                (status.id, false, api_token, status.running, joined)
            }
        };
        let outcome = async {
            if cancelled_by_caller() {
                return Err(cancelled());
            }
            // Every network before the start, so the server never runs half-attached; a
            // failure removes the container this call created (below).
            let connecting = Instant::now();
            self.connect_networks(spec, &id, &joined).await?;
            creating += connecting.elapsed();
            metrics::observe_phase(Phase::Create, creating);
            if cancelled_by_caller() {
                return Err(cancelled());
            }
            let starting = Instant::now();
            progress.phase(Step::Start);
            // Docker 20.10 accepts a connect to a missing network, and refuses the start.
            self.start_container(&id, &spec.name)
                .await
                .map_err(|e| missing_network(spec, e))?;
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
            metrics::observe_phase(Phase::Start, starting.elapsed());
            Ok(StartOutcome {
                id: id.clone(),
                name: spec.name.clone(),
                created,
                api_token,
                ip,
                port,
                was_running,
                config: config.clone(),
            })
        }
        .await;
        match outcome {
            Ok(outcome) => Ok(outcome),
            Err(err) if created => {
                // Leave nothing half-done: remove what this call created, keeping its last log
                // lines in the error because they are usually the explanation.
                // A server may print its environment: its secrets are not for the hub's log.
                let logs = spec.redact(&self.tail_logs(&id, 20).await);
                let removed = self.remove_container(&id, true).await;
                if let Err(e) = &removed {
                    log::warn(&format!(
                        "after a failed start of container '{}': {e}",
                        spec.name
                    ));
                    self.leave_for_later(&id, &spec.name);
                }
                Err(with_logs(err, &spec.name, removed.is_ok(), &logs))
            }
            Err(err) => Err(err),
        }
    }

    /// Pulls the spec's image for a start: its stall limit, its registry's credentials, the
    /// start's progress following the pull.
    async fn pull_for_start(
        &self,
        spec: &ContainerSpec,
        gone: &(dyn Fn() -> bool + Send + Sync),
        progress: &StartProgress,
    ) -> CoreResult<()> {
        let credentials = credentials_for(&spec.registry_credentials, &spec.image);
        self.pull_image_watched(
            &spec.image,
            spec.pull_stall(),
            gone,
            Some(progress),
            credentials,
        )
        .await
    }

    /// Connects the container `id` to every network of `networks` after the first that it has
    /// not `joined` yet, with its aliases. The create joins the first network only: Engine API
    /// 1.41 (Docker 20.10) refuses several networks in one create, so one way serves all.
    async fn connect_networks(
        &self,
        spec: &ContainerSpec,
        id: &str,
        joined: &[String],
    ) -> CoreResult<()> {
        for (i, net) in spec.networks_after_create().iter().enumerate() {
            if joined.contains(&net.name) {
                continue;
            }
            let request = NetworkConnectRequest {
                container: id.to_owned(),
                endpoint_config: Some(EndpointSettings {
                    aliases: (!net.aliases.is_empty()).then(|| net.aliases.clone()),
                    ..Default::default()
                }),
            };
            timed(
                Verb::ConnectNetwork,
                self.docker().connect_network(&net.name, request),
            )
            .await
            .map_err(|e| {
                let err = self.err(
                    format!(
                        "connect container '{}' to network '{}'",
                        spec.name, net.name
                    ),
                    e,
                );
                name_missing_network(err, &net.name, &format!("networks[{}]", i + 1))
            })?;
        }
        Ok(())
    }

    /// Creates the container, or finds the one already there, and how long that took (pulls
    /// and volumes aside: they are phases of their own). The common case (no container yet,
    /// image present) is a single create call: a name conflict or a missing image is learnt
    /// from the create's answer instead of from inspects before every spawn.
    async fn create_or_find(
        &self,
        spec: &ContainerSpec,
        gone: &(dyn Fn() -> bool + Send + Sync),
        progress: &StartProgress,
    ) -> CoreResult<(Found, Duration, ConfigCheck)> {
        let mut check = ConfigCheck::default();
        // The volumes first, once: their errors (another hub's volume is a 409 too) are not
        // the container name's.
        let no_options = Map::new();
        let volumes = spec.named_volumes(spec.bind_volume_driver().map(|d| (d, &no_options)))?;
        if !volumes.is_empty() {
            progress.phase(Step::Volumes);
        }
        let making_volumes = Instant::now();
        self.ensure_volumes(&volumes, &spec.volume_labels).await?;
        metrics::observe_phase(Phase::Volumes, making_volumes.elapsed());
        let creating = Instant::now();
        let mut pulling = Duration::ZERO;
        let mut pulled = spec.pull_policy == PullPolicy::Always;
        // Bounded: a conflict can recur only if something else keeps recreating the name.
        for _ in 0..4 {
            progress.phase(Step::Create);
            match self.create_container(spec).await {
                Ok(id) => {
                    return Ok((
                        Found::Created(id),
                        creating.elapsed().saturating_sub(pulling),
                        check,
                    ))
                }
                Err(err) if err.status() == Some(409) => {
                    if let Some(found) = self.inspect_container(&spec.name).await? {
                        // Never resume or remove another server's (or hub's) container; an
                        // unlabelled one (DockerSpawner's) is adopted: its name says so.
                        check_owner(spec, &found)?;
                        if !spec.remove {
                            check = compare_config(spec, &found)?;
                            if !check.recreated {
                                return Ok((
                                    Found::Existing(Box::new(found)),
                                    creating.elapsed().saturating_sub(pulling),
                                    check,
                                ));
                            }
                            // Made from another configuration: removed, then made anew on the
                            // next turn. Its anonymous volumes (an image's `VOLUME`) stay, as
                            // named volumes and host directories do: they may hold files.
                            let id = found.id.as_deref().unwrap_or(&spec.name);
                            self.remove_container_keeping_volumes(id).await?;
                            continue;
                        }
                        // A leftover of an earlier run that should have been cleaned up: by the id
                        // just checked, never by a name something else may have taken since.
                        let id = found.id.as_deref().unwrap_or(&spec.name);
                        self.remove_container(id, true).await?;
                    }
                }
                Err(err) if is_missing_image(&err) && !pulled => match spec.pull_policy {
                    PullPolicy::Ifnotpresent => {
                        let started = Instant::now();
                        self.pull_for_start(spec, gone, progress).await?;
                        pulling += started.elapsed();
                        metrics::observe_phase(Phase::Pull, started.elapsed());
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
                // Not the image: the network the create joins.
                Err(err) => return Err(missing_network(spec, err)),
            }
        }
        Err(CoreError::Api {
            action: format!("create container '{}'", spec.name),
            status: 409,
            message: "the name stays in use: another process keeps creating a container with it"
                .to_owned(),
        })
    }

    /// Removes a stopped container for a recreate, keeping its anonymous volumes.
    async fn remove_container_keeping_volumes(&self, id: &str) -> CoreResult<()> {
        let options = RemoveContainerOptions {
            force: false,
            v: false,
            ..Default::default()
        };
        self.docker()
            .remove_container(id, Some(options))
            .await
            .map_err(|e| self.err(format!("remove container '{id}' to recreate it"), e))?;
        self.cache().forget(id);
        Ok(())
    }

    /// Reverts a start whose caller went away (JupyterHub's `start_timeout`, a cancelled spawn).
    async fn undo_start(&self, outcome: &StartOutcome) {
        let name = &outcome.name;
        let (done, result) = if outcome.created {
            ("removed it", self.remove_container(&outcome.id, true).await)
        } else if !outcome.was_running {
            ("stopped it", self.stop_container(&outcome.id, None).await)
        } else {
            return;
        };
        match result {
            Ok(()) => log::info(&format!(
                "the start of container '{name}' was cancelled: {done} again"
            )),
            Err(e) => {
                log::warn(&format!(
                    "after a cancelled start of container '{name}': {e}"
                ));
                if outcome.created {
                    self.leave_for_later(&outcome.id, name);
                }
            }
        }
    }

    /// Settles the pending result of the start with `ticket`: claimed by the spawner, or
    /// abandoned by a cancelled caller (then undone). Whether this decided it (a late claim
    /// does not). See `locks::settle`.
    pub fn settle(&self, ticket: &str, claimed: bool) -> bool {
        locks::settle(ticket, claimed)
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
                    return Err(CoreError::State {
                        action: format!("resolve the command of '{}'", spec.name),
                        message: format!(
                            "image '{}' has no CMD, so the args {:?} have nothing to be appended to: set cmd",
                            spec.image, spec.args
                        ),
                    });
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
        let mut body = spec.create_body(command)?;
        // What it is made from, for the comparison when it is resumed (`compare_config`).
        let record = ConfigRecord::of_spec(spec)?;
        body.labels.get_or_insert_default().extend(record.labels());
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        let created = timed(
            Verb::CreateContainer,
            self.docker().create_container(Some(options), body),
        )
        .await
        .map_err(|e| self.err(format!("create container '{}'", spec.name), e))?;
        Ok(created.id)
    }

    async fn start_container(&self, id: &str, name: &str) -> CoreResult<()> {
        match timed(
            Verb::StartContainer,
            self.docker().start_container(id, None),
        )
        .await
        {
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
        let status = ContainerStatus::from_inspect(&inspect);
        if !status.running {
            return Err(CoreError::Request {
                action: format!("start container '{}'", spec.name),
                message: format!(
                    "the container exited right after it was started (status {}, exit code {})",
                    status.status, status.exit_code
                ),
            });
        }
        self.address_from(spec, &Endpoints::of_inspect(&inspect))
    }

    /// Where the hub reaches the server through `endpoints` (from an inspect or a listing).
    fn address_from(
        &self,
        spec: &AddressParams,
        endpoints: &Endpoints,
    ) -> CoreResult<(String, u16)> {
        if endpoints.network_mode == "host" {
            return Ok((self.reachable_ip(&spec.host_ip), spec.port));
        }
        if spec.use_internal_ip {
            let ip = if spec.network_name.is_empty() {
                endpoints.networks.first().map(|(_, ip)| ip)
            } else {
                endpoints
                    .networks
                    .iter()
                    .find(|(net, _)| *net == spec.network_name)
                    .map(|(_, ip)| ip)
            };
            let ip = ip.filter(|ip| !ip.is_empty()).ok_or_else(|| {
                let on: Vec<&str> = endpoints.networks.iter().map(|(n, _)| n.as_str()).collect();
                CoreError::State {
                    action: format!("find the address of container '{}'", spec.name),
                    message: format!(
                        "it has no IP address on Docker network '{}' (it is on: {}): create the network with `docker network create {}` or check network_name",
                        spec.network_name,
                        on.join(", "),
                        spec.network_name
                    ),
                }
            })?;
            return Ok((ip.clone(), spec.port));
        }
        let bindings: Vec<(&str, &str)> = endpoints
            .ports
            .iter()
            .filter(|(port, _, _)| *port == spec.port)
            .map(|(_, host_ip, host_port)| (host_ip.as_str(), host_port.as_str()))
            .collect();
        // Prefer an IPv4 binding: dual-stack engines list `::` too, which a hub may not reach.
        let (host_ip, host_port) = bindings
            .iter()
            .find(|(ip, _)| !ip.contains(':'))
            .or_else(|| bindings.first())
            .copied()
            .ok_or_else(|| CoreError::Request {
                action: format!("find the published port of container '{}'", spec.name),
                message: format!("port {}/tcp is not published", spec.port),
            })?;
        let port = host_port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| CoreError::Request {
                action: format!("find the published port of container '{}'", spec.name),
                message: format!("the engine reported host port {host_port:?}"),
            })?;
        Ok((self.reachable_ip(host_ip), port))
    }

    /// Where a running container's server is reached now (re-inspected, as after a hub restart
    /// whose stored URL may be stale); `None` when the container is missing or not running.
    pub async fn container_address(
        &self,
        params: &AddressParams,
    ) -> CoreResult<Option<(String, u16)>> {
        // From the events cache when it knows the container's published ports (a listing or an
        // inspect since its last start): a hub restarting with many servers asks for every
        // one's URL at once.
        // Not for an address on a network: connecting or disconnecting a network changes it
        // with no container event, so only an inspect knows it.
        if !params.use_internal_ip {
            // A restarted hub asks right after connecting: the first listing answers.
            self.cache()
                .wait_first_sync(super::cache::FIRST_SYNC_WAIT)
                .await;
        }
        if let Some(status) = self
            .cache()
            .lookup(&params.name)
            .filter(|_| !params.use_internal_ip)
        {
            if !status.running {
                return Ok(None);
            }
            if let Some(endpoints) = &status.endpoints {
                return self.address_from(params, endpoints).map(Some);
            }
        }
        match self.inspect_container(&params.name).await? {
            Some(inspect) if ContainerStatus::from_inspect(&inspect).running => {
                self.cache().record_inspect(&inspect);
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
        match timed(
            Verb::StopContainer,
            self.docker().stop_container(name, options),
        )
        .await
        {
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

    /// Removes a container and its anonymous volumes; named volumes are never removed:
    /// users' data is only deleted when the operator asks.
    pub async fn remove_container(&self, name: &str, force: bool) -> CoreResult<()> {
        // `v`: the container's anonymous volumes (an image's `VOLUME`) go with it; the engine
        // never removes named volumes this way, so users' data stays.
        let options = RemoveContainerOptions {
            force,
            v: true,
            ..Default::default()
        };
        match timed(
            Verb::RemoveContainer,
            self.docker().remove_container(name, Some(options)),
        )
        .await
        {
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

    /// Stops (and, with `remove`, removes) the server's container `target` (its id, or its
    /// name), holding the lock of its name `name`, the same lock a start of it takes. A container
    /// that is not `mine` (`owned`) is left alone, with a warning: after a refused start the hub
    /// stops the server, which must not reach the container of the same name another server
    /// owns. Returns whether it acted.
    pub async fn stop_server(
        &self,
        name: &str,
        target: &str,
        stop: StopParams,
    ) -> CoreResult<bool> {
        let _guard = locks::acquire(name).await;
        let result = async {
            let Some(found) = self.inspect_container(target).await? else {
                return Ok(false);
            };
            let theirs = Owner::of_inspect(&found);
            let found_id = found.id.as_deref().unwrap_or_default();
            if !owned_container(
                found_id,
                theirs.as_ref(),
                &stop.owner,
                stop.adopt_unlabelled,
                stop.state_id.as_deref(),
            ) {
                let why = match &theirs {
                    Some(theirs) => stop
                        .owner
                        .conflict(theirs, &format!("the container '{name}'"))
                        .unwrap_or_default(),
                    None => format!("the container '{name}' carries no rustdocker labels and the server's state does not record it"),
                };
                log::warn(&format!("not stopping: {why}"));
                return Ok(false);
            }
            let id = found.id.as_deref().unwrap_or(target);
            self.stop_container(id, stop.timeout).await?;
            if stop.remove {
                self.remove_container(id, true).await?;
            }
            Ok(true)
        }
        .await;
        // Whatever happened, the cached state may be out of date: the next poll inspects, and
        // the events that follow re-fill the entry.
        self.cache().forget(target);
        result
    }

    /// Removes the server's stopped container `target` (id or name) under the lock of its name
    /// `name`, for a rename: a running container is refused (409), and so is any failure of the
    /// removal, a 409 included (it is not "already gone"). A missing container, or one that is
    /// not `owner`'s (`owned`), is left alone. Returns whether it removed one.
    pub async fn remove_stopped_server(
        &self,
        name: &str,
        target: &str,
        owner: &Owner,
        adopt_unlabelled: bool,
        state_id: Option<&str>,
    ) -> CoreResult<bool> {
        let _guard = locks::acquire(name).await;
        let Some(found) = self.inspect_container(target).await? else {
            return Ok(false);
        };
        let found_id = found.id.as_deref().unwrap_or_default();
        if !owned_container(
            found_id,
            Owner::of_inspect(&found).as_ref(),
            owner,
            adopt_unlabelled,
            state_id,
        ) {
            return Ok(false);
        }
        let status = ContainerStatus::from_inspect(&found);
        let action = format!("remove container '{name}'");
        if status.running {
            return Err(CoreError::Api {
                action,
                status: 409,
                message: "it is running: stop the server first".to_owned(),
            });
        }
        // Anonymous volumes go with it (see `remove_container`); named ones never do.
        let options = RemoveContainerOptions {
            force: false,
            v: true,
            ..Default::default()
        };
        timed(
            Verb::RemoveContainer,
            self.docker().remove_container(&status.id, Some(options)),
        )
        .await
        .map_err(|e| self.err(action, e))?;
        self.cache().forget(target);
        Ok(true)
    }

    /// The last `lines` lines of a container's output, best effort.
    async fn tail_logs(&self, id: &str, lines: usize) -> String {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        };
        let call = metrics::StreamCall::start(Verb::ContainerLogs);
        let mut stream = self.docker().logs(id, Some(options));
        let mut out = String::new();
        let mut failed = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => out.push_str(&String::from_utf8_lossy(&chunk.into_bytes())),
                Err(e) => {
                    failed = metrics::error_kind(&e);
                    let err = self.err(format!("read the output of container '{id}'"), e);
                    log::debug(&err.to_string());
                    break;
                }
            }
            if out.len() > 8192 {
                break;
            }
        }
        call.finish(failed);
        out.trim_end().to_owned()
    }
}

/// `err` with the last output of the container a failed start created (and `removed`, or tried
/// to), because that output is usually the explanation.
fn with_logs(err: CoreError, name: &str, removed: bool, logs: &str) -> CoreError {
    if logs.is_empty() {
        return err;
    }
    let indented = logs.replace('\n', "\n    ");
    let fate = if removed {
        "was removed"
    } else {
        "could not be removed (see the hub's log)"
    };
    let suffix = format!("\n  (container '{name}' {fate}; its last output was:\n    {indented})");
    err.map_message(|message| message + &suffix)
}

/// What `create_or_find` found.
enum Found {
    Created(String),
    Existing(Box<ContainerInspectResponse>),
}

/// Refuses to resume or replace a container that rustdocker made for another server or hub
/// (`Owner::conflict`): it serves that server's URL and OAuth client, or another hub's user.
fn check_owner(spec: &ContainerSpec, found: &ContainerInspectResponse) -> CoreResult<()> {
    let (Some(mine), Some(theirs)) = (spec.owner(), Owner::of_inspect(found)) else {
        return Ok(());
    };
    if !spec.state_id.is_empty() && found.id.as_deref() == Some(spec.state_id.as_str()) {
        // The very container the server's state records: its own, whatever the labels say.
        return Ok(());
    }
    mine.refuse_conflict(&theirs, "container", &spec.name)
}

/// A 404 for a network of the spec (the engine refuses a missing one at the create for the
/// first network, at the start for the others) said in words that name the network, its
/// setting and the fix; other errors as they are.
fn missing_network(spec: &ContainerSpec, err: CoreError) -> CoreError {
    let CoreError::Api {
        status: 404,
        message,
        ..
    } = &err
    else {
        return err;
    };
    let lower = message.to_ascii_lowercase();
    if !lower.contains("network") {
        return err;
    }
    let named = |name: &str| {
        message.contains(&format!("network {name} ")) || message.contains(&format!("'{name}'"))
    };
    let found = if spec.networks.is_empty() {
        Some((spec.network_name.clone(), "network_name".to_owned())).filter(|(n, _)| !n.is_empty())
    } else {
        spec.networks
            .iter()
            .enumerate()
            .find(|(_, net)| named(&net.name))
            .map(|(i, net)| (net.name.clone(), format!("networks[{i}]")))
    };
    match found {
        Some((name, setting)) => name_missing_network(err, &name, &setting),
        None => err,
    }
}

/// `err`, a 404 from joining the network `name` (the setting `setting`), with a message naming
/// the network, the setting and the fix.
fn name_missing_network(err: CoreError, name: &str, setting: &str) -> CoreError {
    match err {
        CoreError::Api {
            action,
            status: 404,
            message,
        } => CoreError::Api {
            action,
            status: 404,
            message: format!(
                "the Docker network '{name}' ({setting}) does not exist: create it with `docker network create {name}` or fix {setting} (the engine said: {message})"
            ),
        },
        other => other,
    }
}

/// Compares a kept container with what `spec` would create (`ConfigRecord`): a changed image
/// recreates it, other changes follow `on_config_change`. A running container is never
/// recreated (its user's work would be killed). A container without a record (made by
/// DockerSpawner or an older rustdocker) can only be compared by its image.
fn compare_config(
    spec: &ContainerSpec,
    found: &ContainerInspectResponse,
) -> CoreResult<ConfigCheck> {
    let name = &spec.name;
    let config = found.config.as_ref();
    let labels = config.and_then(|c| c.labels.as_ref());
    let now = ConfigRecord::of_spec(spec)?;
    let env = config.and_then(|c| c.env.as_deref()).unwrap_or_default();
    let made_from = labels.and_then(|l| ConfigRecord::from_labels(|k| l.get(k), env));
    let (changed, image_changed) = if let Some(old) = &made_from {
        (old.changes(&now), old.image_changed(&now))
    } else {
        // No record: only the image the container was created with can be compared.
        let image = config.and_then(|c| c.image.as_deref()).unwrap_or_default();
        let differs = normalise_image(image) != normalise_image(&spec.image);
        let changed = if differs {
            vec!["Image".to_owned()]
        } else {
            Vec::new()
        };
        (changed, differs)
    };
    let running = ContainerStatus::from_inspect(found).running;
    let unrecorded = if made_from.is_none() {
        " It carries no record of its configuration (made by DockerSpawner or an older rustdocker), so only its image was compared; remove it (docker rm) to have it made anew, with a record."
    } else {
        ""
    };
    if changed.is_empty() {
        let note = made_from
            .is_none()
            .then(|| format!("Resuming container '{name}' as it is.{unrecorded}"));
        return Ok(ConfigCheck {
            changed,
            recreated: false,
            note,
        });
    }
    let what = changed.join(", ");
    let recreate = image_changed || spec.on_config_change == ConfigChange::Recreate;
    // Removing it is for a container provably this server's: labelled as its own (checked by
    // `check_owner`), or the very one its state records. An unlabelled container that only
    // has the name (made by hand, by another hub's DockerSpawner) is used, never removed.
    let recorded_in_state =
        !spec.state_id.is_empty() && found.id.as_deref() == Some(spec.state_id.as_str());
    let provably_ours = Owner::of_inspect(found).is_some() || recorded_in_state;
    let note = if running {
        format!("Container '{name}' was made from another configuration (changed: {what}) but is running, so it is used as it is; it is made anew at a start after it stops.{unrecorded}")
    } else if recreate && !provably_ours {
        format!("Container '{name}' was made from another configuration (changed: {what}), but it carries no rustdocker labels and the server's state does not record it, so it is not provably this server's: it is used as it is, never removed. Remove it (docker rm) if it is this server's, to have it made anew.")
    } else if recreate {
        let why = if image_changed {
            "the image changed"
        } else {
            "on_config_change = 'recreate'"
        };
        format!("Recreating container '{name}' ({why}; changed: {what}): its named volumes and host directories are kept, files elsewhere in the old container are not.{unrecorded}")
    } else {
        format!("Resuming container '{name}', made from another configuration (changed: {what}): set on_config_change = 'recreate' to have such containers made anew (files outside volumes are lost then), or remove it (docker rm).{unrecorded}")
    };
    Ok(ConfigCheck {
        changed,
        recreated: recreate && !running && provably_ours,
        note: Some(note),
    })
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

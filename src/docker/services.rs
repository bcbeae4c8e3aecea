//! Swarm services, for SwarmSpawner: one service (one task) per server, on whichever node the
//! swarm places it (or the node its volumes live on), reached through the routing mesh or at
//! its node's address (host-mode ports).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{Task, TaskState};
use bollard::query_parameters::ListTasksOptions;

use super::containers::{owned, Owner};
use super::progress::{self, Phase as Step, StartProgress};
use super::{locks, Engine};
use crate::docker::NODE_RECORDED_LABEL;
use crate::errors::{CoreError, CoreResult};
use crate::log;
use crate::metrics::{self, timed, Phase, Verb};
use crate::spec::{credentials_for, ContainerSpec};
use crate::swarm::{
    host_published_port, operator_constraints, service_spec, service_volume_labels, NodeFacts,
    PinNode, PublishMode, SwarmExtras,
};

/// Where a started service's server listens, and the node its task runs on.
#[derive(Debug, Clone)]
pub struct ServiceOutcome {
    /// Service id.
    pub id: String,
    /// Address the hub connects to.
    pub ip: String,
    /// Port the hub connects to.
    pub port: u16,
    /// The id of the node that runs the task.
    pub node_id: String,
    /// That node's hostname.
    pub node_hostname: String,
}

/// A service's state for `poll`.
#[derive(Debug)]
pub struct ServiceStatus {
    /// Whether its task is running or on its way there.
    pub running: bool,
    /// The task's state word, or `node-down` for a task the swarm still shows running on a
    /// node that is down.
    pub state: String,
    /// The container's exit code, when it has one (1 for a task on a node that is down).
    pub exit_code: i64,
    /// The node the task runs on (`'hostname' (id ...)`), when known.
    pub node: String,
}

/// How the hub reaches a service's server (for `get_url`, and at the end of a start).
#[derive(Debug, Clone)]
pub struct Reach {
    /// The server's port in its container.
    pub port: u16,
    /// `use_internal_ip`: by the service's name on its network.
    pub use_internal_ip: bool,
    /// How the port is published.
    pub publish_mode: PublishMode,
    /// `host_ip`, for the routing mesh's published port.
    pub host_ip: String,
}

impl Reach {
    fn of(spec: &ContainerSpec, swarm: &SwarmExtras) -> Self {
        Reach {
            port: spec.port,
            use_internal_ip: spec.use_internal_ip,
            publish_mode: swarm.publish_mode,
            host_ip: spec.host_ip.clone(),
        }
    }
}

/// How long a stop waits for the swarm to end the tasks of a removed service at most: the
/// container's stop grace period (10 s) and the node's report, with room on a busy machine.
pub const TASK_END_WAIT: Duration = Duration::from_secs(45);

/// A task state after which the task never runs again.
fn is_ended(state: TaskState) -> bool {
    !(state == TaskState::RUNNING || is_starting(state))
}

/// `the server 'lab' of user 'alice'` or `the default server of user 'alice'`, for messages.
fn server_words(spec: &ContainerSpec) -> String {
    match spec.owner() {
        Some(owner) if owner.server.is_empty() => {
            format!("the default server of user '{}'", owner.user)
        }
        Some(owner) => format!("the server '{}' of user '{}'", owner.server, owner.user),
        None => format!("service '{}'", spec.name),
    }
}

fn is_starting(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::NEW
            | TaskState::ALLOCATED
            | TaskState::PENDING
            | TaskState::ASSIGNED
            | TaskState::ACCEPTED
            | TaskState::PREPARING
            | TaskState::READY
            | TaskState::STARTING
    )
}

impl Engine {
    /// The service's tasks, newest first (a service restarted by an operator has older,
    /// finished tasks too).
    async fn service_tasks(&self, name: &str) -> CoreResult<Vec<Task>> {
        let options = ListTasksOptions {
            filters: Some(HashMap::from([(
                "service".to_owned(),
                vec![name.to_owned()],
            )])),
        };
        let mut tasks = timed(Verb::ListTasks, self.docker().list_tasks(Some(options)))
            .await
            .map_err(|e| self.err(format!("list the tasks of service '{name}'"), e))?;
        tasks.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        Ok(tasks)
    }

    /// A swarm node's facts; None when the swarm has no such node (any more).
    pub async fn node_facts(&self, id: &str) -> CoreResult<Option<NodeFacts>> {
        match timed(Verb::InspectNode, self.docker().inspect_node(id)).await {
            Ok(node) => Ok(Some(NodeFacts::from_node(&node))),
            Err(e) => {
                let err = self.err(format!("inspect swarm node '{id}'"), e);
                if err.is_not_found() {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// The facts of the node a task is on, if it has one and the swarm answers; a failure
    /// here only costs a message its node's name.
    async fn task_node(&self, task: &Task) -> Option<NodeFacts> {
        let id = task.node_id.as_deref().filter(|id| !id.is_empty())?;
        self.node_facts(id).await.ok().flatten()
    }

    /// The swarm node of the engine the hub talks to, `(id, hostname)`; None when that engine
    /// is in no swarm.
    pub async fn hub_node(&self) -> CoreResult<Option<(String, String)>> {
        let info = timed(Verb::Info, self.docker().info())
            .await
            .map_err(|e| self.err("find the swarm node of the hub's engine", e))?;
        let id = info
            .swarm
            .and_then(|s| s.node_id)
            .filter(|id| !id.is_empty());
        let Some(id) = id else {
            return Ok(None);
        };
        let hostname = match self.node_facts(&id).await? {
            Some(facts) => facts.hostname,
            None => info.name.unwrap_or_default(),
        };
        Ok(Some((id, hostname)))
    }

    /// The swarm's nodes; empty when the swarm does not answer (what they are used for, a
    /// hint in a message or a swarm of one node made anew, can do without).
    async fn swarm_nodes(&self) -> Vec<NodeFacts> {
        match timed(Verb::ListNodes, self.docker().list_nodes(None)).await {
            Ok(nodes) => nodes.iter().map(NodeFacts::from_node).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The node a start that no start recorded a node for is held to (`place_on_volume_node`):
    /// the hub's engine's own node, when that engine holds one of the node-local `volumes`
    /// made before nodes were recorded (without `NODE_RECORDED_LABEL`: by DockerSpawner or a
    /// container spawner, on the machine that was the hub's only one), where the user's files
    /// are. None when it holds none of them: a first start (anywhere), or copies made by
    /// SwarmSpawner starts that did not finish (they hold no files).
    async fn unrecorded_volume_node(&self, volumes: &[String]) -> CoreResult<Option<PinNode>> {
        let mut older = Vec::new();
        for name in volumes {
            match timed(Verb::InspectVolume, self.docker().inspect_volume(name)).await {
                Ok(volume) if !volume.labels.contains_key(NODE_RECORDED_LABEL) => {
                    older.push(name.clone());
                }
                Ok(_) => {}
                Err(e) => {
                    let err = self.err(format!("inspect volume '{name}'"), e);
                    if !err.is_not_found() {
                        return Err(err);
                    }
                }
            }
        }
        if older.is_empty() {
            return Ok(None);
        }
        let Some((id, hostname)) = self.hub_node().await? else {
            // Not a swarm node: the service's create fails with the swarm's own word.
            return Ok(None);
        };
        Ok(Some(PinNode {
            id,
            hostname,
            recorded_by: "the servers that made them on the hub's engine before nodes were recorded (DockerSpawner, or a swarm of one node)".to_owned(),
            volumes: older,
        }))
    }

    /// Refuses, before anything is made, a start held to the node its volumes are on
    /// (`pin`) when the swarm cannot run it there: the node left the swarm, is drained,
    /// paused or down, or the operator's placement constraints exclude it. A swarm of one
    /// node made anew (`docker swarm init` again: a new id) whose node has the recorded
    /// hostname holds the volumes on that node: the start is held there instead (returned).
    async fn check_pin_node(
        &self,
        spec: &ContainerSpec,
        swarm: &SwarmExtras,
        pin: &PinNode,
    ) -> CoreResult<Option<PinNode>> {
        let facts = self.node_facts(&pin.id).await?;
        let hostname = facts
            .as_ref()
            .map_or(pin.hostname.as_str(), |f| f.hostname.as_str());
        let node = format!("'{hostname}' (id {})", pin.id);
        let volumes = pin.volumes.join(", ");
        let (why, advice) = match &facts {
            None => {
                let nodes = self.swarm_nodes().await;
                if let [only] = nodes.as_slice() {
                    // The only node there is, of the recorded name: the same machine, whose
                    // swarm was made anew. (With several nodes a machine of that name may be
                    // another one, made to replace it: that is the operator's to say.)
                    let fits = only.unavailable().is_none()
                        && only.excluded_by(&operator_constraints(swarm)).is_none();
                    if fits && !pin.hostname.is_empty() && only.hostname == pin.hostname {
                        log::warn(&format!(
                            "{}: its volumes ({volumes}) were recorded on swarm node {node}, which is no longer in the swarm; the swarm's only node {} has that hostname (a swarm made anew): placed there",
                            server_words(spec),
                            only.describe()
                        ));
                        return Ok(Some(PinNode {
                            id: only.id.clone(),
                            hostname: only.hostname.clone(),
                            ..pin.clone()
                        }));
                    }
                }
                // A node that left and joined again has a new id; its volumes are still there.
                let same: Vec<&str> = nodes
                    .iter()
                    .filter(|n| !hostname.is_empty() && n.hostname == hostname && n.id != pin.id)
                    .map(|n| n.id.as_str())
                    .collect();
                let advice = match same.as_slice() {
                    [] => "Join the node to the swarm again (its volumes are on its disk)".to_owned(),
                    ids => format!(
                        "The swarm has a node of that hostname under another id ({}): if it is the same machine, joined again, its volumes are on it; start the server there once with c.SwarmSpawner.place_on_volume_node = False and the placement constraint node.id=={} for this user (the start then records the new id)",
                        ids.join(", "),
                        ids[0]
                    ),
                };
                ("is no longer in the swarm".to_owned(), advice)
            }
            Some(facts) => {
                if let Some(why) = facts.unavailable() {
                    let advice = if facts.availability == "active" {
                        "Start the node's Docker engine again (or reconnect the node)".to_owned()
                    } else {
                        format!(
                            "Make the node active again (docker node update --availability active {})",
                            pin.id
                        )
                    };
                    (why, advice)
                } else if let Some(c) = facts.excluded_by(&operator_constraints(swarm)) {
                    (
                        format!("is excluded by the placement constraint '{c}' (extra_placement_spec): the server cannot be placed where its volumes are"),
                        "Change extra_placement_spec so that it allows the node for this user".to_owned(),
                    )
                } else {
                    return Ok(None);
                }
            }
        };
        Err(CoreError::State {
            action: format!("start {}", server_words(spec)),
            message: format!(
                "its volumes ({volumes}) are on swarm node {node}, where {} ran, and that node {why}. Nothing was created. {advice}; or, to start the server on another node (where those volumes are missing or hold other files), copy the volumes there or remove them, and set c.SwarmSpawner.place_on_volume_node = False for this start (a callable can return False for this user only).",
                pin.recorded_by
            ),
        })
    }

    /// Removes a service; a missing one is fine.
    pub async fn remove_service(&self, name: &str) -> CoreResult<()> {
        match timed(Verb::RemoveService, self.docker().delete_service(name)).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let err = self.err(format!("remove service '{name}'"), e);
                if err.is_not_found() {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Removes a service (a missing one is fine) and waits, at most `wait`, until the swarm
    /// has ended its tasks: until then the task's container may still run and its node still
    /// holds its resource reservations, so a start held to that node (`place_on_volume_node`)
    /// could be refused for want of resources. A task on a node that is not ready is not
    /// waited for (it ends when the node comes back); a wait that runs out is a warning.
    pub async fn remove_service_settled(&self, name: &str, wait: Duration) -> CoreResult<()> {
        let tasks = match self.service_tasks(name).await {
            Ok(tasks) => tasks,
            // No such service: nothing to remove or wait for.
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        self.remove_service(name).await?;
        let mut live = Vec::new();
        for task in tasks {
            let state = task.status.as_ref().and_then(|s| s.state);
            if state.is_some_and(is_ended) {
                continue;
            }
            let node_ready = match self.task_node(&task).await {
                Some(facts) => facts.state == "ready",
                None => task.node_id.is_none(), // not scheduled yet: it goes with the service
            };
            if let (true, Some(id)) = (node_ready, task.id) {
                live.push(id);
            }
        }
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(100);
        while !live.is_empty() {
            let mut still = Vec::new();
            for id in live {
                match timed(Verb::InspectTask, self.docker().inspect_task(&id)).await {
                    Ok(task) => {
                        let state = task.status.and_then(|s| s.state);
                        if !state.is_some_and(is_ended) {
                            still.push(id);
                        }
                    }
                    Err(e) => {
                        let err = self.err(format!("inspect task '{id}'"), e);
                        if !err.is_not_found() {
                            return Err(err);
                        }
                    }
                }
            }
            live = still;
            if live.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                log::warn(&format!(
                    "service '{name}' is removed, but the swarm has not ended its task after {} s: the next start on its node may wait for its resources",
                    wait.as_secs()
                ));
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
        Ok(())
    }

    /// Who the service `name` was made for: None when it does not exist, `Some(None)` when it
    /// carries no rustdocker labels.
    pub async fn service_owner(&self, name: &str) -> CoreResult<Option<Option<Owner>>> {
        match timed(
            Verb::InspectService,
            self.docker().inspect_service(name, None),
        )
        .await
        {
            Ok(service) => {
                Ok(Some(service.spec.and_then(|s| s.labels).and_then(
                    |labels| Owner::from_labels(|key| labels.get(key)),
                )))
            }
            Err(e) => {
                let err = self.err(format!("inspect service '{name}'"), e);
                if err.is_not_found() {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Whether the service `name` exists and may be acted on by `owner` (`owned`).
    pub async fn service_owned(
        &self,
        name: &str,
        owner: &Owner,
        adopt_unlabelled: bool,
    ) -> CoreResult<bool> {
        Ok(match self.service_owner(name).await? {
            Some(found) => owned(found.as_ref(), owner, adopt_unlabelled),
            None => false,
        })
    }

    /// Refuses to replace a service of the same name that another server or hub made.
    async fn check_service_owner(&self, spec: &ContainerSpec) -> CoreResult<()> {
        let (Some(mine), Some(Some(theirs))) =
            (spec.owner(), self.service_owner(&spec.name).await?)
        else {
            return Ok(());
        };
        mine.refuse_conflict(&theirs, "service", &spec.name)
    }

    /// The state of a service's newest task; `None` when the service does not exist. A task
    /// the swarm still shows running on a node that is down has ended for the hub: the swarm
    /// keeps its last state until the node comes back, and the server cannot be reached.
    pub async fn service_status(&self, name: &str) -> CoreResult<Option<ServiceStatus>> {
        if let Err(e) = timed(
            Verb::InspectService,
            self.docker().inspect_service(name, None),
        )
        .await
        {
            let err = self.err(format!("inspect service '{name}'"), e);
            return if err.is_not_found() {
                Ok(None)
            } else {
                Err(err)
            };
        }
        let tasks = self.service_tasks(name).await?;
        let Some(task) = tasks.into_iter().next() else {
            // Created, no task scheduled yet: on its way.
            return Ok(Some(ServiceStatus {
                running: true,
                state: "new".to_owned(),
                exit_code: 0,
                node: String::new(),
            }));
        };
        let status = task.status.clone().unwrap_or_default();
        let state = status.state.unwrap_or(TaskState::NEW);
        let exit_code = status
            .container_status
            .as_ref()
            .and_then(|c| c.exit_code)
            .unwrap_or(0);
        let node = if state == TaskState::RUNNING {
            self.task_node(&task).await
        } else {
            None
        };
        let described = node.as_ref().map(NodeFacts::describe).unwrap_or_default();
        if node.as_ref().is_some_and(|n| n.state == "down") {
            return Ok(Some(ServiceStatus {
                running: false,
                state: "node-down".to_owned(),
                exit_code: 1,
                node: described,
            }));
        }
        Ok(Some(ServiceStatus {
            running: !is_ended(state),
            state: state.to_string(),
            exit_code,
            node: described,
        }))
    }

    /// Where the hub reaches the running server of service `name` now (`get_url` after a hub
    /// restart), or None when it has no running task.
    pub async fn service_address(
        &self,
        name: &str,
        reach: &Reach,
    ) -> CoreResult<Option<(String, u16)>> {
        let tasks = self.service_tasks(name).await?;
        let Some(task) = tasks
            .into_iter()
            .find(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
        else {
            return Ok(None);
        };
        let node = self.task_node(&task).await;
        self.reach_address(name, reach, &task, node.as_ref()).await
    }

    /// The address of a running task's server: its name on its network, the routing mesh's
    /// published port, or its node's address and the port it published there (None while
    /// the task does not show that port yet).
    async fn reach_address(
        &self,
        name: &str,
        reach: &Reach,
        task: &Task,
        node: Option<&NodeFacts>,
    ) -> CoreResult<Option<(String, u16)>> {
        if reach.use_internal_ip {
            // Swarm's DNS resolves the service name on its networks.
            return Ok(Some((name.to_owned(), reach.port)));
        }
        if reach.publish_mode == PublishMode::Host {
            let ports = task
                .status
                .as_ref()
                .and_then(|s| s.port_status.as_ref())
                .and_then(|p| p.ports.as_deref())
                .unwrap_or_default();
            let Some(published) = host_published_port(ports, reach.port) else {
                return Ok(None);
            };
            let Some(node) = node else {
                return Err(CoreError::Request {
                    action: format!("find the node of service '{name}'"),
                    message: format!(
                        "the swarm does not say which node runs its task (node id {:?})",
                        task.node_id
                    ),
                });
            };
            return Ok(Some((node.reachable_addr()?, published)));
        }
        let inspect = timed(
            Verb::InspectService,
            self.docker().inspect_service(name, None),
        )
        .await
        .map_err(|e| self.err(format!("inspect service '{name}'"), e))?;
        let published = inspect
            .endpoint
            .and_then(|e| e.ports)
            .unwrap_or_default()
            .into_iter()
            .find(|p| p.target_port == Some(i64::from(reach.port)))
            .and_then(|p| p.published_port)
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| CoreError::Request {
                action: format!("find the published port of service '{name}'"),
                message: format!("port {} is not published", reach.port),
            })?;
        Ok(Some((self.reachable_ip(&reach.host_ip), published)))
    }

    /// Replaces any service of the same name, creates this one, and waits until its task runs.
    /// A task the swarm rejects or that fails ends the wait with the swarm's reason (DockerSpawner
    /// keeps waiting on a rejected task until `start_timeout`). Safe to drop: the service is
    /// removed again.
    pub async fn start_service(
        &self,
        spec: ContainerSpec,
        swarm: SwarmExtras,
        ticket: String,
    ) -> CoreResult<ServiceOutcome> {
        let (engine, undoer) = (self.clone(), self.clone());
        let name = spec.name.clone();
        // Readable by the ticket (`progress::snapshot`) until the start's steps end.
        let tracked = progress::track(&ticket);
        locks::run_undoable(
            spec.name.clone(),
            ticket,
            move |caller_gone| async move {
                // Before anything is made or replaced, so the clean-up below never removes
                // another server's service.
                engine.check_service_owner(&spec).await?;
                engine
                    .start_service_steps(&spec, &swarm, &*caller_gone, tracked.progress())
                    .await
                    .map_err(|e| spec.redact_error(e))
            },
            move |outcome: ServiceOutcome| async move {
                // By the id this start created, never by the name.
                match undoer.remove_service(&outcome.id).await {
                    Ok(()) => log::info(&format!(
                        "the start of service '{name}' was cancelled: removed it again"
                    )),
                    Err(e) => {
                        log::warn(&format!("after a cancelled start of service '{name}': {e}"));
                    }
                }
            },
        )
        .await
    }

    /// For a start that no start recorded a node for (`unrecorded_volumes`, no `pin_node`):
    /// the hub's node, if its engine holds the user's files (`unrecorded_volume_node`).
    async fn unrecorded_pin(
        &self,
        spec: &ContainerSpec,
        swarm: &SwarmExtras,
    ) -> CoreResult<Option<PinNode>> {
        if swarm.pin_node.is_some() || swarm.unrecorded_volumes.is_empty() {
            return Ok(None);
        }
        let pin = self
            .unrecorded_volume_node(&swarm.unrecorded_volumes)
            .await?;
        if let Some(pin) = &pin {
            log::info(&format!(
                "{}: no start recorded the node of its volumes, and the hub's engine holds {} made before nodes were recorded: placed on the hub's node '{}' (id {}), where they are",
                server_words(spec),
                pin.volumes.join(", "),
                pin.hostname,
                pin.id
            ));
        }
        Ok(pin)
    }

    async fn start_service_steps(
        &self,
        spec: &ContainerSpec,
        swarm: &SwarmExtras,
        caller_gone: &(dyn Fn() -> bool + Send + Sync),
        progress: &StartProgress,
    ) -> CoreResult<ServiceOutcome> {
        progress.phase(Step::Create);
        // The node the start is held to, when this call decides it (see `unrecorded_pin`,
        // `check_pin_node`).
        let mut held: Option<SwarmExtras> = None;
        if let Some(pin) = self.unrecorded_pin(spec, swarm).await? {
            held = Some(SwarmExtras {
                pin_node: Some(pin),
                ..swarm.clone()
            });
        }
        let current = held.as_ref().unwrap_or(swarm);
        // Before anything is made: a start that cannot run where its volumes are fails here,
        // naming the node, rather than leaving a service that waits forever.
        let moved = match &current.pin_node {
            Some(pin) => self.check_pin_node(spec, current, pin).await?,
            None => None,
        };
        if let Some(pin) = moved {
            let next = SwarmExtras {
                pin_node: Some(pin),
                ..current.clone()
            };
            held = Some(next);
        }
        let swarm = held.as_ref().unwrap_or(swarm);
        let command = self.resolve_command(spec).await?;
        let service = service_spec(spec, swarm, command)?;
        let volumes = swarm.named_volumes(spec)?;
        // An old service of the name (a stop the hub never saw) goes first, and its task with
        // it, so that its node's resources are free for this one.
        self.remove_service_settled(&spec.name, TASK_END_WAIT)
            .await?;
        if !volumes.is_empty() {
            progress.phase(Step::Volumes);
        }
        let making_volumes = Instant::now();
        // On the manager's engine (the hub's): the ownership checks (another hub's or user's
        // volume is refused) before the service is made. The node that runs the task makes its
        // own copy of a volume it lacks, labelled the same (the mounts' VolumeOptions).
        self.ensure_volumes(&volumes, &service_volume_labels(&spec.volume_labels))
            .await?;
        metrics::observe_phase(Phase::Volumes, making_volumes.elapsed());
        progress.phase(Step::Create);
        let action = format!("create service '{}'", spec.name);
        let creating = Instant::now();
        // The registry's credentials go with the service (as `docker service create
        // --with-registry-auth`), so the node that runs the task can pull a private image.
        let credentials = credentials_for(&spec.registry_credentials, &spec.image);
        // A service of that name may still be going away: retry a conflict briefly.
        let mut created = None;
        for attempt in 0..20 {
            match timed(
                Verb::CreateService,
                self.docker()
                    .create_service(service.clone(), credentials.clone()),
            )
            .await
            {
                Ok(response) => {
                    created = Some(response);
                    break;
                }
                Err(e) => {
                    let err = self.err(action.clone(), e);
                    if err.status() != Some(409) || attempt == 19 {
                        return Err(err);
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
        metrics::observe_phase(Phase::Create, creating.elapsed());
        let id = created.and_then(|c| c.id).unwrap_or_default();
        progress.phase(Step::Task);
        let starting = Instant::now();
        let outcome = self
            .wait_for_task(spec, swarm, &id, caller_gone, progress)
            .await;
        if outcome.is_ok() {
            metrics::observe_phase(Phase::Start, starting.elapsed());
        }
        if outcome.is_err() {
            // Leave nothing half-done: remove the service this call created, by its id (never
            // by a name another hub may have taken meanwhile).
            if let Err(e) = self.remove_service(&id).await {
                log::warn(&format!(
                    "after a failed start of service '{}': {e}",
                    spec.name
                ));
            }
        }
        outcome
    }

    /// Waits until the task of the service `id` just created runs; where it is reached, and
    /// on which node. The progress names the node and the task's state (`preparing`: the node
    /// pulls the image if it lacks it); a task the swarm rejects or that fails ends the wait
    /// with the swarm's reason and the node's name.
    async fn wait_for_task(
        &self,
        spec: &ContainerSpec,
        swarm: &SwarmExtras,
        id: &str,
        caller_gone: &(dyn Fn() -> bool + Send + Sync),
        progress: &StartProgress,
    ) -> CoreResult<ServiceOutcome> {
        let action = format!("start service '{}'", spec.name);
        let reach = Reach::of(spec, swarm);
        let mut wait = Duration::from_millis(100);
        let mut node: Option<NodeFacts> = None;
        // A running task reports its host-mode port with its state; should it come later,
        // it is waited for as long as this.
        let mut port_deadline: Option<Instant> = None;
        loop {
            if caller_gone() {
                return Err(CoreError::Request {
                    action,
                    message: "cancelled".to_owned(),
                });
            }
            let tasks = self.service_tasks(&spec.name).await?;
            if let Some(task) = tasks.first() {
                let status = task.status.clone().unwrap_or_default();
                let state = status.state.unwrap_or(TaskState::NEW);
                let node_id = task.node_id.clone().unwrap_or_default();
                if !node_id.is_empty() && node.as_ref().is_none_or(|n| n.id != node_id) {
                    node = self.task_node(task).await;
                }
                // The swarm's own word for where the task is (pending, assigned, preparing:
                // the node pulling the image, starting), and the node it is on.
                progress.detail(&state.to_string());
                if let Some(facts) = &node {
                    progress.node(&facts.hostname);
                }
                // In host mode the node's address is needed: a failed look-up is tried again.
                let node_known = reach.publish_mode != PublishMode::Host || node.is_some();
                if state == TaskState::RUNNING {
                    let address = if node_known {
                        self.reach_address(&spec.name, &reach, task, node.as_ref())
                            .await?
                    } else {
                        None
                    };
                    if let Some((ip, port)) = address {
                        return Ok(ServiceOutcome {
                            id: id.to_owned(),
                            ip,
                            port,
                            node_id,
                            node_hostname: node.map(|n| n.hostname).unwrap_or_default(),
                        });
                    }
                    let deadline = *port_deadline
                        .get_or_insert_with(|| Instant::now() + Duration::from_secs(10));
                    if Instant::now() > deadline {
                        return Err(CoreError::Request {
                            action,
                            message: if node_known {
                                format!(
                                    "its task runs, but shows no host-mode port for port {} (extra_endpoint_spec may publish it otherwise)",
                                    spec.port
                                )
                            } else {
                                format!(
                                    "its task runs on node '{node_id}', which the swarm does not describe"
                                )
                            },
                        });
                    }
                } else if !is_starting(state) {
                    let reason = status
                        .err
                        .clone()
                        .or_else(|| status.message.clone())
                        .unwrap_or_default();
                    let on = node
                        .as_ref()
                        .map(|n| format!(" on node {}", n.describe()))
                        .unwrap_or_default();
                    return Err(CoreError::Request {
                        action,
                        message: format!("its task is {state}{on}: {reason}"),
                    });
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 3 / 2).min(Duration::from_secs(2));
        }
    }
}

//! Swarm services, for SwarmSpawner: one service (one task) per server.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{TaskState, TaskStatus};
use bollard::query_parameters::ListTasksOptions;

use super::containers::{owned, Owner};
use super::progress::{self, Phase as Step, StartProgress};
use super::{locks, Engine};
use crate::errors::{CoreError, CoreResult};
use crate::log;
use crate::metrics::{self, timed, Phase, Verb};
use crate::spec::{credentials_for, ContainerSpec};
use crate::swarm::{service_spec, SwarmExtras};

/// Where a started service's server listens.
#[derive(Debug, Clone)]
pub struct ServiceOutcome {
    /// Service id.
    pub id: String,
    /// Address the hub connects to.
    pub ip: String,
    /// Port the hub connects to.
    pub port: u16,
}

/// A service's state for `poll`.
#[derive(Debug)]
pub struct ServiceStatus {
    /// Whether its task is running or on its way there.
    pub running: bool,
    /// The task's state word.
    pub state: String,
    /// The container's exit code, when it has one.
    pub exit_code: i64,
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
    async fn service_tasks(&self, name: &str) -> CoreResult<Vec<TaskStatus>> {
        let options = ListTasksOptions {
            filters: Some(HashMap::from([(
                "service".to_owned(),
                vec![name.to_owned()],
            )])),
        };
        let mut tasks = timed(Verb::ListTasks, self.docker().list_tasks(Some(options)))
            .await
            .map_err(|e| self.err(format!("list the tasks of service '{name}'"), e))?;
        // Newest first: a restarted service has older, finished tasks too.
        tasks.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        Ok(tasks.into_iter().filter_map(|t| t.status).collect())
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

    /// The state of a service's newest task; `None` when the service does not exist.
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
        let Some(task) = tasks.first() else {
            // Created, no task scheduled yet: on its way.
            return Ok(Some(ServiceStatus {
                running: true,
                state: "new".to_owned(),
                exit_code: 0,
            }));
        };
        let state = task.state.unwrap_or(TaskState::NEW);
        Ok(Some(ServiceStatus {
            running: state == TaskState::RUNNING || is_starting(state),
            state: state.to_string(),
            exit_code: task
                .container_status
                .as_ref()
                .and_then(|c| c.exit_code)
                .unwrap_or(0),
        }))
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

    async fn start_service_steps(
        &self,
        spec: &ContainerSpec,
        swarm: &SwarmExtras,
        caller_gone: &(dyn Fn() -> bool + Send + Sync),
        progress: &StartProgress,
    ) -> CoreResult<ServiceOutcome> {
        progress.phase(Step::Create);
        let command = self.resolve_command(spec).await?;
        let service = service_spec(spec, swarm, command)?;
        let volumes = spec.named_volumes(Some((
            swarm.volume_driver.as_str(),
            &swarm.volume_driver_options,
        )))?;
        self.remove_service(&spec.name).await?;
        if !volumes.is_empty() {
            progress.phase(Step::Volumes);
        }
        let making_volumes = Instant::now();
        self.ensure_volumes(&volumes, &spec.volume_labels).await?;
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
        let outcome = self.wait_for_task(spec, &id, caller_gone, progress).await;
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

    /// Waits until the task of the service `id` just created runs; where it is reached.
    async fn wait_for_task(
        &self,
        spec: &ContainerSpec,
        id: &str,
        caller_gone: &(dyn Fn() -> bool + Send + Sync),
        progress: &StartProgress,
    ) -> CoreResult<ServiceOutcome> {
        let action = format!("start service '{}'", spec.name);
        let mut wait = Duration::from_millis(100);
        loop {
            if caller_gone() {
                return Err(CoreError::Request {
                    action,
                    message: "cancelled".to_owned(),
                });
            }
            let tasks = self.service_tasks(&spec.name).await?;
            if let Some(task) = tasks.first() {
                let state = task.state.unwrap_or(TaskState::NEW);
                // The swarm's own word for where the task is (pending, assigned, preparing:
                // the node pulling the image, starting).
                progress.detail(&state.to_string());
                if state == TaskState::RUNNING {
                    break;
                }
                if !is_starting(state) {
                    let reason = task
                        .err
                        .clone()
                        .or_else(|| task.message.clone())
                        .unwrap_or_default();
                    return Err(CoreError::Request {
                        action: format!("start service '{}'", spec.name),
                        message: format!("its task is {state}: {reason}"),
                    });
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 3 / 2).min(Duration::from_secs(2));
        }
        let (ip, port) = if spec.use_internal_ip {
            // Swarm's DNS resolves the service name on its networks.
            (spec.name.clone(), spec.port)
        } else {
            let inspect = timed(
                Verb::InspectService,
                self.docker().inspect_service(&spec.name, None),
            )
            .await
            .map_err(|e| self.err(format!("inspect service '{}'", spec.name), e))?;
            let published = inspect
                .endpoint
                .and_then(|e| e.ports)
                .unwrap_or_default()
                .into_iter()
                .find(|p| p.target_port == Some(i64::from(spec.port)))
                .and_then(|p| p.published_port)
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| CoreError::Request {
                    action: format!("find the published port of service '{}'", spec.name),
                    message: format!("port {} is not published", spec.port),
                })?;
            (self.reachable_ip(&spec.host_ip), published)
        };
        Ok(ServiceOutcome {
            id: id.to_owned(),
            ip,
            port,
        })
    }
}

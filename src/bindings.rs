//! The thin PyO3 layer: converts arguments, runs the pure and Docker code, converts results.
//! Every Docker call returns an awaitable on the one process-wide tokio runtime; nothing here
//! blocks the event loop or holds the GIL while waiting on the engine.
//!
//! Panics never cross into Python: every awaitable is made by `awaitable` and every function
//! body that does real work runs in `guard`, which turn a panic into `CoreError::Internal`
//! (a `RustDockerError`). A `PanicException` is a `BaseException`, which the hub does not catch.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use pyo3::prelude::*;
use pyo3_async_runtimes::tokio::future_into_py;

use crate::docker::containers::AddressParams;
use crate::docker::containers::{
    owned_container, ContainerStatus, Owner, StartOutcome, StopParams,
};
use crate::docker::services::{Reach, TASK_END_WAIT};
use crate::docker::volumes::{StageFiles, VolumeDeletion};
use crate::docker::{client_timeout, progress, Engine, TlsFiles};
use crate::errors::{CoreError, CoreResult};
use crate::spec::{
    binds_from_entries, engine_mounts as spec_engine_mounts, ContainerSpec, RegistryAuth,
    VolumeEntry,
};
use crate::swarm::SwarmExtras;
use crate::{memory, template};

/// Whether a pre-pull runs in this process (one at a time).
static PRE_PULLING: AtomicBool = AtomicBool::new(false);

/// Runs `work`, turning a panic into `CoreError::Internal` naming `what`.
pub(crate) fn guard<T, E>(what: &str, work: impl FnOnce() -> Result<T, E>) -> Result<T, E>
where
    E: From<CoreError>,
{
    std::panic::catch_unwind(AssertUnwindSafe(work))
        .unwrap_or_else(|panic| Err(CoreError::from_panic(what, panic.as_ref()).into()))
}

/// `fut`, with a panic while it runs turned into `CoreError::Internal` naming `what`.
pub(crate) fn guarded<T, E, F>(what: &'static str, fut: F) -> impl Future<Output = Result<T, E>>
where
    F: Future<Output = Result<T, E>>,
    E: From<CoreError>,
{
    AssertUnwindSafe(fut).catch_unwind().map(move |result| {
        result.unwrap_or_else(|panic| Err(CoreError::from_panic(what, panic.as_ref()).into()))
    })
}

/// The Python awaitable of `fut`, on the process-wide runtime, panic-guarded (`guarded`).
/// Every future handed to Python goes through here.
fn awaitable<'py, T, F>(py: Python<'py>, what: &'static str, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    future_into_py(py, guarded(what, fut))
}

/// A connected Docker engine, shared by every spawner of the hub process.
#[pyclass(module = "rustdocker._core", name = "DockerClient", frozen)]
pub struct PyDockerClient {
    engine: Engine,
}

/// The result of `DockerClient.start_server`.
#[pyclass(module = "rustdocker._core", name = "StartResult", frozen, get_all)]
pub struct PyStartResult {
    id: String,
    name: String,
    created: bool,
    api_token: Option<String>,
    ip: String,
    port: u16,
    /// What the spec left out and why (e.g. a `mounts` entry at a path `volumes` already
    /// mounts), for the spawner's log.
    warnings: Vec<String>,
    /// The fields a kept container's configuration changed in, by name (never values).
    config_changes: Vec<String>,
    /// Whether a kept container was removed and made anew from the configuration.
    recreated: bool,
    /// What to log about a kept container's configuration, if anything.
    config_note: Option<String>,
}

impl PyStartResult {
    fn new(o: StartOutcome, warnings: Vec<String>) -> Self {
        PyStartResult {
            id: o.id,
            name: o.name,
            created: o.created,
            api_token: o.api_token,
            ip: o.ip,
            port: o.port,
            warnings,
            config_changes: o.config.changed,
            recreated: o.config.recreated,
            config_note: o.config.note,
        }
    }
}

/// The result of `DockerClient.start_service`.
#[pyclass(
    module = "rustdocker._core",
    name = "ServiceStartResult",
    frozen,
    get_all
)]
pub struct PyServiceStartResult {
    id: String,
    ip: String,
    port: u16,
    /// What the spec left out and why, for the spawner's log.
    warnings: Vec<String>,
    /// The id of the swarm node that runs the task.
    node_id: String,
    /// That node's hostname.
    node_hostname: String,
}

#[pymethods]
impl PyServiceStartResult {
    fn __repr__(&self) -> String {
        format!(
            "ServiceStartResult(id={:?}, ip={:?}, port={}, node_hostname={:?})",
            self.id, self.ip, self.port, self.node_hostname
        )
    }
}

/// A container's state as `DockerClient.container_status` reports it.
#[pyclass(module = "rustdocker._core", name = "ContainerStatus", frozen)]
pub struct PyContainerStatus {
    #[pyo3(get)]
    id: String,
    #[pyo3(get)]
    running: bool,
    #[pyo3(get)]
    exit_code: i64,
    #[pyo3(get)]
    status: String,
    /// Whether rustdocker made it (it carries the rustdocker labels).
    #[pyo3(get)]
    managed: bool,
    owner: Option<Owner>,
}

impl From<ContainerStatus> for PyContainerStatus {
    fn from(s: ContainerStatus) -> Self {
        PyContainerStatus {
            id: s.id,
            running: s.running,
            exit_code: s.exit_code,
            status: s.status,
            managed: s.owner.is_some(),
            owner: s.owner,
        }
    }
}

/// The owner a spawner's `labels` dict names; `ValueError` when it names none.
fn owner_of(labels: &BTreeMap<String, String>) -> CoreResult<Owner> {
    Owner::from_labels(|key| labels.get(key)).ok_or_else(|| {
        CoreError::InvalidSpec(
            "the labels name no rustdocker owner (org.rustdocker.managed-by is missing)".to_owned(),
        )
    })
}

#[pymethods]
impl PyStartResult {
    fn __repr__(&self) -> String {
        format!(
            "StartResult(id={:?}, name={:?}, created={}, ip={:?}, port={})",
            self.id, self.name, self.created, self.ip, self.port
        )
    }
}

#[pymethods]
impl PyContainerStatus {
    /// Whether the server whose object labels are `labels` may act on this container: it was
    /// made for that server (same hub, user and server), or it is unlabelled (made by
    /// DockerSpawner or by hand) and `adopt_unlabelled` (the server's state records it), or it
    /// is the container whose id the server's state records (`state_id`).
    #[pyo3(signature = (labels, adopt_unlabelled, state_id=None))]
    fn owned_by(
        &self,
        labels: BTreeMap<String, String>,
        adopt_unlabelled: bool,
        state_id: Option<&str>,
    ) -> PyResult<bool> {
        guard("ContainerStatus.owned_by", || {
            Ok(owned_container(
                &self.id,
                self.owner.as_ref(),
                &owner_of(&labels)?,
                adopt_unlabelled,
                state_id.filter(|s| !s.is_empty()),
            ))
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "ContainerStatus(id={:?}, running={}, exit_code={}, status={:?})",
            self.id, self.running, self.exit_code, self.status
        )
    }
}

#[pymethods]
impl PyDockerClient {
    /// Connects to the engine at `host` (default: `DOCKER_HOST`, else the local socket) and
    /// negotiates the API version. Returns an awaitable of `DockerClient`. `timeout` is each
    /// request's timeout in seconds, from 1 to `MAX_DOCKER_TIMEOUT` (else `ValueError`).
    #[staticmethod]
    #[pyo3(signature = (host=None, timeout=120.0, tls_ca=None, tls_cert=None, tls_key=None))]
    fn connect(
        py: Python<'_>,
        host: Option<String>,
        timeout: f64,
        tls_ca: Option<PathBuf>,
        tls_cert: Option<PathBuf>,
        tls_key: Option<PathBuf>,
    ) -> PyResult<Bound<'_, PyAny>> {
        let timeout = client_timeout(timeout)?;
        let tls = match (tls_ca, tls_cert, tls_key) {
            (None, None, None) => None,
            (Some(ca), Some(cert), Some(key)) => Some(TlsFiles { ca, cert, key }),
            _ => {
                return Err(CoreError::InvalidSpec(
                    "TLS to the Docker engine needs all of a CA certificate, a client certificate and a client key".to_owned(),
                )
                .into())
            }
        };
        awaitable(py, "DockerClient.connect", async move {
            let engine = Engine::connect(host, timeout, tls).await?;
            Ok(PyDockerClient { engine })
        })
    }

    /// The Docker host this client talks to.
    #[getter]
    fn host(&self) -> String {
        self.engine.host().to_owned()
    }

    /// The negotiated Engine API version.
    #[getter]
    fn api_version(&self) -> String {
        self.engine.api_version()
    }

    /// Starts a server from a JSON container spec; awaitable of `StartResult`. `ticket` (unique
    /// per call) is what `settle` takes.
    fn start_server<'py>(
        &self,
        py: Python<'py>,
        spec_json: &str,
        ticket: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let spec = guard("DockerClient.start_server", || {
            ContainerSpec::from_json(spec_json)
        })?;
        let warnings = spec.warnings.clone();
        let engine = self.engine.clone();
        awaitable(py, "DockerClient.start_server", async move {
            let outcome = engine.start_server(spec, ticket).await?;
            Ok(PyStartResult::new(outcome, warnings))
        })
    }

    /// Stops (and with `remove`, removes) the server's container `target` (id or name; default
    /// `name`), under the lock of its name `name`, if it belongs to the server whose labels are
    /// `labels` (or is unlabelled and `adopt_unlabelled`); awaitable of whether it acted.
    #[pyo3(signature = (name, labels, target=None, timeout=None, remove=false, adopt_unlabelled=false))]
    #[allow(clippy::too_many_arguments)]
    fn stop_server<'py>(
        &self,
        py: Python<'py>,
        name: String,
        labels: BTreeMap<String, String>,
        target: Option<String>,
        timeout: Option<i32>,
        remove: bool,
        adopt_unlabelled: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let target = target.filter(|t| !t.is_empty());
        let stop = StopParams {
            timeout,
            remove,
            owner: owner_of(&labels)?,
            adopt_unlabelled,
            // A target given by id is the one the server's state records.
            state_id: target.clone(),
        };
        let target = target
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| name.clone());
        let engine = self.engine.clone();
        awaitable(py, "DockerClient.stop_server", async move {
            Ok(engine.stop_server(&name, &target, stop).await?)
        })
    }

    /// Removes the server's stopped container `target` (id or name; default `name`) under the
    /// lock of its name, if it belongs to the server whose labels are `labels` (or is
    /// unlabelled and `adopt_unlabelled`). A running container, or a failed removal, raises
    /// (`ConflictError` for a running one). Awaitable of whether it removed one.
    #[pyo3(signature = (name, labels, target=None, adopt_unlabelled=false))]
    fn remove_stopped_server<'py>(
        &self,
        py: Python<'py>,
        name: String,
        labels: BTreeMap<String, String>,
        target: Option<String>,
        adopt_unlabelled: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let owner = owner_of(&labels)?;
        // A target given by id is the one the server's state records.
        let state_id = target.filter(|t| !t.is_empty());
        let target = state_id.clone().unwrap_or_else(|| name.clone());
        let engine = self.engine.clone();
        awaitable(py, "DockerClient.remove_stopped_server", async move {
            Ok(engine
                .remove_stopped_server(
                    &name,
                    &target,
                    &owner,
                    adopt_unlabelled,
                    state_id.as_deref(),
                )
                .await?)
        })
    }

    /// Removes the named volumes that provably belong to the deleted server whose labels are
    /// `labels` (see `volumes::kept_because`), never forced; awaitable of a list of
    /// `(name, removed, why kept)`, one per volume looked at.
    #[pyo3(signature = (labels, names, renamed_from=None, user_deleted=false, other_servers=Vec::new(), other_users=Vec::new()))]
    #[allow(clippy::too_many_arguments)]
    fn delete_volumes<'py>(
        &self,
        py: Python<'py>,
        labels: BTreeMap<String, String>,
        names: Vec<String>,
        renamed_from: Option<String>,
        user_deleted: bool,
        other_servers: Vec<String>,
        other_users: Vec<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let job = VolumeDeletion {
            owner: owner_of(&labels)?,
            names,
            renamed_from,
            user_deleted,
            other_servers,
            other_users,
        };
        let engine = self.engine.clone();
        awaitable(py, "DockerClient.delete_volumes", async move {
            let fates = engine.delete_server_volumes(&job).await?;
            Ok(fates
                .into_iter()
                .map(|f| (f.name, f.removed, f.reason))
                .collect::<Vec<_>>())
        })
    }

    /// Removes a container and its anonymous volumes (never a named volume); awaitable of None.
    #[pyo3(signature = (name, force=true))]
    fn remove_container<'py>(
        &self,
        py: Python<'py>,
        name: String,
        force: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine.clone();
        awaitable(py, "DockerClient.remove_container", async move {
            engine.remove_container(&name, force).await?;
            Ok(())
        })
    }

    /// The state of a container; awaitable of `ContainerStatus` or None when it does not exist.
    fn container_status<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine.clone();
        awaitable(py, "DockerClient.container_status", async move {
            Ok(engine
                .container_status(&name)
                .await?
                .map(PyContainerStatus::from))
        })
    }

    /// The state of a container for a poll: from the events cache once synced (a new
    /// connection's first sync is awaited, up to 10 s), else inspected; awaitable of
    /// `ContainerStatus` or None when it does not exist.
    fn polled_status<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine.clone();
        awaitable(py, "DockerClient.polled_status", async move {
            Ok(engine
                .polled_status(&name)
                .await?
                .map(PyContainerStatus::from))
        })
    }

    /// The engine's inspect of container `name` as JSON, or None when it does not exist or is
    /// not the server's whose labels are `labels` (`ContainerStatus.owned_by`).
    #[pyo3(signature = (name, labels, adopt_unlabelled=false))]
    fn inspect_container<'py>(
        &self,
        py: Python<'py>,
        name: String,
        labels: BTreeMap<String, String>,
        adopt_unlabelled: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let owner = owner_of(&labels)?;
        let engine = self.engine.clone();
        awaitable(py, "DockerClient.inspect_container", async move {
            let Some(found) = engine.inspect_container(&name).await? else {
                return Ok(None);
            };
            let found_id = found.id.as_deref().unwrap_or_default();
            let state_id = Some(name.as_str()).filter(|n| *n == found_id);
            if !owned_container(
                found_id,
                Owner::of_inspect(&found).as_ref(),
                &owner,
                adopt_unlabelled,
                state_id,
            ) {
                return Ok(None);
            }
            let json = serde_json::to_string(&found).map_err(|e| CoreError::Request {
                action: format!("inspect container '{name}'"),
                message: format!("serialise the answer: {e}"),
            })?;
            Ok(Some(json))
        })
    }

    /// The state of a container from the events-driven cache, with no API call; None when the
    /// cache is not synced or does not know the container (then use `container_status`).
    fn cached_status(&self, name: &str) -> CoreResult<Option<PyContainerStatus>> {
        guard("DockerClient.cached_status", || {
            Ok(self.engine.cached_status(name).map(PyContainerStatus::from))
        })
    }

    /// Whether the events-driven cache currently mirrors the engine.
    #[getter]
    fn cache_synced(&self) -> bool {
        self.engine.cache().is_synced()
    }

    /// The cache's counters: events applied, full listings, stream disconnects.
    #[getter]
    fn cache_stats(&self) -> BTreeMap<&'static str, u64> {
        let stats = &self.engine.cache().stats;
        BTreeMap::from([
            ("events", stats.events.load(Ordering::Relaxed)),
            ("resyncs", stats.resyncs.load(Ordering::Relaxed)),
            ("disconnects", stats.disconnects.load(Ordering::Relaxed)),
            ("renewals", stats.renewals.load(Ordering::Relaxed)),
        ])
    }

    /// Where a running container's server is reached now; awaitable of `(ip, port)` or None
    /// when the container is missing or not running.
    #[pyo3(signature = (name, port, network_name, use_internal_ip, host_ip))]
    fn container_address<'py>(
        &self,
        py: Python<'py>,
        name: String,
        port: u16,
        network_name: String,
        use_internal_ip: bool,
        host_ip: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine.clone();
        let params = AddressParams {
            name,
            port,
            network_name,
            use_internal_ip,
            host_ip,
        };
        awaitable(py, "DockerClient.container_address", async move {
            Ok(engine.container_address(&params).await?)
        })
    }

    /// The image's own CMD; awaitable of a list or None. `NotFoundError` for a missing image.
    fn image_cmd<'py>(&self, py: Python<'py>, image: String) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine.clone();
        awaitable(py, "DockerClient.image_cmd", async move {
            Ok(engine.image_cmd(&image).await?)
        })
    }

    /// Starts a swarm service from a JSON container spec and JSON swarm extras; awaitable of
    /// a `ServiceStartResult`. `ticket` (unique per call) is what `settle` takes.
    fn start_service<'py>(
        &self,
        py: Python<'py>,
        spec_json: &str,
        swarm_json: &str,
        ticket: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (spec, swarm) = guard("DockerClient.start_service", || {
            Ok::<_, CoreError>((
                ContainerSpec::from_json(spec_json)?,
                swarm_extras(swarm_json)?,
            ))
        })?;
        let warnings = spec.warnings.clone();
        let engine = self.engine.clone();
        awaitable(py, "DockerClient.start_service", async move {
            let out = engine.start_service(spec, swarm, ticket).await?;
            Ok(PyServiceStartResult {
                id: out.id,
                ip: out.ip,
                port: out.port,
                warnings,
                node_id: out.node_id,
                node_hostname: out.node_hostname,
            })
        })
    }

    /// A swarm service's newest task; awaitable of `(running, state, exit_code, node)`, or
    /// None when the service does not exist or is not the server's whose labels are `labels`
    /// (or is unlabelled and `adopt_unlabelled`). `state` is `node-down` for a task the swarm
    /// still shows running on a node that is down (`running` is False then).
    #[pyo3(signature = (name, labels, adopt_unlabelled=false))]
    fn service_status<'py>(
        &self,
        py: Python<'py>,
        name: String,
        labels: BTreeMap<String, String>,
        adopt_unlabelled: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let owner = owner_of(&labels)?;
        let engine = self.engine.clone();
        awaitable(py, "DockerClient.service_status", async move {
            if !engine
                .service_owned(&name, &owner, adopt_unlabelled)
                .await?
            {
                return Ok(None);
            }
            Ok(engine
                .service_status(&name)
                .await?
                .map(|s| (s.running, s.state, s.exit_code, s.node)))
        })
    }

    /// Where the hub reaches the running server of the swarm service `name` (if it is the
    /// server's whose labels are `labels`): awaitable of `(ip, port)`, or None when it has no
    /// running task. `publish_mode` is `ingress` or `host` (the task's node address).
    #[pyo3(signature = (name, labels, port, publish_mode, use_internal_ip, host_ip, adopt_unlabelled=false))]
    #[allow(clippy::too_many_arguments)]
    fn service_address<'py>(
        &self,
        py: Python<'py>,
        name: String,
        labels: BTreeMap<String, String>,
        port: u16,
        publish_mode: &str,
        use_internal_ip: bool,
        host_ip: String,
        adopt_unlabelled: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let owner = owner_of(&labels)?;
        let publish_mode = guard("DockerClient.service_address", || {
            swarm_extras(&serde_json::json!({ "publish_mode": publish_mode }).to_string())
                .map(|s| s.publish_mode)
        })?;
        let reach = Reach {
            port,
            use_internal_ip,
            publish_mode,
            host_ip,
        };
        let engine = self.engine.clone();
        awaitable(py, "DockerClient.service_address", async move {
            if !engine
                .service_owned(&name, &owner, adopt_unlabelled)
                .await?
            {
                return Ok(None);
            }
            Ok(engine.service_address(&name, &reach).await?)
        })
    }

    /// The swarm node of the engine this client talks to (the hub's); awaitable of
    /// `(id, hostname)`, or None when the engine is in no swarm.
    fn swarm_node<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine.clone();
        awaitable(py, "DockerClient.swarm_node", async move {
            Ok(engine.hub_node().await?)
        })
    }

    /// Removes a swarm service (a missing one is fine) if it is the server's whose labels are
    /// `labels` (or is unlabelled and `adopt_unlabelled`); awaitable of whether it removed it.
    /// With `wait_tasks`, it then waits (at most 45 s) until the swarm has ended the service's
    /// tasks, so that their node's resources are free for the next start.
    #[pyo3(signature = (name, labels, adopt_unlabelled=false, wait_tasks=true))]
    fn remove_service<'py>(
        &self,
        py: Python<'py>,
        name: String,
        labels: BTreeMap<String, String>,
        adopt_unlabelled: bool,
        wait_tasks: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let owner = owner_of(&labels)?;
        let engine = self.engine.clone();
        awaitable(py, "DockerClient.remove_service", async move {
            let _guard = crate::docker::locks::acquire(&name).await;
            if !engine
                .service_owned(&name, &owner, adopt_unlabelled)
                .await?
            {
                return Ok(false);
            }
            if wait_tasks {
                engine.remove_service_settled(&name, TASK_END_WAIT).await?;
            } else {
                engine.remove_service(&name).await?;
            }
            Ok(true)
        })
    }

    /// Copies the tar archive `tar` into the named volume `volume` at `path`, through a helper
    /// container of `image` that is created (never started) and removed again; the volume is
    /// created with `labels` if missing. Awaitable of None.
    #[allow(clippy::too_many_arguments)]
    /// The volume's `scope` label is `server`, `user` or `shared` (the default).
    #[pyo3(signature = (volume, path, image, may_pull, helper_name, labels, tar, scope="shared"))]
    fn stage_files<'py>(
        &self,
        py: Python<'py>,
        volume: String,
        path: String,
        image: String,
        may_pull: bool,
        helper_name: String,
        labels: BTreeMap<String, String>,
        tar: Vec<u8>,
        scope: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        if !matches!(scope, "server" | "user" | "shared") {
            return Err(CoreError::InvalidSpec(format!(
                "volume scope {scope:?} is not allowed: use 'server', 'user' or 'shared'"
            ))
            .into());
        }
        let engine = self.engine.clone();
        let job = StageFiles {
            volume,
            path,
            image,
            may_pull,
            helper_name,
            labels,
            tar,
            scope: scope.to_owned(),
        };
        awaitable(py, "DockerClient.stage_files", async move {
            Ok(engine.stage_files(job).await?)
        })
    }

    /// Runs `cmd` (a list, no shell) in container `name`; awaitable of
    /// `(exit_code or None, stdout, stderr)`.
    fn exec_run<'py>(
        &self,
        py: Python<'py>,
        name: String,
        cmd: Vec<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine.clone();
        awaitable(py, "DockerClient.exec_run", async move {
            let out = engine.exec_run(&name, cmd).await?;
            Ok((out.exit_code, out.stdout, out.stderr))
        })
    }

    /// Settles the result of the start made with `ticket`: `claimed` right after the await
    /// returned it, or not (the await was cancelled), which undoes the start. A start's result
    /// not claimed within a minute is undone too. Returns whether this call decided it: false
    /// for a claim that came too late (the start is being undone: do not use its result).
    fn settle(&self, ticket: &str, claimed: bool) -> PyResult<bool> {
        guard("DockerClient.settle", || {
            Ok(self.engine.settle(ticket, claimed))
        })
    }

    /// Pulls `images` one at a time in the background (the pre-pull), its progress in the
    /// hub's log; starts needing one of them meanwhile join its pull. Returns at once: False
    /// when a pre-pull is already running in this process (nothing new is started).
    /// Images the engine has are skipped unless `always`.
    /// `credentials_json`: `{registry: {username, password} | {identitytoken}}`.
    fn pre_pull(
        &self,
        images: Vec<String>,
        stall_timeout: f64,
        always: bool,
        credentials_json: &str,
    ) -> PyResult<bool> {
        guard("DockerClient.pre_pull", || {
            let credentials: BTreeMap<String, RegistryAuth> =
                // The parser's message could quote a secret: not shown.
                serde_json::from_str(credentials_json).map_err(|_| {
                    PyErr::from(CoreError::InvalidSpec(
                        "pre_pull: the registry credentials are not {registry: {username, password} | {identitytoken}}".to_owned(),
                    ))
                })?;
            let stall = Duration::try_from_secs_f64(stall_timeout).map_err(|_| {
                PyErr::from(CoreError::InvalidSpec(format!(
                    "pre_pull: stall timeout {stall_timeout} is not allowed: use a positive number of seconds"
                )))
            })?;
            if PRE_PULLING.swap(true, Ordering::AcqRel) {
                return Ok(false);
            }
            let engine = self.engine.clone();
            pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
                let _ = guarded("DockerClient.pre_pull", async {
                    engine.pre_pull(images, stall, always, credentials).await;
                    Ok::<(), CoreError>(())
                })
                .await;
                PRE_PULLING.store(false, Ordering::Release);
            });
            Ok(true)
        })
    }

    /// What the start with `ticket` is doing now, as JSON (`phase`, `phase_seconds`, `detail`,
    /// `pull`: the pull's figures during a pull, `joined`); None once its steps have ended.
    /// Tickets are unique in the process, so any client reads any start's progress.
    #[allow(clippy::unused_self)]
    fn start_progress(&self, ticket: &str) -> PyResult<Option<String>> {
        guard("DockerClient.start_progress", || {
            progress::snapshot(ticket)
                .map(|s| serde_json::to_string(&s))
                .transpose()
                .map_err(|e| {
                    PyErr::from(CoreError::Internal(format!(
                        "DockerClient.start_progress: {e}; please report it"
                    )))
                })
        })
    }

    /// Waits until no start/stop holds the lock of container `name`; awaitable of None.
    fn wait_idle<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine.clone();
        awaitable(py, "DockerClient.wait_idle", async move {
            engine.wait_idle(&name).await;
            Ok(())
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "DockerClient(host={:?}, api_version={:?})",
            self.engine.host(),
            self.engine.api_version()
        )
    }
}

/// The core's metrics as JSON: Engine API calls by verb (count, errors by kind, latency
/// histogram), spawn phases, pulls, the events cache, and the containers of the hubs `hub_ids`
/// in the caches by state. Read at each Prometheus scrape by `rustdocker.metrics`.
#[pyfunction]
pub fn metrics_snapshot(hub_ids: Vec<String>) -> CoreResult<String> {
    guard("metrics_snapshot", || {
        Ok(crate::metrics::snapshot_json(&hub_ids))
    })
}

/// DockerSpawner's default escaping of `{username}`/`{servername}`.
#[pyfunction]
pub fn escape(text: &str) -> CoreResult<String> {
    guard("escape", || Ok(template::escape(text)))
}

/// DockerSpawner's pre-12 ("legacy") escaping.
#[pyfunction]
pub fn escape_legacy(text: &str) -> CoreResult<String> {
    guard("escape_legacy", || Ok(template::escape_legacy(text)))
}

/// `image` with `/` and `:` replaced by `-`, for `{imagename}`.
#[pyfunction]
pub fn imagename(image: &str) -> CoreResult<String> {
    guard("imagename", || Ok(template::imagename(image)))
}

/// `template.format(**namespace)`, strictly: an unknown field or bad syntax raises `ValueError`.
#[pyfunction]
pub fn format_template(template: &str, namespace: BTreeMap<String, String>) -> CoreResult<String> {
    guard("format_template", || {
        Ok(template::render_strict(template, &namespace)?)
    })
}

/// `template.format(**namespace)`, leniently: the template is returned unchanged on any error.
#[pyfunction]
pub fn format_template_lenient(
    template: &str,
    namespace: BTreeMap<String, String>,
) -> CoreResult<String> {
    guard("format_template_lenient", || {
        Ok(template::render_lenient(template, &namespace))
    })
}

/// JupyterHub `ByteSpecification` for strings; `ValueError` for invalid, negative, NaN, infinite
/// or too large values.
#[pyfunction]
pub fn parse_byte_specification(value: &str) -> CoreResult<i64> {
    guard("parse_byte_specification", || {
        Ok(memory::parse_byte_specification(value)?)
    })
}

/// docker-py's `parse_bytes` for strings (`"1g"`, `"512m"`, `"100"`).
#[pyfunction]
pub fn parse_docker_bytes(value: &str) -> CoreResult<i64> {
    guard("parse_docker_bytes", || {
        Ok(memory::parse_docker_bytes(value)?)
    })
}

/// Validates a container spec and returns the Engine-API create body it produces, as JSON.
/// Pure: no engine is contacted (the image's CMD is not looked up), so the tests can check the
/// whole conversion without one.
#[pyfunction]
pub fn build_create_body(spec_json: &str) -> CoreResult<String> {
    guard("build_create_body", || {
        let spec = ContainerSpec::from_json(spec_json)?;
        let body = spec.create_body(spec.cmd.clone())?;
        serde_json::to_string(&body).map_err(|e| {
            CoreError::internal(
                "build_create_body",
                &format!("serialise the create body: {e}"),
            )
        })
    })
}

/// The one check of a memory setting's value (`mem_limit`, `mem_guarantee`): an int, float or
/// `ByteSpecification` string in, bytes out (None stays None). `ValueError` names `setting`.
#[pyfunction]
pub fn memory_bytes(value: &Bound<'_, PyAny>, setting: &str) -> PyResult<Option<u64>> {
    guard("memory_bytes", || {
        use memory::MemoryValue;
        if value.is_none() {
            return Ok(None);
        }
        let value = if let Ok(flag) = value.cast::<pyo3::types::PyBool>() {
            MemoryValue::Int(i128::from(flag.is_true()))
        } else if let Ok(n) = value.extract::<i128>() {
            MemoryValue::Int(n)
        } else if let Ok(x) = value.cast::<pyo3::types::PyFloat>() {
            MemoryValue::Float(x.value())
        } else if let Ok(text) = value.cast::<pyo3::types::PyString>() {
            MemoryValue::Text(text.to_str()?.to_owned())
        } else {
            MemoryValue::Other(value.repr()?.to_str()?.to_owned())
        };
        Ok(Some(memory::limit_bytes(setting, &value)?))
    })
}

/// The one check of a CPU setting's value (`cpu_limit`, `cpu_guarantee`): a finite number of
/// cores >= 0 (None stays None). `ValueError` names `setting`.
#[pyfunction]
pub fn cpu_cores(value: &Bound<'_, PyAny>, setting: &str) -> PyResult<Option<f64>> {
    guard("cpu_cores", || {
        if value.is_none() {
            return Ok(None);
        }
        let number = if value.cast::<pyo3::types::PyBool>().is_ok() {
            None
        } else {
            value.extract::<f64>().ok()
        };
        let Some(cores) = number else {
            return Err(CoreError::InvalidSpec(format!(
                "{setting} = {} is not allowed: use a number of cores",
                value.repr()?
            ))
            .into());
        };
        Ok(Some(memory::cpu_cores(setting, cores)?))
    })
}

/// SwarmSpawner's settings of a start (JSON), or an error naming what is wrong.
fn swarm_extras(swarm_json: &str) -> CoreResult<SwarmExtras> {
    serde_json::from_str(swarm_json)
        .map_err(|e| CoreError::InvalidSpec(format!("invalid swarm settings: {e}")))
}

/// The named volumes of a swarm start (its spec and swarm settings, JSON) that are the user's
/// own and stay on the node that made them (a `local` volume that mounts no file server): the
/// volumes `place_on_volume_node` keeps on one node.
#[pyfunction]
pub fn node_local_volumes(spec_json: &str, swarm_json: &str) -> PyResult<Vec<String>> {
    guard("node_local_volumes", || {
        let spec = ContainerSpec::from_json(spec_json)?;
        let swarm = swarm_extras(swarm_json)?;
        crate::swarm::node_local_volumes(&spec, &swarm)
    })
    .map_err(Into::into)
}

/// DockerSpawner's `volume_binds` from rendered `volumes` rows (JSON, as in a spec's
/// `volumes`): JSON `{source: {"bind": target, "mode": mode[, "propagation": p]}}`.
#[pyfunction]
pub fn volume_binds(volumes_json: &str) -> PyResult<String> {
    guard("volume_binds", || {
        let entries: Vec<VolumeEntry> = serde_json::from_str(volumes_json)
            .map_err(|e| CoreError::InvalidSpec(format!("invalid volumes: {e}")))?;
        let mut out = serde_json::Map::new();
        for bind in binds_from_entries(&entries)? {
            let mut entry = serde_json::Map::new();
            entry.insert("bind".into(), bind.target.into());
            entry.insert("mode".into(), bind.mode.into());
            if let Some(p) = bind.propagation {
                entry.insert("propagation".into(), p.into());
            }
            out.insert(bind.source, entry.into());
        }
        Ok(serde_json::Value::Object(out).to_string())
    })
}

/// Rendered `mounts` entries (JSON list, docker-py or Engine form) as Engine `Mount` objects
/// (JSON list): DockerSpawner's `mount_binds`.
#[pyfunction]
pub fn engine_mounts(mounts_json: &str) -> PyResult<String> {
    guard("engine_mounts", || {
        let mounts: Vec<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_str(mounts_json)
                .map_err(|e| CoreError::InvalidSpec(format!("invalid mounts: {e}")))?;
        let (converted, _) = spec_engine_mounts(&mounts, &[])?;
        Ok(serde_json::Value::Array(converted).to_string())
    })
}

/// The Docker host rustdocker connects to for `host` (None: `DOCKER_HOST`, else the local
/// socket), and that host's own name (`127.0.0.1` for a local socket): `(host, hostname)`.
#[pyfunction]
#[pyo3(signature = (host=None))]
pub fn docker_host(host: Option<String>) -> CoreResult<(String, String)> {
    guard("docker_host", || {
        let host = crate::docker::resolve_host(host);
        let hostname = crate::docker::engine_hostname(&host);
        Ok((host, hostname))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_a_guarded_future_is_an_internal_error() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let result: CoreResult<u8> = runtime
            .block_on(guarded("DockerClient.start_server", async {
                panic!("index out of bounds")
            }));
        let err = result.unwrap_err();
        assert!(matches!(err, CoreError::Internal(_)), "{err}");
        assert_eq!(
            err.to_string(),
            "internal error in DockerClient.start_server: index out of bounds; please report it"
        );
        let ok: CoreResult<u8> = runtime.block_on(guarded("x", async { Ok(7) }));
        assert_eq!(ok.unwrap(), 7);
    }

    #[test]
    fn a_panic_in_a_guarded_call_is_an_internal_error() {
        let err = guard("escape", || -> CoreResult<()> { panic!("boom") }).unwrap_err();
        assert!(matches!(err, CoreError::Internal(_)), "{err}");
        assert_eq!(
            err.to_string(),
            "internal error in escape: boom; please report it"
        );
        assert_eq!(guard("escape", || Ok::<_, CoreError>(1)).unwrap(), 1);
        // Errors pass through unchanged.
        let err = guard("parse_docker_bytes", || -> CoreResult<i64> {
            Ok(memory::parse_docker_bytes("lots")?)
        })
        .unwrap_err();
        assert!(matches!(err, CoreError::InvalidSpec(_)), "{err}");
    }
}

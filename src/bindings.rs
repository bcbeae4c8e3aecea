//! The thin PyO3 layer: converts arguments, runs the pure and Docker code, converts results.
//! Every Docker call returns an awaitable on the one process-wide tokio runtime; nothing here
//! blocks the event loop or holds the GIL while waiting on the engine.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3_async_runtimes::tokio::future_into_py;

use crate::docker::containers::AddressParams;
use crate::docker::containers::{ContainerStatus, StartOutcome};
use crate::docker::volumes::StageFiles;
use crate::docker::{Engine, TlsFiles};
use crate::errors::CoreError;
use crate::spec::ContainerSpec;
use crate::swarm::SwarmExtras;
use crate::{memory, template};

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
}

impl From<StartOutcome> for PyStartResult {
    fn from(o: StartOutcome) -> Self {
        PyStartResult {
            id: o.id,
            name: o.name,
            created: o.created,
            api_token: o.api_token,
            ip: o.ip,
            port: o.port,
        }
    }
}

/// A container's state as `DockerClient.container_status` reports it.
#[pyclass(module = "rustdocker._core", name = "ContainerStatus", frozen, get_all)]
pub struct PyContainerStatus {
    id: String,
    running: bool,
    exit_code: i64,
    status: String,
}

impl From<ContainerStatus> for PyContainerStatus {
    fn from(s: ContainerStatus) -> Self {
        PyContainerStatus {
            id: s.id,
            running: s.running,
            exit_code: s.exit_code,
            status: s.status,
        }
    }
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
    /// negotiates the API version. Returns an awaitable of `DockerClient`.
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
        if !timeout.is_finite() || timeout <= 0.0 {
            return Err(PyValueError::new_err(format!(
                "Docker client timeout {timeout} is not allowed: use a positive number of seconds"
            )));
        }
        let timeout = Duration::from_secs_f64(timeout);
        let tls = match (tls_ca, tls_cert, tls_key) {
            (None, None, None) => None,
            (Some(ca), Some(cert), Some(key)) => Some(TlsFiles { ca, cert, key }),
            _ => {
                return Err(PyValueError::new_err(
                    "TLS to the Docker engine needs all of a CA certificate, a client certificate and a client key",
                ))
            }
        };
        future_into_py(py, async move {
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

    /// Starts a server from a JSON container spec; awaitable of `StartResult`.
    fn start_server<'py>(&self, py: Python<'py>, spec_json: &str) -> PyResult<Bound<'py, PyAny>> {
        let spec = ContainerSpec::from_json(spec_json)?;
        let engine = self.engine.clone();
        future_into_py(py, async move {
            let outcome = engine.start_server(spec).await?;
            Ok(PyStartResult::from(outcome))
        })
    }

    /// Stops (and with `remove`, removes) a container; awaitable of None.
    #[pyo3(signature = (name, timeout=None, remove=false))]
    fn stop_server<'py>(
        &self,
        py: Python<'py>,
        name: String,
        timeout: Option<i32>,
        remove: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine.clone();
        future_into_py(py, async move {
            engine.stop_server(&name, timeout, remove).await?;
            Ok(())
        })
    }

    /// Removes a container (never its volumes); awaitable of None.
    #[pyo3(signature = (name, force=true))]
    fn remove_container<'py>(
        &self,
        py: Python<'py>,
        name: String,
        force: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine.clone();
        future_into_py(py, async move {
            engine.remove_container(&name, force).await?;
            Ok(())
        })
    }

    /// The state of a container; awaitable of `ContainerStatus` or None when it does not exist.
    fn container_status<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine.clone();
        future_into_py(py, async move {
            Ok(engine
                .container_status(&name)
                .await?
                .map(PyContainerStatus::from))
        })
    }

    /// The state of a container from the events-driven cache, with no API call; None when the
    /// cache is not synced or does not know the container (then use `container_status`).
    fn cached_status(&self, name: &str) -> Option<PyContainerStatus> {
        self.engine.cached_status(name).map(PyContainerStatus::from)
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
        future_into_py(
            py,
            async move { Ok(engine.container_address(&params).await?) },
        )
    }

    /// The image's own CMD; awaitable of a list or None. `NotFoundError` for a missing image.
    fn image_cmd<'py>(&self, py: Python<'py>, image: String) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine.clone();
        future_into_py(py, async move { Ok(engine.image_cmd(&image).await?) })
    }

    /// Starts a swarm service from a JSON container spec and JSON swarm extras; awaitable of
    /// `(service_id, ip, port)`.
    fn start_service<'py>(
        &self,
        py: Python<'py>,
        spec_json: &str,
        swarm_json: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let spec = ContainerSpec::from_json(spec_json)?;
        let swarm: SwarmExtras = serde_json::from_str(swarm_json)
            .map_err(|e| CoreError::InvalidSpec(format!("invalid swarm settings: {e}")))?;
        let engine = self.engine.clone();
        future_into_py(py, async move {
            let out = engine.start_service(spec, swarm).await?;
            Ok((out.id, out.ip, out.port))
        })
    }

    /// A swarm service's newest task; awaitable of `(running, state, exit_code)` or None when
    /// the service does not exist.
    fn service_status<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine.clone();
        future_into_py(py, async move {
            Ok(engine
                .service_status(&name)
                .await?
                .map(|s| (s.running, s.state, s.exit_code)))
        })
    }

    /// Removes a swarm service (a missing one is fine); awaitable of None.
    fn remove_service<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine.clone();
        future_into_py(py, async move { Ok(engine.remove_service(&name).await?) })
    }

    /// Copies the tar archive `tar` into the named volume `volume` at `path`, through a helper
    /// container of `image` that is created (never started) and removed again; the volume is
    /// created with `labels` if missing. Awaitable of None.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (volume, path, image, may_pull, helper_name, labels, tar))]
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
    ) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine.clone();
        let job = StageFiles {
            volume,
            path,
            image,
            may_pull,
            helper_name,
            labels,
            tar,
        };
        future_into_py(py, async move { Ok(engine.stage_files(job).await?) })
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
        future_into_py(py, async move {
            let out = engine.exec_run(&name, cmd).await?;
            Ok((out.exit_code, out.stdout, out.stderr))
        })
    }

    /// Waits until no start/stop holds the lock of container `name`; awaitable of None.
    fn wait_idle<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine.clone();
        future_into_py(py, async move {
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

/// DockerSpawner's default escaping of `{username}`/`{servername}`.
#[pyfunction]
pub fn escape(text: &str) -> String {
    template::escape(text)
}

/// DockerSpawner's pre-12 ("legacy") escaping.
#[pyfunction]
pub fn escape_legacy(text: &str) -> String {
    template::escape_legacy(text)
}

/// `image` with `/` and `:` replaced by `-`, for `{imagename}`.
#[pyfunction]
pub fn imagename(image: &str) -> String {
    template::imagename(image)
}

/// `template.format(**namespace)`, strictly: an unknown field or bad syntax raises `ValueError`.
#[pyfunction]
pub fn format_template(template: &str, namespace: BTreeMap<String, String>) -> PyResult<String> {
    template::render_strict(template, &namespace).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// `template.format(**namespace)`, leniently: the template is returned unchanged on any error.
#[pyfunction]
pub fn format_template_lenient(template: &str, namespace: BTreeMap<String, String>) -> String {
    template::render_lenient(template, &namespace)
}

/// JupyterHub `ByteSpecification` for strings; `ValueError` for invalid, negative, NaN, infinite
/// or too large values.
#[pyfunction]
pub fn parse_byte_specification(value: &str) -> PyResult<i64> {
    memory::parse_byte_specification(value).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// docker-py's `parse_bytes` for strings (`"1g"`, `"512m"`, `"100"`).
#[pyfunction]
pub fn parse_docker_bytes(value: &str) -> PyResult<i64> {
    memory::parse_docker_bytes(value).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Validates a container spec and returns the Engine-API create body it produces, as JSON.
/// Pure: no engine is contacted (the image's CMD is not looked up). For tests and `--dry-run`.
#[pyfunction]
pub fn build_create_body(spec_json: &str) -> PyResult<String> {
    let spec = ContainerSpec::from_json(spec_json)?;
    let body = spec.create_body(spec.cmd.clone())?;
    serde_json::to_string(&body)
        .map_err(|e| CoreError::InvalidSpec(format!("serialise create body: {e}")).into())
}

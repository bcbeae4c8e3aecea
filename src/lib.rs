//! rustdocker's native core, `rustdocker._core`: template and memory-string logic, container
//! specs, and every Docker Engine API call. This file is the export list only.

pub mod bindings;
pub mod docker;
pub mod dockerpy;
pub mod errors;
pub mod log;
pub mod memory;
pub mod metrics;
pub mod record;
pub mod spec;
pub mod swarm;
pub mod template;

#[cfg(test)]
mod proptests;

use pyo3::prelude::*;

/// The native module. Its export list is the whole Python surface (see `_core.pyi`).
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    // One process-wide runtime. Completions of Rust futures hand their result to Python from
    // tokio's blocking pool (each takes the GIL briefly); bounding that pool keeps a storm of
    // completions from becoming a herd of threads competing with the event loop for the CPU
    // and the GIL.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .enable_all()
        .max_blocking_threads(8)
        .thread_name("rustdocker");
    pyo3_async_runtimes::tokio::init(builder);
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<bindings::PyDockerClient>()?;
    m.add_class::<bindings::PyStartResult>()?;
    m.add_class::<bindings::PyContainerStatus>()?;
    m.add_class::<bindings::PyServiceStartResult>()?;
    m.add_function(wrap_pyfunction!(bindings::escape, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::escape_legacy, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::imagename, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::format_template, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::format_template_lenient, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::parse_byte_specification, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::parse_docker_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::build_create_body, m)?)?;
    m.add_function(wrap_pyfunction!(log::set_logger, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::memory_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::cpu_cores, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::volume_binds, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::engine_mounts, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::node_local_volumes, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::docker_host, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::metrics_snapshot, m)?)?;
    // The label keys on every object rustdocker creates: defined once, in the core.
    m.add("LABEL_MANAGED_BY", docker::MANAGED_LABEL)?;
    m.add("LABEL_MANAGED_VALUE", docker::MANAGED_VALUE)?;
    m.add("LABEL_HUB", docker::HUB_LABEL)?;
    m.add("LABEL_USER", docker::USER_LABEL)?;
    m.add("LABEL_SERVER", docker::SERVER_LABEL)?;
    m.add("LABEL_SCOPE", docker::SCOPE_LABEL)?;
    m.add("LABEL_SPEC_DIGEST", record::SPEC_DIGEST_LABEL)?;
    m.add("MAX_DOCKER_TIMEOUT", docker::MAX_DOCKER_TIMEOUT_SECS)?;
    m.add("RustDockerError", py.get_type::<errors::RustDockerError>())?;
    m.add(
        "DockerConnectionError",
        py.get_type::<errors::DockerConnectionError>(),
    )?;
    m.add("DockerApiError", py.get_type::<errors::DockerApiError>())?;
    m.add("NotFoundError", py.get_type::<errors::NotFoundError>())?;
    m.add("ConflictError", py.get_type::<errors::ConflictError>())?;
    Ok(())
}

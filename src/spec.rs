//! The container spec: the plain data Python hands over, turned into the Engine API's create body.
//!
//! Pure logic, no I/O and no `PyO3` types, so every rule here is table-tested without a daemon.
//! The body is built as Engine-API JSON (`PascalCase` fields), merged with the operator's raw
//! `extra_*` fields, and only then parsed into bollard's typed model: one representation, and a
//! field the model does not know is reported by name instead of being silently dropped.

use std::collections::BTreeMap;

use bollard::models::ContainerCreateBody;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::dockerpy;
use crate::errors::{CoreError, CoreResult};

/// Default CFS period (µs) used to turn `cpu_limit` into a quota, as Docker's own `--cpus` does.
pub const DEFAULT_CPU_PERIOD: i64 = 100_000;

/// One `volumes`/`read_only_volumes` entry after templating: `source:target:mode[,propagation]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bind {
    /// Host path (absolute) or named volume.
    pub source: String,
    /// Path inside the container.
    pub target: String,
    /// `rw`, `ro`, `z`, `Z` or a comma list of them.
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Mount propagation (`rshared`, `rslave`, ...), if any.
    #[serde(default)]
    pub propagation: Option<String>,
}

fn default_mode() -> String {
    "rw".to_owned()
}

/// Which image pulls `start` performs (DockerSpawner's `pull_policy`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Pull only when the image is missing.
    #[default]
    Ifnotpresent,
    /// Pull before every start.
    Always,
    /// Never pull; a missing image is an error.
    Never,
    /// Do not even look at the image.
    Skip,
}

impl PullPolicy {
    /// The setting's value as written in configuration.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            PullPolicy::Ifnotpresent => "ifnotpresent",
            PullPolicy::Always => "always",
            PullPolicy::Never => "never",
            PullPolicy::Skip => "skip",
        }
    }
}

/// Everything `start` needs, as built by the Python spawner from its traits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    /// Container name (`object_name`).
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Pull policy.
    #[serde(default)]
    pub pull_policy: PullPolicy,
    /// Command; `None` means the image's own `Cmd`.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// Appended to the command.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Labels for the container.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Labels for the named volumes rustdocker creates.
    #[serde(default)]
    pub volume_labels: BTreeMap<String, String>,
    /// The port the server listens on inside the container.
    pub port: u16,
    /// Bind mounts and named volumes, from `volumes` and `read_only_volumes`.
    #[serde(default)]
    pub binds: Vec<Bind>,
    /// `mounts` entries: docker-py `Mount` keywords (`snake_case`) or Engine fields (`PascalCase`).
    #[serde(default)]
    pub mounts: Vec<Map<String, Value>>,
    /// Memory limit in bytes (`mem_limit`); `None` or 0 sends nothing.
    #[serde(default)]
    pub mem_limit: Option<i64>,
    /// Memory reservation in bytes (`mem_guarantee`).
    #[serde(default)]
    pub mem_guarantee: Option<i64>,
    /// CPU limit in cores (`cpu_limit`).
    #[serde(default)]
    pub cpu_limit: Option<f64>,
    /// Network the container joins (`network_name`).
    #[serde(default)]
    pub network_name: String,
    /// Connect through the container's IP on `network_name` instead of a published port.
    #[serde(default)]
    pub use_internal_ip: bool,
    /// Host interface for the published port.
    #[serde(default)]
    pub host_ip: String,
    /// `links`: `{name: alias}`.
    #[serde(default)]
    pub links: BTreeMap<String, String>,
    /// Remove a leftover container at start, and the container at stop.
    #[serde(default)]
    pub remove: bool,
    /// Raw Engine-API create fields merged over the computed body.
    #[serde(default)]
    pub extra_create: Map<String, Value>,
    /// Raw Engine-API `HostConfig` fields merged over the computed host config.
    #[serde(default)]
    pub extra_host_config: Map<String, Value>,
}

impl ContainerSpec {
    /// Parses the JSON the Python layer sends; a bad field is named in the error.
    pub fn from_json(text: &str) -> CoreResult<Self> {
        let mut spec: ContainerSpec = serde_json::from_str(text)
            .map_err(|e| CoreError::InvalidSpec(format!("invalid container spec: {e}")))?;
        spec.extra_create = dockerpy::create_kwargs("extra_create_kwargs", &spec.extra_create)?;
        spec.extra_host_config =
            dockerpy::host_config("extra_host_config", &spec.extra_host_config)?;
        spec.validate()?;
        Ok(spec)
    }

    fn validate(&self) -> CoreResult<()> {
        if self.name.is_empty() {
            return Err(CoreError::InvalidSpec(
                "container name is empty: check name_template".to_owned(),
            ));
        }
        if self.image.is_empty() {
            return Err(CoreError::InvalidSpec("image is empty".to_owned()));
        }
        if let Some(mem) = self.mem_limit {
            if mem < 0 {
                return Err(CoreError::InvalidSpec(format!(
                    "mem_limit {mem} is negative: use a positive number of bytes, or 0/None for no limit"
                )));
            }
        }
        if let Some(cpu) = self.cpu_limit {
            if !cpu.is_finite() || cpu < 0.0 {
                return Err(CoreError::InvalidSpec(format!(
                    "cpu_limit {cpu} is not allowed: use a positive number of cores, or 0/None for no limit"
                )));
            }
        }
        for bind in &self.binds {
            if bind.source.is_empty() || bind.target.is_empty() {
                return Err(CoreError::InvalidSpec(format!(
                    "volumes entry '{}' -> '{}' has an empty side",
                    bind.source, bind.target
                )));
            }
        }
        Ok(())
    }

    /// The port key Docker uses, e.g. `8888/tcp`.
    #[must_use]
    pub fn port_key(&self) -> String {
        format!("{}/tcp", self.port)
    }

    /// Named volumes (not host paths) referenced by `binds` and by `type: volume` mounts.
    /// These are created explicitly, with labels, before the container.
    #[must_use]
    pub fn named_volumes(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for bind in &self.binds {
            if is_named_volume(&bind.source) {
                names.push(bind.source.clone());
            }
        }
        for mount in &self.mounts {
            let kind = get_str(mount, &["type", "Type"]).unwrap_or("volume");
            if kind == "volume" {
                if let Some(source) = get_str(mount, &["source", "Source"]) {
                    if !source.is_empty() {
                        names.push(source.to_owned());
                    }
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// The cpu period the quota is computed against: `extra_host_config`'s if given.
    fn cpu_period(&self) -> CoreResult<i64> {
        match self.extra_host_config.get("CpuPeriod") {
            None | Some(Value::Null) => Ok(DEFAULT_CPU_PERIOD),
            Some(v) => v.as_i64().filter(|p| *p > 0).ok_or_else(|| {
                CoreError::InvalidSpec(format!(
                    "extra_host_config cpu_period {v} is not allowed: use a positive integer of microseconds"
                ))
            }),
        }
    }

    /// Builds the Engine-API create body as JSON, with `command` the resolved command.
    pub fn create_body_json(&self, command: Option<Vec<String>>) -> CoreResult<Value> {
        let mut host = Map::new();
        let binds: Vec<String> = self.binds.iter().map(bind_string).collect();
        if !binds.is_empty() {
            host.insert("Binds".into(), json!(binds));
        }
        let mounts = self
            .mounts
            .iter()
            .map(mount_to_engine)
            .collect::<CoreResult<Vec<Value>>>()?;
        if !mounts.is_empty() {
            host.insert("Mounts".into(), Value::Array(mounts));
        }
        if !self.links.is_empty() {
            let links: Vec<String> = self
                .links
                .iter()
                .map(|(name, alias)| format!("{name}:{alias}"))
                .collect();
            host.insert("Links".into(), json!(links));
        }
        // Nothing is sent for an unset limit: `Memory: 0` would override a daemon-side default.
        if let Some(mem) = self.mem_limit.filter(|m| *m > 0) {
            host.insert("Memory".into(), json!(mem));
        }
        if let Some(mem) = self.mem_guarantee.filter(|m| *m > 0) {
            host.insert("MemoryReservation".into(), json!(mem));
        }
        if let Some(cpu) = self.cpu_limit.filter(|c| *c > 0.0) {
            let period = self.cpu_period()?;
            // Truncation toward zero, as DockerSpawner's int(cpu_limit * period).
            #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
            let quota = (cpu * period as f64) as i64;
            if quota < 1000 {
                return Err(CoreError::InvalidSpec(format!(
                    "cpu_limit {cpu} is too small: with a cpu period of {period} µs the quota would be {quota} µs, and Docker needs at least 1000"
                )));
            }
            host.insert("CpuPeriod".into(), json!(period));
            host.insert("CpuQuota".into(), json!(quota));
        }
        if !self.use_internal_ip {
            host.insert(
                "PortBindings".into(),
                json!({ self.port_key(): [{"HostIp": self.host_ip, "HostPort": ""}] }),
            );
        }
        deep_merge(&mut host, &self.extra_host_config);
        let network_mode_unset = host.get("NetworkMode").is_none_or(Value::is_null);
        if network_mode_unset && !self.network_name.is_empty() {
            host.insert("NetworkMode".into(), json!(self.network_name));
        }
        if host.get("NetworkMode").and_then(Value::as_str) == Some("host") {
            // Publishing ports is meaningless on the host network and the engine rejects it.
            host.remove("PortBindings");
        }

        // `environment` in extra_create_kwargs adds to the computed environment key by key, as
        // DockerSpawner's deep merge of the two dicts does, instead of replacing the list.
        let mut extra_create = self.extra_create.clone();
        let mut env_map = self.env.clone();
        if let Some(extra_env) = extra_create.remove("Env") {
            let Value::Array(entries) = extra_env else {
                return Err(CoreError::InvalidSpec(format!(
                    "extra_create_kwargs environment {extra_env} is not allowed: use a dict or a list of 'KEY=value'"
                )));
            };
            for entry in entries {
                let entry = entry.as_str().unwrap_or_default().to_owned();
                let (k, v) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
                env_map.insert(k.to_owned(), v.to_owned());
            }
        }
        let env: Vec<String> = env_map.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut body = Map::new();
        body.insert("Image".into(), json!(self.image));
        body.insert("Env".into(), json!(env));
        body.insert("Labels".into(), json!(self.labels));
        body.insert("ExposedPorts".into(), json!({ self.port_key(): {} }));
        if let Some(command) = command {
            body.insert("Cmd".into(), json!(command));
        }
        let mut targets: Vec<&str> = self.binds.iter().map(|b| b.target.as_str()).collect();
        targets.sort_unstable();
        targets.dedup();
        if !targets.is_empty() {
            let volumes: Map<String, Value> = targets
                .into_iter()
                .map(|t| (t.to_owned(), json!({})))
                .collect();
            body.insert("Volumes".into(), Value::Object(volumes));
        }
        deep_merge(&mut body, &extra_create);
        // Computed host config wins over a `HostConfig` given in extra_create, as in DockerSpawner;
        // extra_host_config was already merged over it above.
        match body.get_mut("HostConfig") {
            Some(Value::Object(existing)) => {
                for (k, v) in host {
                    existing.insert(k, v);
                }
            }
            _ => {
                body.insert("HostConfig".into(), Value::Object(host));
            }
        }
        Ok(Value::Object(body))
    }

    /// The typed create body, with unknown fields reported instead of silently dropped.
    pub fn create_body(&self, command: Option<Vec<String>>) -> CoreResult<ContainerCreateBody> {
        let json = self.create_body_json(command)?;
        let typed: ContainerCreateBody = serde_json::from_value(json.clone())
            .map_err(|e| CoreError::InvalidSpec(format!("invalid container settings: {e}")))?;
        let back = serde_json::to_value(&typed)
            .map_err(|e| CoreError::InvalidSpec(format!("invalid container settings: {e}")))?;
        if let Some(field) = first_unknown_field(&json, &back, "") {
            return Err(CoreError::InvalidSpec(format!(
                "unknown Docker Engine field '{field}' in extra_create_kwargs/extra_host_config: it is not part of the Engine API's container create body"
            )));
        }
        Ok(typed)
    }
}

/// Docker treats a bind source that is not an absolute path as a named volume.
#[must_use]
pub fn is_named_volume(source: &str) -> bool {
    !source.starts_with('/')
}

/// `source:target:mode[,propagation]`, the `Binds` syntax.
#[must_use]
pub fn bind_string(bind: &Bind) -> String {
    match &bind.propagation {
        Some(p) if !p.is_empty() => format!("{}:{}:{},{}", bind.source, bind.target, bind.mode, p),
        _ => format!("{}:{}:{}", bind.source, bind.target, bind.mode),
    }
}

fn get_str<'a>(map: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| map.get(*k).and_then(Value::as_str))
}

/// Converts one `mounts` entry. docker-py's `Mount(**d)` keywords are accepted, as DockerSpawner
/// configs use them; Engine-API `PascalCase` fields pass through unchanged.
pub(crate) fn mount_to_engine(mount: &Map<String, Value>) -> CoreResult<Value> {
    let mut out = Map::new();
    let mut bind_options = Map::new();
    let mut volume_options = Map::new();
    let mut tmpfs_options = Map::new();
    for (key, value) in mount {
        match key.as_str() {
            "target" | "Target" => {
                out.insert("Target".into(), value.clone());
            }
            "source" | "Source" => {
                out.insert("Source".into(), value.clone());
            }
            "type" | "Type" => {
                out.insert("Type".into(), value.clone());
            }
            "read_only" | "ReadOnly" => {
                out.insert("ReadOnly".into(), value.clone());
            }
            "consistency" | "Consistency" => {
                out.insert("Consistency".into(), value.clone());
            }
            "propagation" => {
                bind_options.insert("Propagation".into(), value.clone());
            }
            "no_copy" => {
                volume_options.insert("NoCopy".into(), value.clone());
            }
            "labels" => {
                volume_options.insert("Labels".into(), value.clone());
            }
            "subpath" => {
                volume_options.insert("Subpath".into(), value.clone());
            }
            "driver_config" => {
                volume_options.insert("DriverConfig".into(), driver_config(value)?);
            }
            "tmpfs_size" => {
                tmpfs_options.insert("SizeBytes".into(), value.clone());
            }
            "tmpfs_mode" => {
                tmpfs_options.insert("Mode".into(), value.clone());
            }
            "BindOptions" | "VolumeOptions" | "TmpfsOptions" => {
                out.insert(key.clone(), value.clone());
            }
            other => {
                return Err(CoreError::InvalidSpec(format!(
                    "mounts entry {}: unknown key '{other}'; allowed: target, source, type, read_only, consistency, propagation, no_copy, labels, driver_config, tmpfs_size, tmpfs_mode, subpath",
                    Value::Object(mount.clone())
                )))
            }
        }
    }
    if out
        .get("Target")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(CoreError::InvalidSpec(format!(
            "mounts entry {} has no 'target'",
            Value::Object(mount.clone())
        )));
    }
    if !out.contains_key("Type") {
        out.insert("Type".into(), json!("volume"));
    }
    for (name, opts) in [
        ("BindOptions", bind_options),
        ("VolumeOptions", volume_options),
        ("TmpfsOptions", tmpfs_options),
    ] {
        if !opts.is_empty() {
            out.insert(name.into(), Value::Object(opts));
        }
    }
    Ok(Value::Object(out))
}

fn driver_config(value: &Value) -> CoreResult<Value> {
    match value {
        Value::String(name) => Ok(json!({ "Name": name })),
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                match k.as_str() {
                    "name" | "Name" => out.insert("Name".into(), v.clone()),
                    "options" | "Options" => out.insert("Options".into(), v.clone()),
                    other => {
                        return Err(CoreError::InvalidSpec(format!(
                            "mounts driver_config: unknown key '{other}'; allowed: name, options"
                        )))
                    }
                };
            }
            Ok(Value::Object(out))
        }
        other => Err(CoreError::InvalidSpec(format!(
            "mounts driver_config {other} is not allowed: use a driver name or {{'name': ..., 'options': {{...}}}}"
        ))),
    }
}

/// Recursive dict merge: objects merge key by key, anything else in `src` replaces.
pub fn deep_merge(dest: &mut Map<String, Value>, src: &Map<String, Value>) {
    for (key, value) in src {
        match (dest.get_mut(key), value) {
            (Some(Value::Object(d)), Value::Object(s)) => deep_merge(d, s),
            _ => {
                dest.insert(key.clone(), value.clone());
            }
        }
    }
}

/// The first object key present in `sent` but lost by the typed round trip (`kept`), as a dotted
/// path. Free-form maps (labels, env-like maps) keep all their keys, so only real unknowns show.
pub(crate) fn first_unknown_field(sent: &Value, kept: &Value, path: &str) -> Option<String> {
    match (sent, kept) {
        (Value::Object(s), Value::Object(k)) => {
            for (key, value) in s {
                let here = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match k.get(key) {
                    None if !value.is_null() => return Some(here),
                    Some(inner) => {
                        if let Some(found) = first_unknown_field(value, inner, &here) {
                            return Some(found);
                        }
                    }
                    None => {}
                }
            }
            None
        }
        (Value::Array(s), Value::Array(k)) => s
            .iter()
            .zip(k.iter())
            .enumerate()
            .find_map(|(i, (a, b))| first_unknown_field(a, b, &format!("{path}[{i}]"))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: Value) -> ContainerSpec {
        let mut base = json!({
            "name": "jupyter-alice",
            "image": "img:1",
            "port": 8888,
            "host_ip": "127.0.0.1",
            "network_name": "bridge",
        });
        deep_merge(base.as_object_mut().unwrap(), extra.as_object().unwrap());
        ContainerSpec::from_json(&base.to_string()).unwrap()
    }

    #[test]
    fn unset_limits_send_nothing() {
        let body = spec(json!({})).create_body_json(None).unwrap();
        let host = &body["HostConfig"];
        assert!(host.get("Memory").is_none());
        assert!(host.get("CpuQuota").is_none());
        assert!(host.get("CpuPeriod").is_none());
        assert!(host.get("MemoryReservation").is_none());
        let body = spec(json!({"mem_limit": 0, "cpu_limit": 0.0}))
            .create_body_json(None)
            .unwrap();
        assert!(body["HostConfig"].get("Memory").is_none());
        assert!(body["HostConfig"].get("CpuPeriod").is_none());
    }

    #[test]
    fn limits_map_to_engine_fields() {
        let s = spec(
            json!({"mem_limit": 1_610_612_736_i64, "mem_guarantee": 536_870_912, "cpu_limit": 0.5}),
        );
        let host = s.create_body_json(None).unwrap()["HostConfig"].clone();
        assert_eq!(host["Memory"], json!(1_610_612_736_i64));
        assert_eq!(host["MemoryReservation"], json!(536_870_912));
        assert_eq!(host["CpuPeriod"], json!(100_000));
        assert_eq!(host["CpuQuota"], json!(50_000));
    }

    #[test]
    fn cpu_period_from_extra_host_config() {
        let s = spec(json!({"cpu_limit": 0.5, "extra_host_config": {"CpuPeriod": 50000}}));
        let host = s.create_body_json(None).unwrap()["HostConfig"].clone();
        assert_eq!(host["CpuPeriod"], json!(50_000));
        assert_eq!(host["CpuQuota"], json!(25_000));
    }

    #[test]
    fn binds_and_volumes() {
        let s = spec(json!({"binds": [
            {"source": "jupyterhub-user-alice", "target": "/home/jovyan/work"},
            {"source": "/data", "target": "/data", "mode": "ro", "propagation": "rshared"},
        ]}));
        let body = s.create_body_json(None).unwrap();
        assert_eq!(
            body["HostConfig"]["Binds"],
            json!([
                "jupyterhub-user-alice:/home/jovyan/work:rw",
                "/data:/data:ro,rshared"
            ])
        );
        assert_eq!(
            body["Volumes"],
            json!({"/data": {}, "/home/jovyan/work": {}})
        );
        assert_eq!(s.named_volumes(), vec!["jupyterhub-user-alice".to_owned()]);
    }

    #[test]
    fn mounts_snake_case_and_pascal() {
        let s = spec(json!({"mounts": [
            {"source": "/jupyterhub-user-alice", "target": "/w", "type": "bind", "propagation": "rprivate", "read_only": true},
            {"source": "vol-alice", "target": "/v", "labels": {"a": "b"}},
            {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1024}},
        ]}));
        let mounts = s.create_body_json(None).unwrap()["HostConfig"]["Mounts"].clone();
        assert_eq!(
            mounts[0],
            json!({"Source": "/jupyterhub-user-alice", "Target": "/w", "Type": "bind", "ReadOnly": true, "BindOptions": {"Propagation": "rprivate"}})
        );
        assert_eq!(
            mounts[1],
            json!({"Source": "vol-alice", "Target": "/v", "Type": "volume", "VolumeOptions": {"Labels": {"a": "b"}}})
        );
        assert_eq!(mounts[2]["Type"], json!("tmpfs"));
        assert_eq!(s.named_volumes(), vec!["vol-alice".to_owned()]);
        s.create_body(None).unwrap();
    }

    #[test]
    fn mount_unknown_key_is_named() {
        let s = spec(json!({"mounts": [{"target": "/x", "sauce": "y"}]}));
        let err = s.create_body_json(None).unwrap_err().to_string();
        assert!(err.contains("'sauce'"), "{err}");
    }

    #[test]
    fn ports_published_unless_internal_ip() {
        let body = spec(json!({})).create_body_json(None).unwrap();
        assert_eq!(
            body["HostConfig"]["PortBindings"],
            json!({"8888/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]})
        );
        assert_eq!(body["ExposedPorts"], json!({"8888/tcp": {}}));
        let body = spec(json!({"use_internal_ip": true, "network_name": "net"}))
            .create_body_json(None)
            .unwrap();
        assert!(body["HostConfig"].get("PortBindings").is_none());
        assert_eq!(body["HostConfig"]["NetworkMode"], json!("net"));
    }

    #[test]
    fn extra_host_config_network_mode_wins() {
        let body = spec(json!({"extra_host_config": {"NetworkMode": "host"}}))
            .create_body_json(None)
            .unwrap();
        assert_eq!(body["HostConfig"]["NetworkMode"], json!("host"));
        assert!(body["HostConfig"].get("PortBindings").is_none());
    }

    #[test]
    fn unknown_engine_field_is_named() {
        let s = spec(json!({"extra_host_config": {"ShmSise": 5}}));
        let err = s.create_body(None).unwrap_err().to_string();
        assert!(err.contains("HostConfig.ShmSise"), "{err}");
        let s = spec(json!({"extra_host_config": {"ShmSize": 5}}));
        let body = s.create_body(None).unwrap();
        assert_eq!(body.host_config.unwrap().shm_size, Some(5));
    }

    #[test]
    fn deep_merge_labels() {
        let s = spec(json!({"labels": {"a": "1"}, "extra_create": {"Labels": {"b": "2"}}}));
        let body = s.create_body(None).unwrap();
        let labels = body.labels.unwrap();
        assert_eq!(labels.get("a").map(String::as_str), Some("1"));
        assert_eq!(labels.get("b").map(String::as_str), Some("2"));
    }

    #[test]
    fn docker_py_keywords_convert_and_env_merges() {
        let s = spec(json!({
            "env": {"A": "1", "B": "2"},
            "extra_create": {"environment": {"B": "3", "C": "4"}, "user": "root"},
            "extra_host_config": {"shm_size": "1g", "cpu_period": 50000},
            "cpu_limit": 0.5,
        }));
        let body = s.create_body(None).unwrap();
        assert_eq!(body.env.unwrap(), vec!["A=1", "B=3", "C=4"]);
        assert_eq!(body.user.as_deref(), Some("root"));
        let host = body.host_config.unwrap();
        assert_eq!(host.shm_size, Some(1_073_741_824));
        assert_eq!(host.cpu_period, Some(50_000));
        assert_eq!(host.cpu_quota, Some(25_000));
    }

    #[test]
    fn bad_values_are_named() {
        for (extra, needle) in [
            (json!({"mem_limit": -1}), "mem_limit -1"),
            (json!({"cpu_limit": -0.5}), "cpu_limit -0.5"),
            (json!({"cpu_limit": 0.001}), "too small"),
        ] {
            let mut base = json!({"name": "n", "image": "i", "port": 8888});
            deep_merge(base.as_object_mut().unwrap(), extra.as_object().unwrap());
            let err = ContainerSpec::from_json(&base.to_string())
                .and_then(|s| s.create_body_json(None))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err}");
        }
        let err = ContainerSpec::from_json(r#"{"name":"n","image":"i","port":8888,"bogus":1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus"), "{err}");
    }
}

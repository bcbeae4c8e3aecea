//! The container spec: the plain data Python hands over, turned into the Engine API's create body.
//!
//! Pure logic, no I/O and no `PyO3` types, so every rule here is table-tested without a daemon.
//! The body is built as Engine-API JSON (`PascalCase` fields), merged with the operator's raw
//! `extra_*` fields, and only then parsed into bollard's typed model: one representation, and a
//! field the model does not know is reported by name instead of being silently dropped.

use std::collections::BTreeMap;

use bollard::models::ContainerCreateBody;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::dockerpy;
use crate::errors::{CoreError, CoreResult};

/// Default CFS period (µs) used to turn `cpu_limit` into a quota, as Docker's own `--cpus` does.
pub const DEFAULT_CPU_PERIOD: i64 = 100_000;

/// One mount of a host path or named volume, in the `Binds` form `source:target:mode[,propagation]`,
/// as parsed from the rendered `volumes` rows.
#[derive(Debug)]
pub struct Bind {
    /// Host path (absolute) or named volume.
    pub source: String,
    /// Path inside the container.
    pub target: String,
    /// `rw`, `ro`, `z`, `Z` or a comma list of them.
    pub mode: String,
    /// Mount propagation (`rshared`, `rslave`, ...), if any.
    pub propagation: Option<String>,
    /// The setting it comes from, for messages.
    pub setting: String,
}

/// One entry of a volumes-like setting, rendered by Python but otherwise as the operator wrote
/// it: `setting[source] = target`, where `target` is a container path or
/// `{"bind": path, "mode": "rw", "propagation": ...}` (DockerSpawner's `volumes` value forms).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeEntry {
    /// The setting the entry comes from (`volumes`, `read_only_volumes`, ...), for messages.
    pub setting: String,
    /// Host path (absolute) or named volume, rendered.
    pub source: String,
    /// A container path, or a dict with `bind` and optionally `mode` and `propagation`.
    pub target: Value,
    /// The mode when `target` gives none: `ro` for `read_only_volumes`.
    #[serde(default)]
    pub read_only: bool,
}

/// A named volume as the configuration describes it (see `ContainerSpec::named_volumes`).
#[derive(Debug, PartialEq)]
pub struct VolumeSpec {
    /// The volume's name.
    pub name: String,
    /// Its driver; None: the engine's default (`local`).
    pub driver: Option<String>,
    /// The driver's options (for `local`: `type`, `o`, `device`).
    pub options: BTreeMap<String, String>,
    /// Labels the configuration gives it, besides rustdocker's own.
    pub labels: BTreeMap<String, String>,
    /// Meant to be this user's own: one labelled as another user's is refused.
    pub per_user: bool,
    /// Meant to be this one server's own (its name differs for every user and server).
    pub per_server: bool,
}

impl VolumeSpec {
    /// The value of its scope label (`SCOPE_LABEL`): `server`, `user` or `shared`.
    #[must_use]
    pub fn scope(&self) -> &'static str {
        match (self.per_server, self.per_user) {
            (true, true) => "server",
            (_, true) => "user",
            _ => "shared",
        }
    }
}

/// What a start does with a kept container (`remove = False`) made from another configuration
/// (`on_config_change`); a changed image always recreates it.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ConfigChange {
    /// Resume it as it is, with a warning naming what changed.
    #[default]
    Warn,
    /// Remove it (its named volumes and host directories stay) and create it anew.
    Recreate,
}

/// A JSON object of strings (driver options, labels), or an error naming `what`.
fn string_map(what: &str, map: &Map<String, Value>) -> CoreResult<BTreeMap<String, String>> {
    map.iter()
        .map(|(key, value)| match value {
            Value::String(text) => Ok((key.clone(), text.clone())),
            other => Err(CoreError::InvalidSpec(format!(
                "{what}: {key}={other} is not allowed: use a string"
            ))),
        })
        .collect()
}

/// One entry of `networks`: a Docker network the container joins, with the aliases (rendered)
/// it answers to there.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NetworkEntry {
    /// The network's name (or id).
    pub name: String,
    /// Extra DNS names of the container on that network.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// Networks that are not user-defined: they take no aliases, and `host` and `none` take no
/// other network beside them.
const BUILTIN_NETWORKS: [&str; 3] = ["bridge", "host", "none"];

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

/// A registry's credentials: a user name and a password (or access token), or an identity
/// token. Never shown: its `Debug` hides the secrets, and `ContainerSpec::redact` removes them
/// from any message.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistryAuth {
    /// User name.
    #[serde(default)]
    pub username: Option<String>,
    /// Password or access token.
    #[serde(default)]
    pub password: Option<String>,
    /// OAuth identity (refresh) token, instead of a user name and password.
    #[serde(default)]
    pub identitytoken: Option<String>,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field(
                "identitytoken",
                &self.identitytoken.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

impl RegistryAuth {
    /// The credentials as the engine takes them (`X-Registry-Auth`) for `registry`.
    #[must_use]
    pub fn credentials(&self, registry: &str) -> bollard::auth::DockerCredentials {
        bollard::auth::DockerCredentials {
            username: self.username.clone(),
            password: self.password.clone(),
            identitytoken: self.identitytoken.clone(),
            serveraddress: Some(registry.to_owned()),
            ..Default::default()
        }
    }

    fn secrets(&self) -> impl Iterator<Item = &str> {
        self.password
            .iter()
            .chain(self.identitytoken.iter())
            .map(String::as_str)
    }
}

/// `registry_credentials` read from the spec, with an error that never quotes the entry:
/// the parser's own message shows the value it could not read, which may be a password.
fn registry_credentials<'de, D>(deserializer: D) -> Result<BTreeMap<String, RegistryAuth>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let value = Value::deserialize(deserializer)?;
    serde_json::from_value(value).map_err(|_| {
        serde::de::Error::custom(
            "registry_credentials is not {registry: {username, password} | {identitytoken}} \
             (the entry is not shown: it may hold a secret)",
        )
    })
}

/// The credentials in `map` for the registry `image` is pulled from, if any.
#[must_use]
pub fn credentials_for(
    map: &BTreeMap<String, RegistryAuth>,
    image: &str,
) -> Option<bollard::auth::DockerCredentials> {
    let registry = crate::docker::images::registry_of(image);
    map.get(registry).map(|auth| auth.credentials(registry))
}

/// Everything `start` needs, as built by the Python spawner from its traits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    /// Container name (`object_name`).
    pub name: String,
    /// The container id the server's state records (empty when none): that container is the
    /// server's own whatever its labels say.
    #[serde(default)]
    pub state_id: String,
    /// Image reference.
    pub image: String,
    /// Pull policy.
    #[serde(default)]
    pub pull_policy: PullPolicy,
    /// Seconds a pull may bring nothing before it fails as stalled (`pull_stall_timeout`).
    #[serde(default)]
    pub pull_stall_timeout: Option<f64>,
    /// Credentials per registry host (`registry_credentials`, resolved by Python); the pull
    /// sends those of the image's registry.
    #[serde(default, deserialize_with = "registry_credentials")]
    pub registry_credentials: BTreeMap<String, RegistryAuth>,
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
    /// The rendered entries of `volumes`, `read_only_volumes` and the volumes the spawner adds
    /// (internal-SSL certificates, a system user's home), in order: a later entry for the same
    /// source replaces an earlier one, as in a Python dict.
    #[serde(default)]
    pub volumes: Vec<VolumeEntry>,
    /// Named volumes meant to be this user's own (their templates name each user's its own):
    /// one labelled as another user's is refused.
    #[serde(default)]
    pub user_volumes: Vec<String>,
    /// Named volumes meant to be this server's own (their templates name each user's server
    /// its own): labelled `server` in `SCOPE_LABEL`.
    #[serde(default)]
    pub server_volumes: Vec<String>,
    /// What a start does with a kept container made from another configuration.
    #[serde(default)]
    pub on_config_change: ConfigChange,
    /// `mounts` entries, rendered: docker-py `Mount` keywords (`snake_case`) or Engine fields
    /// (`PascalCase`).
    #[serde(default)]
    pub mounts: Vec<Map<String, Value>>,
    /// `volumes` parsed (computed by `from_json`).
    #[serde(skip)]
    pub binds: Vec<Bind>,
    /// `mounts` as Engine `Mount` objects, less those whose target a bind already mounts
    /// (computed by `from_json`).
    #[serde(skip)]
    pub engine_mounts: Vec<Value>,
    /// What `from_json` left out and why, for the spawner's log (computed by `from_json`).
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// Memory limit in bytes (`mem_limit`, checked by `memory::limit_bytes`); `None` or 0 sends
    /// nothing.
    #[serde(default)]
    pub mem_limit: Option<u64>,
    /// Memory reservation in bytes (`mem_guarantee`).
    #[serde(default)]
    pub mem_guarantee: Option<u64>,
    /// CPU limit in cores (`cpu_limit`, checked by `memory::cpu_cores`).
    #[serde(default)]
    pub cpu_limit: Option<f64>,
    /// Network the container joins (`network_name`).
    #[serde(default)]
    pub network_name: String,
    /// `networks`: every network the container joins, the first being `network_name` (the one
    /// the hub reaches the server on). Empty: `network_name` only, without aliases.
    #[serde(default)]
    pub networks: Vec<NetworkEntry>,
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
    /// Create settings that apply where `extra_create` does not set them (the spawner's
    /// `create_kwargs_defaults`, e.g. SystemUserSpawner's `user` and `working_dir`), in either
    /// spelling.
    #[serde(default)]
    pub create_defaults: Map<String, Value>,
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
        // Both sides in Engine spelling, so `user` in one and `User` in the other are one key.
        for (key, value) in
            dockerpy::create_kwargs("create_kwargs_defaults", &spec.create_defaults)?
        {
            spec.extra_create.entry(key).or_insert(value);
        }
        spec.extra_host_config =
            dockerpy::host_config("extra_host_config", &spec.extra_host_config)?;
        spec.validate()?;
        check_raw_sources("extra_host_config", &spec.extra_host_config)?;
        if let Some(Value::Object(host)) = spec.extra_create.get("HostConfig") {
            check_raw_sources("extra_create_kwargs host_config", host)?;
        }
        spec.binds = binds_from_entries(&spec.volumes)?;
        let (mounts, warnings) = engine_mounts(&spec.mounts, &spec.binds)?;
        spec.engine_mounts = mounts;
        spec.warnings = warnings;
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
        self.validate_networks()?;
        if let Some(stall) = self.pull_stall_timeout {
            if !(1.0..=86_400.0).contains(&stall) {
                return Err(CoreError::InvalidSpec(format!(
                    "pull_stall_timeout = {stall} is not allowed: use a number of seconds from 1 to 86400"
                )));
            }
        }
        Ok(())
    }

    /// `networks` against itself and `network_name`: names given once, the first one
    /// `network_name`, aliases only on user-defined networks, `host` and `none` alone.
    fn validate_networks(&self) -> CoreResult<()> {
        let Some(first) = self.networks.first() else {
            return Ok(());
        };
        let refuse = |message: String| Err(CoreError::InvalidSpec(message));
        if first.name != self.network_name {
            return refuse(format!(
                "network_name = {:?} and networks = [{:?}, ...] disagree: the first entry of networks is the network the hub reaches the server on; leave network_name unset (it follows networks) or list {:?} first",
                self.network_name, first.name, self.network_name
            ));
        }
        for (i, net) in self.networks.iter().enumerate() {
            if net.name.is_empty() {
                return refuse(format!(
                    "networks[{i}] has an empty name: give the name of a Docker network"
                ));
            }
            if self.networks[..i].iter().any(|n| n.name == net.name) {
                return refuse(format!(
                    "networks[{i}] = {:?} is listed twice: give each network once, with all its aliases",
                    net.name
                ));
            }
            if BUILTIN_NETWORKS.contains(&net.name.as_str()) && !net.aliases.is_empty() {
                return refuse(format!(
                    "networks[{i}] = {:?} has aliases {:?}: Docker gives aliases only on user-defined networks (`docker network create`)",
                    net.name, net.aliases
                ));
            }
            if let Some(alias) = net.aliases.iter().find(|a| a.trim().is_empty()) {
                return refuse(format!(
                    "networks[{i}] = {:?} has the alias {alias:?}: aliases must not be empty",
                    net.name
                ));
            }
        }
        if self.networks.len() > 1 {
            if let Some(alone) = self
                .networks
                .iter()
                .find(|n| matches!(n.name.as_str(), "host" | "none"))
            {
                return refuse(format!(
                    "networks lists {:?} with other networks: a container on the {:?} network cannot join another",
                    alone.name, alone.name
                ));
            }
        }
        Ok(())
    }

    /// The networks to connect after the create, before the start: all but the first, which
    /// the create itself joins (Engine API 1.41 and 1.43 take only one network at create).
    #[must_use]
    pub fn networks_after_create(&self) -> &[NetworkEntry] {
        self.networks.get(1..).unwrap_or_default()
    }

    /// `pull_stall_timeout` as a duration (the default when unset; checked by `from_json`).
    #[must_use]
    pub fn pull_stall(&self) -> std::time::Duration {
        self.pull_stall_timeout
            .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok())
            .unwrap_or(crate::docker::images::DEFAULT_PULL_STALL)
    }

    /// The server this spec is for, from its labels (None when the spawner set none).
    #[must_use]
    pub fn owner(&self) -> Option<crate::docker::containers::Owner> {
        crate::docker::containers::Owner::from_labels(|key| self.labels.get(key))
    }

    /// `text` with the values of secret-looking environment variables (the hub's API token, and
    /// any `*TOKEN*`, `*SECRET*`, `*PASSWORD*`, `*KEY*` or `*CREDENTIAL*`) replaced by
    /// `[redacted]`: for a container's output quoted in an error.
    #[must_use]
    pub fn redact(&self, text: &str) -> String {
        const SECRET_WORDS: [&str; 6] =
            ["TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL"];
        let extra_env = self.extra_create.get("Env").and_then(Value::as_array);
        let extra = extra_env
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter_map(|entry| entry.split_once('='));
        let mut secrets: Vec<&str> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(extra)
            .filter(|(key, value)| {
                let key = key.to_ascii_uppercase();
                value.len() >= 4 && SECRET_WORDS.iter().any(|w| key.contains(w))
            })
            .map(|(_, value)| value)
            .collect();
        // Volume driver options (`o=...,password=...` of a CIFS or NFS volume), which the
        // engine quotes when a mount fails.
        secrets.extend(
            self.engine_mounts
                .iter()
                .filter_map(|m| m.pointer("/VolumeOptions/DriverConfig/Options"))
                .filter_map(Value::as_object)
                .flat_map(|options| options.values())
                .filter_map(Value::as_str)
                .filter(|v| v.len() >= 4),
        );
        // Registry passwords and tokens, which no message may show.
        secrets.extend(
            self.registry_credentials
                .values()
                .flat_map(RegistryAuth::secrets)
                .filter(|v| v.len() >= 4),
        );
        // Longest first, so a secret that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.into_iter().fold(text.to_owned(), |text, secret| {
            text.replace(secret, "[redacted]")
        })
    }

    /// `err` with `redact` applied to its message: for every error a start returns.
    #[must_use]
    pub fn redact_error(&self, err: CoreError) -> CoreError {
        err.map_message(|message| self.redact(&message))
    }

    /// The port key Docker uses, e.g. `8888/tcp`.
    #[must_use]
    pub fn port_key(&self) -> String {
        format!("{}/tcp", self.port)
    }

    /// The named volumes (not host paths) of `binds` and of `type: volume` mounts, as the
    /// configuration describes them: a `mounts` entry's `driver_config` and `labels`, and for
    /// the `volumes` entries `bind_driver` (`extra_host_config`'s `volume_driver`, or
    /// SwarmSpawner's `volume_driver` with its options). These are created explicitly, with
    /// labels, before the container. The first description of a name wins.
    pub fn named_volumes(
        &self,
        bind_driver: Option<(&str, &Map<String, Value>)>,
    ) -> CoreResult<Vec<VolumeSpec>> {
        let mut volumes: Vec<VolumeSpec> = Vec::new();
        let mut add = |volume: VolumeSpec| {
            if !volumes.iter().any(|v| v.name == volume.name) {
                volumes.push(volume);
            }
        };
        let (driver, options) = match bind_driver {
            Some((name, options)) if !name.is_empty() => (
                Some(name.to_owned()),
                string_map("volume_driver_options", options)?,
            ),
            _ => (None, BTreeMap::new()),
        };
        for bind in &self.binds {
            if is_named_volume(&bind.source) {
                add(VolumeSpec {
                    name: bind.source.clone(),
                    driver: driver.clone(),
                    options: options.clone(),
                    labels: BTreeMap::new(),
                    per_user: self.user_volumes.contains(&bind.source),
                    per_server: self.server_volumes.contains(&bind.source),
                });
            }
        }
        for mount in &self.engine_mounts {
            let kind = mount
                .get("Type")
                .and_then(Value::as_str)
                .unwrap_or("volume");
            let source = mount.get("Source").and_then(Value::as_str).unwrap_or("");
            if kind != "volume" || source.is_empty() {
                continue;
            }
            let opts = mount.get("VolumeOptions").and_then(Value::as_object);
            let config = opts
                .and_then(|o| o.get("DriverConfig"))
                .and_then(Value::as_object);
            let empty = Map::new();
            add(VolumeSpec {
                per_user: self.user_volumes.iter().any(|v| v == source),
                per_server: self.server_volumes.iter().any(|v| v == source),
                name: source.to_owned(),
                driver: config
                    .and_then(|c| c.get("Name"))
                    .and_then(Value::as_str)
                    .filter(|d| !d.is_empty())
                    .map(str::to_owned),
                options: string_map(
                    "mounts driver_config options",
                    config
                        .and_then(|c| c.get("Options"))
                        .and_then(Value::as_object)
                        .unwrap_or(&empty),
                )?,
                labels: string_map(
                    "mounts labels",
                    opts.and_then(|o| o.get("Labels"))
                        .and_then(Value::as_object)
                        .unwrap_or(&empty),
                )?,
            });
        }
        Ok(volumes)
    }

    /// `extra_host_config`'s `volume_driver` (Engine `VolumeDriver`): the driver of the
    /// `volumes` entries' named volumes.
    #[must_use]
    pub fn bind_volume_driver(&self) -> Option<&str> {
        self.extra_host_config
            .get("VolumeDriver")
            .and_then(Value::as_str)
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
        if !self.engine_mounts.is_empty() {
            host.insert("Mounts".into(), Value::Array(self.engine_mounts.clone()));
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
            #[allow(clippy::cast_precision_loss)]
            let product = cpu * period as f64;
            // 2^63: beyond it the conversion would saturate to a quota nobody asked for.
            if product >= 9_223_372_036_854_775_808.0 {
                return Err(CoreError::InvalidSpec(format!(
                    "cpu_limit {cpu} is too large: with a cpu period of {period} µs the quota does not fit Docker's 64-bit CpuQuota"
                )));
            }
            #[allow(clippy::cast_possible_truncation)]
            let quota = product as i64;
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
        let mut networking = None;
        if let Some(first) = self.networks.first() {
            let mode = host.get("NetworkMode").and_then(Value::as_str);
            if mode != Some(first.name.as_str()) {
                return Err(CoreError::InvalidSpec(format!(
                    "extra_host_config network_mode = {} and networks = [{:?}, ...] disagree: the first entry of networks is the container's network; drop network_mode",
                    mode.map_or_else(|| "null".to_owned(), |m| format!("{m:?}")),
                    first.name
                )));
            }
            if !first.aliases.is_empty() {
                networking = Some(json!({
                    "EndpointsConfig": { first.name.clone(): { "Aliases": first.aliases } }
                }));
            }
        }

        // `environment` in extra_create_kwargs adds to the computed environment key by key, as
        // DockerSpawner's deep merge of the two dicts does, instead of replacing the list.
        let mut extra_create = self.extra_create.clone();
        let mut env_map = self.env.clone();
        if let Some(extra_env) = extra_create.remove("Env") {
            let Value::Array(entries) = extra_env else {
                // Its kind, not its value: it may hold a secret.
                return Err(CoreError::InvalidSpec(format!(
                    "extra_create_kwargs environment is a {} and not allowed: use a dict or a list of 'KEY=value'",
                    json_kind(&extra_env)
                )));
            };
            for (i, entry) in entries.iter().enumerate() {
                // The entry itself is not shown: it may hold a secret.
                let Some(entry) = entry.as_str() else {
                    return Err(CoreError::InvalidSpec(format!(
                        "extra_create_kwargs environment[{i}] is not allowed: it is {}, not a 'KEY=value' string",
                        dockerpy::json_kind(entry)
                    )));
                };
                let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
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
        if let Some(networking) = networking {
            body.insert("NetworkingConfig".into(), networking);
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
        typed(
            self.create_body_json(command)?,
            "container settings (extra_create_kwargs, extra_host_config or mounts)",
            |field| {
                format!(
                "unknown Docker Engine field '{field}' in extra_create_kwargs, extra_host_config or mounts: it is not part of the Engine API's container create body"
            )
            },
        )
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

/// Parses the rendered `volumes` rows into binds, keeping DockerSpawner's value forms and its
/// dict semantics: a later row for the same source replaces the earlier one in its place.
pub fn binds_from_entries(entries: &[VolumeEntry]) -> CoreResult<Vec<Bind>> {
    let mut binds: Vec<Bind> = Vec::with_capacity(entries.len());
    for entry in entries {
        let bind = bind_from_entry(entry)?;
        match binds.iter_mut().find(|b| b.source == bind.source) {
            Some(existing) => *existing = bind,
            None => binds.push(bind),
        }
    }
    Ok(binds)
}

fn bind_from_entry(entry: &VolumeEntry) -> CoreResult<Bind> {
    let VolumeEntry {
        setting,
        source,
        target,
        read_only,
    } = entry;
    let default_mode = if *read_only { "ro" } else { "rw" };
    let not_allowed = || {
        CoreError::InvalidSpec(format!(
            "{setting}['{source}'] = {target} is not allowed: use a container path or {{'bind': path, 'mode': 'rw'|'ro'}}"
        ))
    };
    let (path, mode, propagation) = match target {
        Value::String(path) => (path.clone(), default_mode.to_owned(), None),
        Value::Object(map) => {
            let Some(bind) = map.get("bind") else {
                return Err(CoreError::InvalidSpec(format!(
                    "{setting}['{source}'] = {target} has no 'bind': use {{'bind': '/path/in/container', 'mode': 'rw'}}"
                )));
            };
            let path = bind.as_str().ok_or_else(not_allowed)?.to_owned();
            let text = |key: &str| -> CoreResult<Option<String>> {
                match map.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(v)) => Ok(Some(v.clone())),
                    Some(other) => Err(CoreError::InvalidSpec(format!(
                        "{setting}['{source}']['{key}'] = {other} is not allowed: use a string"
                    ))),
                }
            };
            let mode = text("mode")?.unwrap_or_else(|| default_mode.to_owned());
            let propagation = text("propagation")?.filter(|p| !p.is_empty());
            (path, mode, propagation)
        }
        _ => return Err(not_allowed()),
    };
    if source.is_empty() || path.is_empty() {
        return Err(CoreError::InvalidSpec(format!(
            "{setting} entry '{source}' -> '{path}' has an empty side"
        )));
    }
    check_source(setting, source)?;
    Ok(Bind {
        source: source.clone(),
        target: path,
        mode,
        propagation,
        setting: setting.clone(),
    })
}

/// Refuses a rendered mount source that could land somewhere the operator did not say: a host
/// path that is not absolute and normalised (a `..` or `.` component, e.g. from a user name of
/// `..` in `{raw_username}`, which some authenticators allow), a named volume that looks like a
/// path, or a NUL anywhere.
fn check_source(setting: &str, source: &str) -> CoreResult<()> {
    let refuse = |why: &str| {
        Err(CoreError::InvalidSpec(format!(
            "{setting}: the source '{}' is not allowed: {why}. A user or server name can make a template render like this: use {{username}} (escaped) rather than {{raw_username}} in paths",
            source.escape_debug()
        )))
    };
    if source.contains('\0') {
        return refuse("it contains a NUL character");
    }
    if is_named_volume(source) {
        if source.contains('/') || source == "." || source == ".." {
            return refuse(
                "a named volume's name cannot contain '/' and a host path must be absolute",
            );
        }
        return Ok(());
    }
    if source
        .trim_end_matches('/')
        .split('/')
        .skip(1)
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return refuse(
            "a host path must be absolute and normalised, with no '.', '..' or empty component",
        );
    }
    Ok(())
}

/// `check_source` for the binds and mounts given as raw Engine fields (`Binds`, `Mounts` of
/// `extra_host_config` or a `host_config` in `extra_create_kwargs`): they are templated too.
fn check_raw_sources(setting: &str, host: &Map<String, Value>) -> CoreResult<()> {
    if let Some(Value::Array(binds)) = host.get("Binds") {
        for bind in binds.iter().filter_map(Value::as_str) {
            let source = bind.split(':').next().unwrap_or_default();
            check_source(&format!("{setting} binds"), source)?;
        }
    }
    if let Some(Value::Array(mounts)) = host.get("Mounts") {
        for mount in mounts {
            if let Some(source) = mount.get("Source").and_then(Value::as_str) {
                if !source.is_empty() {
                    check_source(&format!("{setting} mounts"), source)?;
                }
            }
        }
    }
    Ok(())
}

/// `path` without trailing slashes (`/` stays `/`), for comparing mount targets.
fn normalised_target(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/"
    } else {
        trimmed
    }
}

/// `mounts` converted to Engine `Mount` objects, less every entry whose target a bind already
/// mounts (with a warning for each), and the warnings.
///
/// Docker refuses two mounts at one path ("Duplicate mount point"). The persistence guide's
/// example sets both `volumes` and `mounts` for the notebook directory; the named volume is kept
/// because the engine gives it the image's ownership of that directory, so the user can write
/// to it, which a bind-mounted host directory created by root would not allow.
pub fn engine_mounts(
    mounts: &[Map<String, Value>],
    binds: &[Bind],
) -> CoreResult<(Vec<Value>, Vec<String>)> {
    let mut kept = Vec::with_capacity(mounts.len());
    let mut warnings = Vec::new();
    for mount in mounts {
        let converted = mount_to_engine(mount)?;
        if let Some(source) = converted.get("Source").and_then(Value::as_str) {
            if !source.is_empty() {
                check_source("DockerSpawner.mounts", source)?;
            }
        }
        let target = converted
            .get("Target")
            .and_then(Value::as_str)
            .map(normalised_target)
            .unwrap_or_default();
        if let Some(bind) = binds
            .iter()
            .find(|b| normalised_target(&b.target) == target)
        {
            warnings.push(format!(
                "DockerSpawner.mounts entry {} is skipped: {target} is already mounted there from {} ('{}')",
                mount_summary(mount),
                bind.setting, bind.source
            ));
            continue;
        }
        kept.push(converted);
    }
    Ok((kept, warnings))
}

/// A `mounts` entry for a message: its source, target and keys, never its values (driver
/// options can hold a file server's password).
fn mount_summary(mount: &Map<String, Value>) -> String {
    let text = |keys: [&str; 2]| {
        keys.iter()
            .find_map(|k| mount.get(*k).and_then(Value::as_str))
            .unwrap_or("")
            .to_owned()
    };
    let keys: Vec<&str> = mount.keys().map(String::as_str).collect();
    format!(
        "(source '{}', target '{}', keys: {})",
        text(["source", "Source"]),
        text(["target", "Target"]),
        keys.join(", ")
    )
}

/// The JSON kind of a value, for messages that must not show it.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
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
                    mount_summary(mount)
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
            mount_summary(mount)
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

/// Engine-API JSON as bollard's typed model `T`, with a field the model does not know reported
/// instead of silently dropped: the JSON is parsed, written back, and compared. `what` names the
/// settings in a type error ("invalid {what}: ..."); `unknown` words the error for an unknown
/// field, given its dotted path.
pub(crate) fn typed<T: DeserializeOwned + Serialize>(
    json: Value,
    what: &str,
    unknown: impl FnOnce(&str) -> String,
) -> CoreResult<T> {
    let invalid = |e: serde_json::Error| CoreError::InvalidSpec(format!("invalid {what}: {e}"));
    let model = T::deserialize(&json).map_err(invalid)?;
    let back = serde_json::to_value(&model).map_err(invalid)?;
    match first_unknown_field(&json, &back, "") {
        Some(field) => Err(CoreError::InvalidSpec(unknown(&field))),
        None => Ok(model),
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
    fn malformed_registry_credentials_are_refused_without_quoting_them() {
        for bad in [
            json!({"reg:5000": "robot:s3cret-pass"}),
            json!({"reg:5000": {"username": "robot", "password": ["s3cret-pass"]}}),
            json!({"reg:5000": {"password": "s3cret-pass", "s3cret-pass": 1}}),
            json!(["s3cret-pass"]),
        ] {
            let text =
                json!({"name": "n", "image": "i", "port": 8888, "registry_credentials": bad})
                    .to_string();
            let err = ContainerSpec::from_json(&text).unwrap_err().to_string();
            assert!(err.contains("registry_credentials is not"), "{err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
        let good = json!({"reg:5000": {"username": "robot", "password": "s3cret-pass"}});
        let s = spec(json!({"registry_credentials": good}));
        assert!(!format!("{s:?}").contains("s3cret"));
        assert_eq!(s.redact("denied s3cret-pass"), "denied [redacted]");
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
        let s = spec(json!({"volumes": [
            {"setting": "volumes", "source": "jupyterhub-user-alice", "target": "/home/jovyan/work"},
            {"setting": "read_only_volumes", "source": "/data", "target": {"bind": "/data", "propagation": "rshared"}, "read_only": true},
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
        let names: Vec<String> = s
            .named_volumes(None)
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert_eq!(names, vec!["jupyterhub-user-alice".to_owned()]);
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
        let volumes = s.named_volumes(None).unwrap();
        assert_eq!(volumes.len(), 1);
        assert_eq!(volumes[0].name, "vol-alice");
        assert_eq!(volumes[0].labels.get("a").map(String::as_str), Some("b"));
        s.create_body(None).unwrap();
    }

    #[test]
    fn mount_unknown_key_is_named() {
        let err = ContainerSpec::from_json(
            r#"{"name":"n","image":"i","port":8888,"mounts":[{"target":"/x","sauce":"y"}]}"#,
        )
        .unwrap_err()
        .to_string();
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
    fn networks_first_at_create_with_its_aliases() {
        let s = spec(json!({
            "network_name": "front",
            "use_internal_ip": true,
            "networks": [
                {"name": "front", "aliases": ["alice-nb"]},
                {"name": "data", "aliases": ["alice-data"]},
                {"name": "other"},
            ],
        }));
        let body = s.create_body_json(None).unwrap();
        assert_eq!(body["HostConfig"]["NetworkMode"], json!("front"));
        assert_eq!(
            body["NetworkingConfig"],
            json!({"EndpointsConfig": {"front": {"Aliases": ["alice-nb"]}}})
        );
        let later: Vec<&str> = s
            .networks_after_create()
            .iter()
            .map(|n| n.name.as_str())
            .collect();
        assert_eq!(later, ["data", "other"]);
        // Without aliases on the first, nothing but the network mode.
        let s = spec(json!({"network_name": "front", "networks": [{"name": "front"}]}));
        let body = s.create_body_json(None).unwrap();
        assert!(body.get("NetworkingConfig").is_none());
        assert!(s.networks_after_create().is_empty());
        assert!(s.create_body(None).is_ok());
    }

    #[test]
    fn bad_networks_are_refused_by_name() {
        let refused = |extra: Value| {
            let mut base = json!({"name": "jupyter-alice", "image": "img:1", "port": 8888});
            deep_merge(base.as_object_mut().unwrap(), extra.as_object().unwrap());
            ContainerSpec::from_json(&base.to_string())
                .unwrap_err()
                .to_string()
        };
        let err = refused(json!({"network_name": "a", "networks": [{"name": "b"}]}));
        assert!(
            err.contains("network_name = \"a\"") && err.contains("\"b\""),
            "{err}"
        );
        let err = refused(json!({"network_name": "a", "networks": [{"name": "a"}, {"name": "a"}]}));
        assert!(err.contains("networks[1] = \"a\" is listed twice"), "{err}");
        let err = refused(json!({"network_name": "", "networks": [{"name": ""}]}));
        assert!(err.contains("networks[0] has an empty name"), "{err}");
        let err = refused(
            json!({"network_name": "bridge", "networks": [{"name": "bridge", "aliases": ["x"]}]}),
        );
        assert!(err.contains("only on user-defined networks"), "{err}");
        let err =
            refused(json!({"network_name": "a", "networks": [{"name": "a", "aliases": [""]}]}));
        assert!(err.contains("aliases must not be empty"), "{err}");
        let err =
            refused(json!({"network_name": "a", "networks": [{"name": "a"}, {"name": "host"}]}));
        assert!(err.contains("cannot join another"), "{err}");
        let err =
            refused(json!({"network_name": "a", "networks": [{"name": "a", "alias": ["x"]}]}));
        assert!(err.contains("unknown field `alias`"), "{err}");
        // network_mode of extra_host_config against the first network.
        let s = spec(json!({
            "network_name": "a",
            "networks": [{"name": "a"}],
            "extra_host_config": {"NetworkMode": "host"},
        }));
        let err = s.create_body_json(None).unwrap_err().to_string();
        assert!(err.contains("network_mode = \"host\""), "{err}");
    }

    #[test]
    fn non_string_environment_entries_are_refused() {
        let s = spec(json!({"extra_create": {"Env": ["A=1", {"TOKEN": "s3cret"}]}}));
        let err = s.create_body_json(None).unwrap_err().to_string();
        assert!(
            err.contains("extra_create_kwargs environment[1]") && err.contains("a dict"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
        let s = spec(json!({"extra_create": {"environment": ["A=1", 2]}}));
        let err = s.create_body_json(None).unwrap_err().to_string();
        assert!(err.contains("environment[1]"), "{err}");
    }

    #[test]
    fn typed_round_trip_names_type_errors_and_unknown_fields() {
        let err = typed::<ContainerCreateBody>(json!({"User": 5}), "container settings", |f| {
            format!("unknown {f}")
        })
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("invalid container settings: "), "{err}");
        let err = typed::<ContainerCreateBody>(
            json!({"HostConfig": {"ShmSise": 1}}),
            "container settings",
            |f| format!("unknown {f}"),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(err, "unknown HostConfig.ShmSise");
        let body: ContainerCreateBody =
            typed(json!({"User": "root"}), "container settings", str::to_owned).unwrap();
        assert_eq!(body.user.as_deref(), Some("root"));
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
        let err =
            ContainerSpec::from_json(r#"{"name":"n","image":"i","port":8888,"cpu_limit":0.001}"#)
                .and_then(|s| s.create_body_json(None))
                .unwrap_err()
                .to_string();
        assert!(err.contains("too small"), "{err}");
        let err = ContainerSpec::from_json(r#"{"name":"n","image":"i","port":8888,"bogus":1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn negative_limits_are_refused_once_by_the_value_checks() {
        use crate::memory::{cpu_cores, limit_bytes, MemoryValue};
        let err = limit_bytes("DockerSpawner.mem_limit", &MemoryValue::Int(-1)).unwrap_err();
        assert!(err.to_string().contains("mem_limit = -1"), "{err}");
        let err = cpu_cores("DockerSpawner.cpu_limit", -0.5).unwrap_err();
        assert!(err.to_string().contains("cpu_limit = -0.5"), "{err}");
        // The spec's own types refuse a negative memory count that did not pass the check.
        let err =
            ContainerSpec::from_json(r#"{"name":"n","image":"i","port":8888,"mem_limit":-1}"#)
                .unwrap_err()
                .to_string();
        assert!(err.contains("invalid container spec"), "{err}");
    }

    #[test]
    fn volume_rows_keep_dict_semantics_and_name_the_setting() {
        let rows = json!([
            {"setting": "volumes", "source": "a", "target": "/a"},
            {"setting": "volumes", "source": "b", "target": {"bind": "/b", "mode": "z"}},
            {"setting": "read_only_volumes", "source": "a", "target": "/a2", "read_only": true},
        ]);
        let entries: Vec<VolumeEntry> = serde_json::from_value(rows).unwrap();
        let binds = binds_from_entries(&entries).unwrap();
        assert_eq!(
            binds.iter().map(bind_string).collect::<Vec<_>>(),
            vec!["a:/a2:ro", "b:/b:z"]
        );
        for (target, needle) in [
            (json!({"mode": "ro"}), "has no 'bind'"),
            (json!(5), "is not allowed"),
            (json!({"bind": "/x", "mode": 1}), "['mode'] = 1"),
            (json!(""), "empty side"),
        ] {
            let entries: Vec<VolumeEntry> = serde_json::from_value(
                json!([{"setting": "read_only_volumes", "source": "s", "target": target}]),
            )
            .unwrap();
            let err = binds_from_entries(&entries).unwrap_err().to_string();
            assert!(
                err.contains("read_only_volumes") && err.contains(needle),
                "{err}"
            );
        }
    }

    #[test]
    fn mounts_at_a_bind_target_are_skipped_with_a_warning() {
        let s = spec(json!({
            "volumes": [{"setting": "DockerSpawner.volumes", "source": "v", "target": "/home/jovyan/work"}],
            "mounts": [
                {"source": "/srv/{u}", "target": "/home/jovyan/work/", "type": "bind"},
                {"type": "tmpfs", "target": "/t"},
            ],
        }));
        assert_eq!(
            s.engine_mounts,
            vec![json!({"Target": "/t", "Type": "tmpfs"})]
        );
        assert_eq!(s.warnings.len(), 1);
        assert!(
            s.warnings[0].contains("from DockerSpawner.volumes ('v')"),
            "{:?}",
            s.warnings
        );
    }

    #[test]
    fn unsafe_sources_are_refused_before_anything_is_made() {
        for source in [
            "/srv/homes/..",
            "/srv/homes/a/../../etc",
            "/srv/./x",
            "/srv//x",
            "a/../../etc",
            "..",
            "vol\0x",
        ] {
            let rows =
                json!([{"setting": "DockerSpawner.volumes", "source": source, "target": "/w"}]);
            let err = ContainerSpec::from_json(
                &json!({"name": "n", "image": "i", "port": 8888, "volumes": rows}).to_string(),
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("DockerSpawner.volumes: the source"),
                "{source}: {err}"
            );
        }
        for source in [
            "/",
            "/srv/data/",
            "/srv/homes/alice",
            "jupyterhub-user-alice",
            "a..b",
        ] {
            check_source("DockerSpawner.volumes", source).unwrap();
        }
        let err = ContainerSpec::from_json(
            &json!({"name": "n", "image": "i", "port": 8888,
                    "mounts": [{"type": "bind", "source": "/srv/..", "target": "/w"}]})
            .to_string(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("DockerSpawner.mounts: the source"), "{err}");
    }

    #[test]
    fn redact_hides_secret_environment_values() {
        let s = spec(
            json!({"env": {"JUPYTERHUB_API_TOKEN": "tok-123456", "MY_PASSWORD": "pw-987", "HOME": "/home/jovyan"},
                            "extra_create": {"environment": {"S3_SECRET_KEY": "s3-abcdef"}}}),
        );
        let out = s.redact("JUPYTERHUB_API_TOKEN=tok-123456 JPY_API_TOKEN=tok-123456 pw-987 s3-abcdef HOME=/home/jovyan");
        assert_eq!(
            out,
            "JUPYTERHUB_API_TOKEN=[redacted] JPY_API_TOKEN=[redacted] [redacted] [redacted] HOME=/home/jovyan"
        );
    }

    #[test]
    fn raw_binds_are_checked_like_volumes() {
        for extra in [
            json!({"extra_host_config": {"binds": ["/srv/homes/..:/home/jovyan/work:rw"]}}),
            json!({"extra_host_config": {"Mounts": [{"Type": "bind", "Source": "/srv/..", "Target": "/w"}]}}),
            json!({"extra_create": {"host_config": {"Binds": ["/srv/a/../b:/w"]}}}),
        ] {
            let mut base = json!({"name": "n", "image": "i", "port": 8888});
            deep_merge(base.as_object_mut().unwrap(), extra.as_object().unwrap());
            let err = ContainerSpec::from_json(&base.to_string())
                .unwrap_err()
                .to_string();
            assert!(err.contains("is not allowed"), "{extra}: {err}");
        }
    }
}

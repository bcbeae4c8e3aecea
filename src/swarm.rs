//! SwarmSpawner's service spec: the container spec plus the swarm extras, as the Engine API's
//! `ServiceSpec`. Pure logic, table-tested.
//!
//! Fixes DockerSpawner's Swarm bugs: named volumes are mounted as `type: volume` (DockerSpawner
//! makes every mount a bind, so named volumes fail, jupyterhub/dockerspawner#536), `mounts` is
//! honoured instead of silently ignored, and modes and propagation are kept.
//!
//! Also the rules of a multi-node swarm: how the server's port is published (`PublishMode`),
//! which named volumes stay on the node that made them (`stays_on_node`), the node a server's
//! volumes were recorded on (`PinNode`) and whether a node can take the server (`NodeFacts`:
//! its availability, its state, the operator's placement constraints, its address).

use std::collections::{BTreeMap, HashMap};

use bollard::models::{EndpointPortConfig, Node, NodeSpecAvailabilityEnum, NodeState, ServiceSpec};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::docker::{NODE_RECORDED_LABEL, SCOPE_LABEL};
use crate::dockerpy::pascal_case;
use crate::errors::{CoreError, CoreResult};
use crate::spec::{is_named_volume, typed, ContainerSpec, VolumeSpec};

/// How a service publishes the server's port when the hub reaches it by a published port
/// (`use_internal_ip = False`): SwarmSpawner's `publish_mode`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PublishMode {
    /// The routing mesh: the port is published on every node and forwarded to the task (IPVS).
    #[default]
    Ingress,
    /// On the node that runs the task only; the hub connects to that node's address.
    Host,
}

/// The node a server's volumes live on, recorded by an earlier start (SwarmSpawner's
/// `place_on_volume_node`): the service is constrained to it (`node.id==...`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PinNode {
    /// The node's id.
    pub id: String,
    /// Its hostname when it was recorded, for messages.
    pub hostname: String,
    /// Whose record it is, for messages (`this server's last start`, `the server 'lab', which
    /// shares the volume 'home-alice'`).
    pub recorded_by: String,
    /// The named volumes that stay on the node (`node_local_volumes`).
    pub volumes: Vec<String>,
}

/// The settings only SwarmSpawner has (docker-py keyword names or Engine fields).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwarmExtras {
    /// `cpu_guarantee` in cores, a reservation.
    #[serde(default)]
    pub cpu_guarantee: Option<f64>,
    /// `extra_container_spec`, shallow-merged into `TaskTemplate.ContainerSpec`.
    #[serde(default)]
    pub extra_container_spec: Map<String, Value>,
    /// `extra_resources_spec`, merged into `TaskTemplate.Resources`.
    #[serde(default)]
    pub extra_resources_spec: Map<String, Value>,
    /// `extra_placement_spec`, merged into `TaskTemplate.Placement`.
    #[serde(default)]
    pub extra_placement_spec: Map<String, Value>,
    /// `extra_task_spec`, merged into `TaskTemplate`.
    #[serde(default)]
    pub extra_task_spec: Map<String, Value>,
    /// `extra_endpoint_spec`, merged into `EndpointSpec`.
    #[serde(default)]
    pub extra_endpoint_spec: Map<String, Value>,
    /// `volume_driver` for the named volumes.
    #[serde(default)]
    pub volume_driver: String,
    /// `volume_driver_options`.
    #[serde(default)]
    pub volume_driver_options: Map<String, Value>,
    /// `publish_mode`.
    #[serde(default)]
    pub publish_mode: PublishMode,
    /// The node the service must run on: where its volumes are (`place_on_volume_node`).
    #[serde(default)]
    pub pin_node: Option<PinNode>,
    /// The node-local volumes (`node_local_volumes`) of a start that `place_on_volume_node`
    /// would hold to their node when no start recorded one (no `pin_node`): if the hub's
    /// engine holds one made before nodes were recorded (without `NODE_RECORDED_LABEL`), the
    /// user's files are on the hub's node, and the start is held there.
    #[serde(default)]
    pub unrecorded_volumes: Vec<String>,
}

impl SwarmExtras {
    /// The named volumes of `spec`, with `volume_driver` for the `volumes` entries.
    pub fn named_volumes(&self, spec: &ContainerSpec) -> CoreResult<Vec<VolumeSpec>> {
        spec.named_volumes(Some((
            self.volume_driver.as_str(),
            &self.volume_driver_options,
        )))
    }
}

/// Types of the `local` driver's volumes whose data is on a file server every node mounts.
const SHARED_LOCAL_TYPES: &[&str] = &["nfs", "nfs4", "cifs", "smb3", "ceph", "glusterfs"];

/// Whether a named volume's data stays on the node whose engine made it: a `local` volume
/// (the default driver) is a directory on that node, unless its `type` option mounts a file
/// server (NFS, CIFS, Ceph, GlusterFS). Any other driver is taken to be storage shared by the
/// nodes (a volume plugin: its data is wherever the plugin keeps it).
#[must_use]
pub fn stays_on_node(volume: &VolumeSpec) -> bool {
    match volume.driver.as_deref() {
        None | Some("" | "local") => !volume
            .options
            .get("type")
            .is_some_and(|t| SHARED_LOCAL_TYPES.contains(&t.to_ascii_lowercase().as_str())),
        Some(_) => false,
    }
}

/// The user's own named volumes (scope `user` or `server`) that stay on the node that made
/// them (`stays_on_node`): what `place_on_volume_node` keeps on one node. Volumes shared by
/// every user (scope `shared`) and host directories do not count: each node has its own.
pub fn node_local_volumes(spec: &ContainerSpec, swarm: &SwarmExtras) -> CoreResult<Vec<String>> {
    Ok(swarm
        .named_volumes(spec)?
        .into_iter()
        .filter(|v| v.per_user && stays_on_node(v))
        .map(|v| v.name)
        .collect())
}

/// What a start needs to know of a swarm node, from its inspect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// Its id.
    pub id: String,
    /// Its hostname.
    pub hostname: String,
    /// `manager` or `worker`.
    pub role: String,
    /// `active`, `pause` or `drain`.
    pub availability: String,
    /// `ready`, `down`, `unknown` or `disconnected`.
    pub state: String,
    /// The address it is reached at (`Status.Addr`).
    pub addr: String,
    /// A manager's swarm address (`ManagerStatus.Addr`, `host:port`).
    pub manager_addr: String,
    /// `node.platform.os`.
    pub os: String,
    /// `node.platform.arch`.
    pub arch: String,
    /// The operator's node labels (`node.labels.*`).
    pub labels: HashMap<String, String>,
    /// The engine's labels (`engine.labels.*`).
    pub engine_labels: HashMap<String, String>,
}

impl NodeFacts {
    /// The facts of a node inspect.
    #[must_use]
    pub fn from_node(node: &Node) -> Self {
        let spec = node.spec.as_ref();
        let description = node.description.as_ref();
        let platform = description.and_then(|d| d.platform.as_ref());
        NodeFacts {
            id: node.id.clone().unwrap_or_default(),
            hostname: description
                .and_then(|d| d.hostname.clone())
                .unwrap_or_default(),
            role: spec
                .and_then(|s| s.role)
                .map(|r| r.to_string())
                .unwrap_or_default(),
            availability: spec
                .and_then(|s| s.availability)
                .unwrap_or(NodeSpecAvailabilityEnum::EMPTY)
                .to_string(),
            state: node
                .status
                .as_ref()
                .and_then(|s| s.state)
                .unwrap_or(NodeState::UNKNOWN)
                .to_string(),
            addr: node
                .status
                .as_ref()
                .and_then(|s| s.addr.clone())
                .unwrap_or_default(),
            manager_addr: node
                .manager_status
                .as_ref()
                .and_then(|m| m.addr.clone())
                .unwrap_or_default(),
            os: platform.and_then(|p| p.os.clone()).unwrap_or_default(),
            arch: platform
                .and_then(|p| p.architecture.clone())
                .unwrap_or_default(),
            labels: spec.and_then(|s| s.labels.clone()).unwrap_or_default(),
            engine_labels: description
                .and_then(|d| d.engine.as_ref())
                .and_then(|e| e.labels.clone())
                .unwrap_or_default(),
        }
    }

    /// `'hostname' (id ...)`, as messages name a node.
    #[must_use]
    pub fn describe(&self) -> String {
        format!("'{}' (id {})", self.hostname, self.id)
    }

    /// Why the swarm cannot run a task on this node now, if it cannot: drained or paused by
    /// an operator, or not `ready` (its engine stopped, unreachable).
    #[must_use]
    pub fn unavailable(&self) -> Option<String> {
        match self.availability.as_str() {
            "drain" => return Some("is drained (availability 'drain')".to_owned()),
            "pause" => return Some("is paused (availability 'pause')".to_owned()),
            _ => {}
        }
        (self.state != "ready")
            .then(|| format!("is {} (state '{}')", self.state_word(), self.state))
    }

    fn state_word(&self) -> &str {
        match self.state.as_str() {
            "down" => "down",
            "disconnected" => "disconnected from the managers",
            _ => "not ready",
        }
    }

    /// The address the hub reaches a host-mode port on this node at: `Status.Addr`; for a
    /// manager that reports none (`0.0.0.0`, which Docker shows for some managers), the
    /// address it advertises to the swarm. An error names the node when it has neither.
    pub fn reachable_addr(&self) -> CoreResult<String> {
        let unspecified = |a: &str| matches!(a, "" | "0.0.0.0" | "::" | "[::]");
        if !unspecified(&self.addr) {
            return Ok(self.addr.clone());
        }
        let manager_host = self
            .manager_addr
            .rsplit_once(':')
            .map_or(self.manager_addr.as_str(), |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        if !unspecified(manager_host) {
            return Ok(manager_host.to_owned());
        }
        Err(CoreError::State {
            action: format!("find the address of node {}", self.describe()),
            message: format!(
                "the swarm reports the address '{}' for it, which the hub cannot connect to: give the node an address (docker swarm join --advertise-addr ADDRESS), or set c.SwarmSpawner.publish_mode = \"ingress\" (the routing mesh)",
                self.addr
            ),
        })
    }

    /// The first of the placement `constraints` this node does not satisfy, as the swarm
    /// evaluates them (`key==value` or `key!=value`; keys and values compared without case,
    /// label names with case; a missing label is the empty value). A constraint on a key it
    /// cannot evaluate here (`node.ip`, or one the swarm would refuse) is left to the swarm.
    #[must_use]
    pub fn excluded_by<'a>(&self, constraints: &'a [String]) -> Option<&'a str> {
        constraints
            .iter()
            .find(|c| self.satisfies(c) == Some(false))
            .map(String::as_str)
    }

    fn satisfies(&self, constraint: &str) -> Option<bool> {
        let (key, equal, value) = if let Some((k, v)) = constraint.split_once("==") {
            (k, true, v)
        } else if let Some((k, v)) = constraint.split_once("!=") {
            (k, false, v)
        } else {
            return None;
        };
        let (key, value) = (key.trim(), value.trim());
        let lower = key.to_ascii_lowercase();
        let label = |prefix: &str, labels: &HashMap<String, String>| {
            lower
                .strip_prefix(prefix)
                .filter(|rest| !rest.is_empty())
                .map(|_| {
                    labels
                        .get(&key[prefix.len()..])
                        .cloned()
                        .unwrap_or_default()
                })
        };
        let actual = match lower.as_str() {
            "node.id" => self.id.clone(),
            "node.hostname" => self.hostname.clone(),
            "node.role" => self.role.clone(),
            "node.platform.os" => self.os.clone(),
            "node.platform.arch" => self.arch.clone(),
            _ => label("node.labels.", &self.labels)
                .or_else(|| label("engine.labels.", &self.engine_labels))?,
        };
        Some(actual.eq_ignore_ascii_case(value) == equal)
    }
}

/// The host-mode port a task published for the server's port `target`, from its
/// `Status.PortStatus`. Docker 20.10 binds IPv4 and IPv6 separately and may give them two
/// numbers; the task lists the IPv4 binding first (the order of the container's bindings,
/// `0.0.0.0` before `::`), and the hub connects over IPv4 (the node's address).
#[must_use]
pub fn host_published_port(ports: &[EndpointPortConfig], target: u16) -> Option<u16> {
    ports
        .iter()
        .filter(|p| p.target_port == Some(i64::from(target)))
        .find_map(|p| p.published_port.and_then(|n| u16::try_from(n).ok()))
        .filter(|n| *n > 0)
}

/// The operator's placement constraints (`extra_placement_spec`'s `constraints`).
#[must_use]
pub fn operator_constraints(swarm: &SwarmExtras) -> Vec<String> {
    let mut placement = Map::new();
    merge_renamed(&mut placement, &swarm.extra_placement_spec);
    placement
        .get("Constraints")
        .and_then(Value::as_array)
        .map(|all| {
            all.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// rustdocker's labels of the named volumes of a service (`volume_labels`), with the mark of a
/// volume whose node the server's state records (`NODE_RECORDED_LABEL`).
#[must_use]
pub fn service_volume_labels(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut all = labels.clone();
    all.insert(NODE_RECORDED_LABEL.to_owned(), "true".to_owned());
    all
}

/// The labels a named volume is made with on the node that creates it (the node that runs the
/// task makes its own copy): as `ensure_volumes` labels the manager's.
fn node_volume_labels(volume: Option<&VolumeSpec>, labels: &BTreeMap<String, String>) -> Value {
    let mut all: BTreeMap<String, String> = volume.map(|v| v.labels.clone()).unwrap_or_default();
    all.extend(service_volume_labels(labels));
    if let Some(volume) = volume {
        all.insert(SCOPE_LABEL.to_owned(), volume.scope().to_owned());
    }
    json!(all)
}

/// docker-py keyword names whose Engine name is not their plain PascalCase.
const SPECIAL_NAMES: &[(&str, &str)] = &[
    ("workdir", "Dir"),
    ("tty", "TTY"),
    ("healthcheck", "HealthCheck"),
    ("dns_config", "DNSConfig"),
    ("cap_add", "CapabilityAdd"),
    ("cap_drop", "CapabilityDrop"),
    ("maxreplicas", "MaxReplicas"),
    ("env", "Env"),
];

/// A swarm keyword as its Engine field, with the swarm model's own spellings.
fn pascal(key: &str) -> String {
    pascal_case(key, SPECIAL_NAMES)
}

/// Shallow-merges docker-py keywords (or Engine fields) into an Engine object, renaming keys;
/// dict values (e.g. a `restart_policy`) have their keys renamed too.
fn merge_renamed(dest: &mut Map<String, Value>, extra: &Map<String, Value>) {
    for (key, value) in extra {
        let value = match value {
            Value::Object(inner) => {
                Value::Object(inner.iter().map(|(k, v)| (pascal(k), v.clone())).collect())
            }
            other => other.clone(),
        };
        dest.insert(pascal(key), value);
    }
}

fn nano_cpus(setting: &str, cores: f64) -> CoreResult<i64> {
    let n = cores * 1e9;
    // 2^63: beyond it the conversion would saturate to a limit nobody asked for.
    if n >= 9_223_372_036_854_775_808.0 {
        return Err(CoreError::InvalidSpec(format!(
            "{setting} {cores} is too large: it does not fit the swarm's 64-bit NanoCPUs"
        )));
    }
    // Whole nano-CPUs, truncated like DockerSpawner's int(cpu_limit * 1e9).
    #[allow(clippy::cast_possible_truncation)]
    Ok(n as i64)
}

/// The Engine `ServiceSpec` for a server, as JSON. `command` is the resolved `Args` (the image's
/// ENTRYPOINT is kept, as DockerSpawner's SwarmSpawner does).
pub fn service_spec_json(
    spec: &ContainerSpec,
    swarm: &SwarmExtras,
    command: Option<Vec<String>>,
) -> CoreResult<Value> {
    // Whose each named volume is: the node that runs the task creates its own copy of a
    // volume it lacks, labelled from the mount (`VolumeOptions.Labels`).
    let has_volumes = spec.binds.iter().any(|b| is_named_volume(&b.source))
        || spec
            .engine_mounts
            .iter()
            .any(|m| m.get("Type").and_then(Value::as_str).unwrap_or("volume") == "volume");
    let volumes = if has_volumes {
        swarm.named_volumes(spec)?
    } else {
        Vec::new()
    };
    let described = |name: &str| volumes.iter().find(|v| v.name == name);
    let mut mounts = Vec::new();
    for bind in &spec.binds {
        let named = is_named_volume(&bind.source);
        let mut mount = json!({
            "Type": if named { "volume" } else { "bind" },
            "Source": bind.source,
            "Target": bind.target,
            "ReadOnly": bind.mode.split(',').any(|m| m == "ro"),
        });
        if let Some(p) = bind.propagation.as_ref().filter(|p| !p.is_empty()) {
            if !named {
                mount["BindOptions"] = json!({ "Propagation": p });
            }
        }
        if named {
            let mut options = json!({
                "Labels": node_volume_labels(described(&bind.source), &spec.volume_labels),
            });
            if !swarm.volume_driver.is_empty() {
                options["DriverConfig"] = json!({
                    "Name": swarm.volume_driver,
                    "Options": swarm.volume_driver_options,
                });
            }
            mount["VolumeOptions"] = options;
        }
        mounts.push(mount);
    }
    for mount in &spec.engine_mounts {
        let mut mount = mount.clone();
        let source = mount
            .get("Source")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let is_volume = mount
            .get("Type")
            .and_then(Value::as_str)
            .unwrap_or("volume")
            == "volume";
        if let (Some(source), true, Some(object)) = (source, is_volume, mount.as_object_mut()) {
            let options = object.entry("VolumeOptions").or_insert_with(|| json!({}));
            if let Some(options) = options.as_object_mut() {
                options.insert(
                    "Labels".into(),
                    node_volume_labels(described(&source), &spec.volume_labels),
                );
            }
        }
        mounts.push(mount);
    }
    let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut container = Map::new();
    container.insert("Image".into(), json!(spec.image));
    container.insert("Env".into(), json!(env));
    container.insert("Labels".into(), json!(spec.labels));
    if !mounts.is_empty() {
        container.insert("Mounts".into(), Value::Array(mounts));
    }
    if let Some(command) = command {
        container.insert("Args".into(), json!(command));
    }
    merge_renamed(&mut container, &swarm.extra_container_spec);

    let mut limits = Map::new();
    let mut reservations = Map::new();
    if let Some(mem) = spec.mem_limit.filter(|m| *m > 0) {
        limits.insert("MemoryBytes".into(), json!(mem));
    }
    if let Some(cpu) = spec.cpu_limit.filter(|c| *c > 0.0) {
        limits.insert("NanoCPUs".into(), json!(nano_cpus("cpu_limit", cpu)?));
    }
    if let Some(mem) = spec.mem_guarantee.filter(|m| *m > 0) {
        reservations.insert("MemoryBytes".into(), json!(mem));
    }
    if let Some(cpu) = swarm.cpu_guarantee.filter(|c| c.is_finite() && *c > 0.0) {
        reservations.insert("NanoCPUs".into(), json!(nano_cpus("cpu_guarantee", cpu)?));
    }
    let mut resources = Map::new();
    if !limits.is_empty() {
        resources.insert("Limits".into(), Value::Object(limits));
    }
    if !reservations.is_empty() {
        resources.insert("Reservations".into(), Value::Object(reservations));
    }
    for (key, value) in &swarm.extra_resources_spec {
        // docker-py's Resources keywords, then raw Engine fields.
        let (group, field) = match key.as_str() {
            "cpu_limit" => ("Limits", "NanoCPUs"),
            "mem_limit" => ("Limits", "MemoryBytes"),
            "cpu_reservation" => ("Reservations", "NanoCPUs"),
            "mem_reservation" => ("Reservations", "MemoryBytes"),
            "generic_resources" => ("Reservations", "GenericResources"),
            _ => {
                resources.insert(pascal(key), value.clone());
                continue;
            }
        };
        let entry = resources
            .entry(group.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(map) = entry {
            map.insert(field.to_owned(), value.clone());
        }
    }

    let mut placement = Map::new();
    merge_renamed(&mut placement, &swarm.extra_placement_spec);
    if let Some(pin) = &swarm.pin_node {
        // Where the server's volumes are, besides the operator's constraints.
        let constraints = placement.entry("Constraints").or_insert_with(|| json!([]));
        match constraints.as_array_mut() {
            Some(all) => all.push(json!(format!("node.id=={}", pin.id))),
            None => {
                return Err(CoreError::InvalidSpec(format!(
                    "SwarmSpawner.extra_placement_spec constraints {constraints} is not allowed: use a list of strings such as [\"node.role==worker\"]"
                )))
            }
        }
    }

    let mut task = Map::new();
    task.insert("ContainerSpec".into(), Value::Object(container));
    if !resources.is_empty() {
        task.insert("Resources".into(), Value::Object(resources));
    }
    if !placement.is_empty() {
        task.insert("Placement".into(), Value::Object(placement));
    }
    if !spec.networks.is_empty() {
        let networks: Vec<Value> = spec
            .networks
            .iter()
            .map(|net| {
                let mut attachment = json!({ "Target": net.name });
                if !net.aliases.is_empty() {
                    attachment["Aliases"] = json!(net.aliases);
                }
                attachment
            })
            .collect();
        task.insert("Networks".into(), Value::Array(networks));
    } else if !spec.network_name.is_empty() {
        task.insert("Networks".into(), json!([{ "Target": spec.network_name }]));
    }
    // The hub is the server's supervisor, as it is of a container (made without a restart
    // policy): a server that ends is reported ended by poll(). The swarm's default (restart
    // on any exit) would start it again behind the hub's back, in host mode on a new port.
    task.insert("RestartPolicy".into(), json!({ "Condition": "none" }));
    merge_renamed(&mut task, &swarm.extra_task_spec);

    let mut service = Map::new();
    service.insert("Name".into(), json!(spec.name));
    service.insert("Labels".into(), json!(spec.labels));
    service.insert("TaskTemplate".into(), Value::Object(task));
    let mut endpoint = Map::new();
    if !spec.use_internal_ip {
        let mut port = json!({ "Protocol": "tcp", "TargetPort": spec.port });
        if swarm.publish_mode == PublishMode::Host {
            // A port of its own on the node that runs the task, chosen by that node.
            port["PublishMode"] = json!("host");
        }
        endpoint.insert("Ports".into(), json!([port]));
    }
    merge_renamed(&mut endpoint, &swarm.extra_endpoint_spec);
    if !endpoint.is_empty() {
        service.insert("EndpointSpec".into(), Value::Object(endpoint));
    }
    Ok(Value::Object(service))
}

/// The typed `ServiceSpec`, with a field the Engine API does not know reported by name.
pub fn service_spec(
    spec: &ContainerSpec,
    swarm: &SwarmExtras,
    command: Option<Vec<String>>,
) -> CoreResult<ServiceSpec> {
    typed::<ServiceSpec>(
        service_spec_json(spec, swarm, command)?,
        "swarm service settings (mounts or the extra_*_spec settings)",
        |field| {
            format!(
                "unknown Docker Engine field '{field}' in the swarm settings (extra_container_spec, extra_task_spec, extra_resources_spec, extra_placement_spec, extra_endpoint_spec)"
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(extra: Value) -> ContainerSpec {
        let mut base = json!({"name": "jupyter-alice", "image": "img:1", "port": 8888,
                              "host_ip": "127.0.0.1", "labels": {"l": "v"}});
        crate::spec::deep_merge(base.as_object_mut().unwrap(), extra.as_object().unwrap());
        ContainerSpec::from_json(&base.to_string()).unwrap()
    }

    #[test]
    fn named_volumes_are_volume_mounts_and_binds_are_binds() {
        let spec = container(json!({"volumes": [
            {"setting": "volumes", "source": "jupyterhub-user-alice", "target": "/home/jovyan/work"},
            {"setting": "volumes", "source": "/srv/data", "target": {"bind": "/data", "mode": "ro", "propagation": "rslave"}},
        ]}));
        let swarm = SwarmExtras {
            volume_driver: "local".into(),
            ..Default::default()
        };
        let json = service_spec_json(&spec, &swarm, None).unwrap();
        let mounts = &json["TaskTemplate"]["ContainerSpec"]["Mounts"];
        assert_eq!(mounts[0]["Type"], "volume");
        assert_eq!(mounts[0]["ReadOnly"], false);
        assert_eq!(mounts[0]["VolumeOptions"]["DriverConfig"]["Name"], "local");
        assert_eq!(mounts[1]["Type"], "bind");
        assert_eq!(mounts[1]["ReadOnly"], true);
        assert_eq!(mounts[1]["BindOptions"]["Propagation"], "rslave");
        service_spec(&spec, &swarm, None).unwrap();
    }

    #[test]
    fn resources_ports_networks_and_extras() {
        let spec = container(
            json!({"mem_limit": 1_073_741_824, "mem_guarantee": 536_870_912,
                                    "cpu_limit": 0.5, "network_name": "jhub",
                                    "use_internal_ip": false}),
        );
        let swarm = SwarmExtras {
            cpu_guarantee: Some(0.25),
            extra_container_spec: json!({"user": "1000", "workdir": "/w"})
                .as_object()
                .unwrap()
                .clone(),
            extra_task_spec: json!({"restart_policy": {"condition": "none"}})
                .as_object()
                .unwrap()
                .clone(),
            extra_placement_spec: json!({"constraints": ["node.role==manager"]})
                .as_object()
                .unwrap()
                .clone(),
            extra_resources_spec: json!({"mem_reservation": 1}).as_object().unwrap().clone(),
            ..Default::default()
        };
        let json = service_spec_json(&spec, &swarm, Some(vec!["a".into()])).unwrap();
        let task = &json["TaskTemplate"];
        assert_eq!(
            task["Resources"]["Limits"],
            json!({"MemoryBytes": 1_073_741_824, "NanoCPUs": 500_000_000})
        );
        assert_eq!(
            task["Resources"]["Reservations"],
            json!({"MemoryBytes": 1, "NanoCPUs": 250_000_000})
        );
        assert_eq!(task["Networks"], json!([{"Target": "jhub"}]));
        assert_eq!(task["RestartPolicy"], json!({"Condition": "none"}));
        assert_eq!(
            task["Placement"]["Constraints"],
            json!(["node.role==manager"])
        );
        assert_eq!(task["ContainerSpec"]["User"], "1000");
        assert_eq!(task["ContainerSpec"]["Dir"], "/w");
        assert_eq!(task["ContainerSpec"]["Args"], json!(["a"]));
        assert_eq!(
            json["EndpointSpec"]["Ports"],
            json!([{"Protocol": "tcp", "TargetPort": 8888}])
        );
        service_spec(&spec, &swarm, None).unwrap();
    }

    #[test]
    fn several_networks_with_aliases() {
        let spec = container(json!({"network_name": "front", "networks": [
            {"name": "front", "aliases": ["alice-nb"]},
            {"name": "data"},
        ]}));
        let json = service_spec_json(&spec, &SwarmExtras::default(), None).unwrap();
        assert_eq!(
            json["TaskTemplate"]["Networks"],
            json!([{"Target": "front", "Aliases": ["alice-nb"]}, {"Target": "data"}])
        );
        service_spec(&spec, &SwarmExtras::default(), None).unwrap();
    }

    fn volume(driver: Option<&str>, options: &[(&str, &str)]) -> VolumeSpec {
        VolumeSpec {
            name: "v".into(),
            driver: driver.map(str::to_owned),
            options: options
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            labels: BTreeMap::new(),
            per_user: true,
            per_server: false,
        }
    }

    #[test]
    fn which_volumes_stay_on_their_node() {
        for (driver, options, stays) in [
            (None, vec![], true),
            (Some("local"), vec![], true),
            (Some(""), vec![], true),
            // A host directory bound into a local volume is that node's directory.
            (
                Some("local"),
                vec![("type", "none"), ("o", "bind"), ("device", "/srv/x")],
                true,
            ),
            (Some("local"), vec![("type", "tmpfs")], true),
            (
                Some("local"),
                vec![("type", "nfs"), ("o", "addr=10.0.0.1")],
                false,
            ),
            (Some("local"), vec![("type", "NFS4")], false),
            (Some("local"), vec![("type", "cifs")], false),
            (Some("local"), vec![("type", "ceph")], false),
            (Some("rexray"), vec![], false),
            (Some("vieux/sshfs"), vec![], false),
        ] {
            assert_eq!(
                stays_on_node(&volume(driver, &options)),
                stays,
                "{driver:?} {options:?}"
            );
        }
    }

    #[test]
    fn node_local_volumes_are_the_users_own_local_ones() {
        let spec = container(json!({
            "volumes": [
                {"setting": "volumes", "source": "home-alice", "target": "/home"},
                {"setting": "volumes", "source": "datasets", "target": "/data"},
                {"setting": "volumes", "source": "/srv/alice", "target": "/srv"},
            ],
            "mounts": [
                {"type": "volume", "source": "nfs-alice", "target": "/nfs",
                 "driver_config": {"name": "local", "options": {"type": "nfs", "o": "addr=x"}}},
                {"type": "volume", "source": "scratch-alice", "target": "/scratch"},
            ],
            "user_volumes": ["home-alice", "nfs-alice", "scratch-alice"],
        }));
        let local = node_local_volumes(&spec, &SwarmExtras::default()).unwrap();
        // `datasets` is every user's (a copy on each node); a host directory is each node's.
        assert_eq!(local, vec!["home-alice", "scratch-alice"]);
        let shared_driver = SwarmExtras {
            volume_driver: "rexray".into(),
            ..Default::default()
        };
        assert_eq!(
            node_local_volumes(&spec, &shared_driver).unwrap(),
            vec!["scratch-alice"]
        );
    }

    fn node() -> NodeFacts {
        NodeFacts {
            id: "n1".into(),
            hostname: "Worker-1".into(),
            role: "worker".into(),
            availability: "active".into(),
            state: "ready".into(),
            addr: "10.0.0.2".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            labels: HashMap::from([("gpu".into(), "yes".into())]),
            engine_labels: HashMap::from([("Zone".into(), "b".into())]),
            ..Default::default()
        }
    }

    #[test]
    fn constraints_are_evaluated_as_the_swarm_does() {
        let facts = node();
        let cases = [
            ("node.id==n1", Some(true)),
            ("node.id != n1", Some(false)),
            ("node.hostname==worker-1", Some(true)), // values compare without case
            ("NODE.HOSTNAME==other", Some(false)),   // so do keys
            ("node.role==manager", Some(false)),
            ("node.role!=manager", Some(true)),
            ("node.platform.os==linux", Some(true)),
            ("node.platform.arch==aarch64", Some(false)),
            ("node.labels.gpu==yes", Some(true)),
            ("node.labels.GPU==yes", Some(false)), // label names keep their case
            ("node.labels.missing==", Some(true)), // a missing label is empty
            ("node.labels.missing!=x", Some(true)),
            ("engine.labels.Zone==B", Some(true)),
            ("engine.labels.zone==b", Some(false)),
            ("node.ip==10.0.0.2", None), // left to the swarm
            ("nonsense", None),
        ];
        for (constraint, expected) in cases {
            assert_eq!(facts.satisfies(constraint), expected, "{constraint}");
        }
        let constraints: Vec<String> = ["node.labels.gpu==yes", "node.role==manager"]
            .iter()
            .map(|c| (*c).to_owned())
            .collect();
        assert_eq!(facts.excluded_by(&constraints), Some("node.role==manager"));
        assert_eq!(facts.excluded_by(&constraints[..1]), None);
    }

    #[test]
    fn node_availability_and_state() {
        let mut facts = node();
        assert_eq!(facts.unavailable(), None);
        facts.availability = "drain".into();
        assert_eq!(
            facts.unavailable().unwrap(),
            "is drained (availability 'drain')"
        );
        facts.availability = "pause".into();
        assert!(facts.unavailable().unwrap().contains("paused"));
        facts.availability = "active".into();
        facts.state = "down".into();
        assert_eq!(facts.unavailable().unwrap(), "is down (state 'down')");
        facts.state = "unknown".into();
        assert!(facts.unavailable().unwrap().contains("not ready"));
        assert_eq!(facts.describe(), "'Worker-1' (id n1)");
    }

    #[test]
    fn a_nodes_address_for_host_mode_ports() {
        let mut facts = node();
        assert_eq!(facts.reachable_addr().unwrap(), "10.0.0.2");
        // Some managers report 0.0.0.0: the address they advertise to the swarm.
        facts.addr = "0.0.0.0".into();
        facts.manager_addr = "10.0.0.9:2377".into();
        assert_eq!(facts.reachable_addr().unwrap(), "10.0.0.9");
        facts.manager_addr = "[fd00::9]:2377".into();
        assert_eq!(facts.reachable_addr().unwrap(), "fd00::9");
        facts.manager_addr = String::new();
        for addr in ["0.0.0.0", "", "::"] {
            facts.addr = addr.into();
            let err = facts.reachable_addr().unwrap_err().to_string();
            assert!(
                err.contains("'Worker-1' (id n1)") && err.contains("--advertise-addr"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_ipv4_host_port_is_taken() {
        let port = |target: i64, published: i64| EndpointPortConfig {
            target_port: Some(target),
            published_port: Some(published),
            ..Default::default()
        };
        // Docker 20.10: IPv4's binding, then IPv6's, possibly under another number.
        let ports = [port(22, 30000), port(8888, 30001), port(8888, 30002)];
        assert_eq!(host_published_port(&ports, 8888), Some(30001));
        assert_eq!(host_published_port(&ports, 9999), None);
        assert_eq!(host_published_port(&[port(8888, 0)], 8888), None);
    }

    #[test]
    fn host_mode_pinned_node_restart_policy_and_volume_labels() {
        let spec = container(json!({
            "use_internal_ip": false,
            "volume_labels": {"org.rustdocker.user": "alice"},
            "volumes": [{"setting": "volumes", "source": "home-alice", "target": "/home"}],
            "mounts": [{"type": "volume", "source": "scratch-alice", "target": "/s",
                        "labels": {"mine": "1"}}],
            "user_volumes": ["home-alice", "scratch-alice"],
            "server_volumes": ["scratch-alice"],
        }));
        let swarm = SwarmExtras {
            publish_mode: PublishMode::Host,
            extra_placement_spec: json!({"constraints": ["node.role==worker"]})
                .as_object()
                .unwrap()
                .clone(),
            pin_node: Some(PinNode {
                id: "n1".into(),
                hostname: "w".into(),
                recorded_by: "this server's last start".into(),
                volumes: vec!["home-alice".into()],
            }),
            ..Default::default()
        };
        let json = service_spec_json(&spec, &swarm, None).unwrap();
        assert_eq!(
            json["EndpointSpec"]["Ports"],
            json!([{"Protocol": "tcp", "TargetPort": 8888, "PublishMode": "host"}])
        );
        let task = &json["TaskTemplate"];
        assert_eq!(
            task["Placement"]["Constraints"],
            json!(["node.role==worker", "node.id==n1"])
        );
        assert_eq!(operator_constraints(&swarm), vec!["node.role==worker"]);
        // The hub supervises the server: the swarm does not restart it.
        assert_eq!(task["RestartPolicy"], json!({"Condition": "none"}));
        let mounts = &task["ContainerSpec"]["Mounts"];
        assert_eq!(
            mounts[0]["VolumeOptions"]["Labels"],
            json!({"org.rustdocker.user": "alice", "org.rustdocker.scope": "user",
                   "org.rustdocker.node-recorded": "true"})
        );
        assert_eq!(
            mounts[1]["VolumeOptions"]["Labels"],
            json!({"mine": "1", "org.rustdocker.user": "alice", "org.rustdocker.scope": "server",
                   "org.rustdocker.node-recorded": "true"})
        );
        service_spec(&spec, &swarm, None).unwrap();
        // Ingress (the default) and an operator's restart policy.
        let swarm = SwarmExtras {
            extra_task_spec: json!({"restart_policy": {"condition": "on-failure"}})
                .as_object()
                .unwrap()
                .clone(),
            ..Default::default()
        };
        let json = service_spec_json(&spec, &swarm, None).unwrap();
        assert_eq!(
            json["EndpointSpec"]["Ports"],
            json!([{"Protocol": "tcp", "TargetPort": 8888}])
        );
        assert_eq!(
            json["TaskTemplate"]["RestartPolicy"],
            json!({"Condition": "on-failure"})
        );
        assert!(json["TaskTemplate"].get("Placement").is_none());
        // Constraints that are not a list cannot take the node's.
        let swarm = SwarmExtras {
            extra_placement_spec: json!({"constraints": "node.role==worker"})
                .as_object()
                .unwrap()
                .clone(),
            pin_node: Some(PinNode {
                id: "n1".into(),
                hostname: "w".into(),
                recorded_by: "x".into(),
                volumes: vec![],
            }),
            ..Default::default()
        };
        let err = service_spec_json(&spec, &swarm, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("extra_placement_spec constraints"), "{err}");
    }

    #[test]
    fn unknown_swarm_field_is_named() {
        let spec = container(json!({}));
        let swarm = SwarmExtras {
            extra_container_spec: json!({"usr": "x"}).as_object().unwrap().clone(),
            ..Default::default()
        };
        let err = service_spec(&spec, &swarm, None).unwrap_err().to_string();
        assert!(err.contains("Usr"), "{err}");
    }
}

//! SwarmSpawner's service spec: the container spec plus the swarm extras, as the Engine API's
//! `ServiceSpec`. Pure logic, table-tested.
//!
//! Fixes DockerSpawner's Swarm bugs: named volumes are mounted as `type: volume` (DockerSpawner
//! makes every mount a bind, so named volumes fail, jupyterhub/dockerspawner#536), `mounts` is
//! honoured instead of silently ignored, and modes and propagation are kept.

use bollard::models::ServiceSpec;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::dockerpy::pascal_case;
use crate::errors::{CoreError, CoreResult};
use crate::spec::{is_named_volume, typed, ContainerSpec};

/// The settings only SwarmSpawner has (docker-py keyword names or Engine fields).
#[derive(Debug, Default, Deserialize)]
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
        if named && !swarm.volume_driver.is_empty() {
            mount["VolumeOptions"] = json!({"DriverConfig": {
                "Name": swarm.volume_driver,
                "Options": swarm.volume_driver_options,
            }});
        }
        mounts.push(mount);
    }
    mounts.extend(spec.engine_mounts.iter().cloned());
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
    merge_renamed(&mut task, &swarm.extra_task_spec);

    let mut service = Map::new();
    service.insert("Name".into(), json!(spec.name));
    service.insert("Labels".into(), json!(spec.labels));
    service.insert("TaskTemplate".into(), Value::Object(task));
    let mut endpoint = Map::new();
    if !spec.use_internal_ip {
        endpoint.insert(
            "Ports".into(),
            json!([{ "Protocol": "tcp", "TargetPort": spec.port }]),
        );
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

//! docker-py's keyword names, converted to Engine API fields.
//!
//! DockerSpawner passes `extra_create_kwargs` to docker-py's `create_container` and
//! `extra_host_config` to `create_host_config`, so existing configurations use docker-py's
//! `snake_case` keywords (`shm_size="1g"`, `cap_add`, `device_requests`, `ulimits`, ...). Here they
//! become the Engine API's `PascalCase` fields with docker-py's conversions. A key that starts with
//! an upper-case letter is taken as an Engine field already and passes through unchanged, which is
//! also how docker-py's helper objects (`DeviceRequest`, `Ulimit`, `LogConfig`, `Mount`: dicts
//! with `PascalCase` keys) arrive. Any other key is an error that names it.

use serde_json::{json, Map, Value};

use crate::errors::{CoreError, CoreResult};
use crate::memory;

/// Host-config keywords renamed with no change of value.
const HOST_RENAMES: &[(&str, &str)] = &[
    ("auto_remove", "AutoRemove"),
    ("blkio_weight", "BlkioWeight"),
    ("blkio_weight_device", "BlkioWeightDevice"),
    ("cap_add", "CapAdd"),
    ("cap_drop", "CapDrop"),
    ("cgroup_parent", "CgroupParent"),
    ("cgroupns", "CgroupnsMode"),
    ("cpu_count", "CpuCount"),
    ("cpu_percent", "CpuPercent"),
    ("cpu_period", "CpuPeriod"),
    ("cpu_quota", "CpuQuota"),
    ("cpu_rt_period", "CPURealtimePeriod"),
    ("cpu_rt_runtime", "CPURealtimeRuntime"),
    ("cpu_shares", "CpuShares"),
    ("cpuset_cpus", "CpusetCpus"),
    ("cpuset_mems", "CpusetMems"),
    ("device_cgroup_rules", "DeviceCgroupRules"),
    ("device_read_bps", "BlkioDeviceReadBps"),
    ("device_read_iops", "BlkioDeviceReadIOps"),
    ("device_write_bps", "BlkioDeviceWriteBps"),
    ("device_write_iops", "BlkioDeviceWriteIOps"),
    ("dns", "Dns"),
    ("dns_opt", "DnsOptions"),
    ("dns_search", "DnsSearch"),
    ("init", "Init"),
    ("ipc_mode", "IpcMode"),
    ("isolation", "Isolation"),
    ("mem_swappiness", "MemorySwappiness"),
    ("nano_cpus", "NanoCpus"),
    ("network_mode", "NetworkMode"),
    ("oom_kill_disable", "OomKillDisable"),
    ("oom_score_adj", "OomScoreAdj"),
    ("pid_mode", "PidMode"),
    ("pids_limit", "PidsLimit"),
    ("privileged", "Privileged"),
    ("publish_all_ports", "PublishAllPorts"),
    ("read_only", "ReadonlyRootfs"),
    ("restart_policy", "RestartPolicy"),
    ("runtime", "Runtime"),
    ("security_opt", "SecurityOpt"),
    ("storage_opt", "StorageOpt"),
    ("userns_mode", "UsernsMode"),
    ("uts_mode", "UTSMode"),
    ("volume_driver", "VolumeDriver"),
    ("volumes_from", "VolumesFrom"),
];

/// Host-config keywords holding a memory size (docker-py `parse_bytes` for strings).
const HOST_BYTES: &[(&str, &str)] = &[
    ("mem_limit", "Memory"),
    ("memswap_limit", "MemorySwap"),
    ("mem_reservation", "MemoryReservation"),
    ("kernel_memory", "KernelMemory"),
    ("shm_size", "ShmSize"),
];

/// Host-config keywords that docker-py requires to be integers.
const HOST_INTS: &[&str] = &["cpu_period", "cpu_quota", "pids_limit", "cpu_shares"];

/// Create keywords renamed with no change of value.
const CREATE_RENAMES: &[(&str, &str)] = &[
    ("hostname", "Hostname"),
    ("domainname", "Domainname"),
    ("working_dir", "WorkingDir"),
    ("tty", "Tty"),
    ("stdin_open", "OpenStdin"),
    ("network_disabled", "NetworkDisabled"),
    ("mac_address", "MacAddress"),
    ("stop_signal", "StopSignal"),
    ("stop_timeout", "StopTimeout"),
    ("networking_config", "NetworkingConfig"),
];

fn invalid(setting: &str, key: &str, value: &Value, allowed: &str) -> CoreError {
    CoreError::InvalidSpec(format!(
        "{setting}: {key}={value} is not allowed: {allowed}"
    ))
}

fn lookup<'a>(table: &'a [(&str, &'a str)], key: &str) -> Option<&'a str> {
    table.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

fn is_engine_field(key: &str) -> bool {
    key.chars().next().is_some_and(char::is_uppercase)
}

fn bytes(setting: &str, key: &str, value: &Value) -> CoreResult<Value> {
    match value {
        Value::Null | Value::Number(_) => Ok(value.clone()),
        Value::String(s) => memory::parse_docker_bytes(s)
            .map(|b| json!(b))
            .map_err(|e| CoreError::InvalidSpec(format!("{setting}: {key}: {e}"))),
        other => Err(invalid(
            setting,
            key,
            other,
            "use a number of bytes or a string such as '1g' or '512m'",
        )),
    }
}

/// A scalar as the string the Engine wants, as docker-py's `str(value)` makes it. Lists, dicts and
/// null are refused: sent as JSON text (or as "") they would become a wrong value silently.
fn scalar_string(setting: &str, key: &str, value: &Value, allowed: &str) -> CoreResult<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(invalid(setting, key, other, allowed)),
    }
}

/// A list item that must be a string; `key` names the setting's entry (`labels[1]`).
fn string_item<'a>(
    setting: &str,
    key: &str,
    value: &'a Value,
    allowed: &str,
) -> CoreResult<&'a str> {
    value
        .as_str()
        .ok_or_else(|| invalid(setting, key, value, allowed))
}

/// docker-py's list form of a dict keyed by strings (`labels=["a"]`, `volumes=["/data"]`): each
/// item becomes a key with the value `empty`; an item that is not a string is refused.
fn list_as_keys(
    setting: &str,
    key: &str,
    items: &[Value],
    empty: &Value,
    allowed: &str,
) -> CoreResult<Value> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let name = string_item(setting, &format!("{key}[{i}]"), item, allowed)?;
            Ok((name.to_owned(), empty.clone()))
        })
        .collect::<CoreResult<Map<_, _>>>()
        .map(Value::Object)
}

/// A docker-py `snake_case` keyword as its Engine API `PascalCase` field (`shm_size` ->
/// `ShmSize`). A key that already starts upper-case is an Engine field and is kept as it is;
/// `special` lists the keywords whose Engine name is not the plain conversion (the swarm model
/// has several, e.g. `workdir` -> `Dir`).
pub(crate) fn pascal_case(key: &str, special: &[(&str, &str)]) -> String {
    if is_engine_field(key) {
        return key.to_owned();
    }
    if let Some(name) = lookup(special, key) {
        return name.to_owned();
    }
    key.split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |c| {
                c.to_uppercase().chain(chars).collect::<String>()
            })
        })
        .collect()
}

/// PascalCase the keys of a dict given with docker-py's snake_case names (`Ulimit(name=...)`).
fn pascal_keys(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (pascal_case(k, &[]), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn port_bindings(setting: &str, value: &Value) -> CoreResult<Value> {
    let Value::Object(map) = value else {
        return Err(invalid(
            setting,
            "port_bindings",
            value,
            "use {container_port: host_port or (host_ip, host_port)}",
        ));
    };
    let mut out = Map::new();
    for (port, host) in map {
        let key = if port.contains('/') {
            port.clone()
        } else {
            format!("{port}/tcp")
        };
        let one = |h: &Value| -> CoreResult<Value> {
            match h {
                Value::Null => Ok(json!({"HostIp": "", "HostPort": ""})),
                Value::Number(n) => Ok(json!({"HostIp": "", "HostPort": n.to_string()})),
                Value::String(s) => Ok(json!({"HostIp": "", "HostPort": s})),
                Value::Array(pair) if !pair.is_empty() && pair.len() <= 2 => {
                    let ip = string_item(
                        setting,
                        "port_bindings",
                        &pair[0],
                        "the host IP of (host_ip, host_port) must be a string",
                    )?;
                    let port = match pair.get(1) {
                        None | Some(Value::Null) => String::new(),
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Number(n)) => n.to_string(),
                        Some(other) => return Err(invalid(
                            setting,
                            "port_bindings",
                            other,
                            "the host port of (host_ip, host_port) must be a number or a string",
                        )),
                    };
                    Ok(json!({"HostIp": ip, "HostPort": port}))
                }
                Value::Object(_) => Ok(pascal_keys(h)),
                other => Err(invalid(
                    setting,
                    "port_bindings",
                    other,
                    "use a host port, (host_ip,) or (host_ip, host_port)",
                )),
            }
        };
        // A list of (ip, port) pairs binds several host ports; a plain pair binds one.
        let bindings = match host {
            Value::Array(items) if items.iter().all(|i| i.is_array() || i.is_object()) => {
                items.iter().map(one).collect::<CoreResult<Vec<_>>>()?
            }
            Value::Array(items) if items.iter().all(Value::is_number) => {
                items.iter().map(one).collect::<CoreResult<Vec<_>>>()?
            }
            other => vec![one(other)?],
        };
        out.insert(key, Value::Array(bindings));
    }
    Ok(Value::Object(out))
}

/// Converts `extra_host_config` from docker-py's `create_host_config` keywords.
pub fn host_config(setting: &str, input: &Map<String, Value>) -> CoreResult<Map<String, Value>> {
    let mut out = Map::new();
    for (key, value) in input {
        if is_engine_field(key) {
            out.insert(key.clone(), value.clone());
            continue;
        }
        if HOST_INTS.contains(&key.as_str()) && !(value.is_i64() || value.is_null()) {
            return Err(invalid(setting, key, value, "use an integer"));
        }
        if let Some(field) = lookup(HOST_BYTES, key) {
            out.insert(field.into(), bytes(setting, key, value)?);
            continue;
        }
        if let Some(field) = lookup(HOST_RENAMES, key) {
            let value = match key.as_str() {
                "restart_policy" => pascal_keys(value),
                _ => value.clone(),
            };
            out.insert(field.into(), value);
            continue;
        }
        let converted = match key.as_str() {
            "binds" => ("Binds", binds(setting, value)?),
            "port_bindings" => ("PortBindings", port_bindings(setting, value)?),
            "links" => (
                "Links",
                match value {
                    Value::Object(map) => Value::Array(
                        map.iter()
                            .map(|(name, alias)| match alias {
                                // No alias: the link's name is its alias, as in docker-py.
                                Value::Null => Ok(json!(format!("{name}:{name}"))),
                                Value::String(a) if a.is_empty() => {
                                    Ok(json!(format!("{name}:{name}")))
                                }
                                Value::String(a) => Ok(json!(format!("{name}:{a}"))),
                                other => Err(invalid(
                                    setting,
                                    &format!("links['{name}']"),
                                    other,
                                    "use an alias string",
                                )),
                            })
                            .collect::<CoreResult<Vec<_>>>()?,
                    ),
                    other => other.clone(),
                },
            ),
            "mounts" => ("Mounts", value.clone()),
            "ulimits" => (
                "Ulimits",
                match value {
                    Value::Array(items) => Value::Array(items.iter().map(pascal_keys).collect()),
                    other => other.clone(),
                },
            ),
            "device_requests" => (
                "DeviceRequests",
                match value {
                    Value::Array(items) => Value::Array(
                        items
                            .iter()
                            .map(|item| {
                                let mut out = pascal_keys(item);
                                // docker-py's DeviceRequest spells it `device_ids` -> DeviceIDs.
                                if let Some(map) = out.as_object_mut() {
                                    if let Some(ids) = map.remove("DeviceIds") {
                                        map.insert("DeviceIDs".into(), ids);
                                    }
                                }
                                out
                            })
                            .collect(),
                    ),
                    other => other.clone(),
                },
            ),
            "devices" => ("Devices", devices(setting, value)?),
            "log_config" => ("LogConfig", pascal_keys(value)),
            "tmpfs" => (
                "Tmpfs",
                match value {
                    Value::Array(items) => {
                        let mut map = Map::new();
                        for (i, item) in items.iter().enumerate() {
                            let s = string_item(
                                setting,
                                &format!("tmpfs[{i}]"),
                                item,
                                "use 'path' or 'path:options' strings",
                            )?;
                            let (path, opts) = s.split_once(':').unwrap_or((s, ""));
                            map.insert(path.to_owned(), json!(opts));
                        }
                        Value::Object(map)
                    }
                    other => other.clone(),
                },
            ),
            "sysctls" => (
                "Sysctls",
                match value {
                    Value::Object(map) => Value::Object(
                        map.iter()
                            .map(|(k, v)| {
                                let text = scalar_string(
                                    setting,
                                    &format!("sysctls['{k}']"),
                                    v,
                                    "use a string or a number",
                                )?;
                                Ok((k.clone(), Value::String(text)))
                            })
                            .collect::<CoreResult<Map<_, _>>>()?,
                    ),
                    other => other.clone(),
                },
            ),
            "group_add" => (
                "GroupAdd",
                match value {
                    Value::Array(items) => Value::Array(
                        items
                            .iter()
                            .enumerate()
                            .map(|(i, g)| {
                                scalar_string(
                                    setting,
                                    &format!("group_add[{i}]"),
                                    g,
                                    "use group names or ids",
                                )
                                .map(Value::String)
                            })
                            .collect::<CoreResult<Vec<_>>>()?,
                    ),
                    other => other.clone(),
                },
            ),
            "extra_hosts" => (
                "ExtraHosts",
                match value {
                    Value::Object(map) => Value::Array(
                        map.iter()
                            .map(|(host, ip)| {
                                let ip = string_item(
                                    setting,
                                    &format!("extra_hosts['{host}']"),
                                    ip,
                                    "use an IP address string",
                                )?;
                                Ok(json!(format!("{host}:{ip}")))
                            })
                            .collect::<CoreResult<Vec<_>>>()?,
                    ),
                    other => other.clone(),
                },
            ),
            _ => {
                return Err(CoreError::InvalidSpec(format!(
                    "{setting}: unknown key '{key}': use a docker-py create_host_config keyword (shm_size, cap_add, device_requests, ulimits, ...) or an Engine API HostConfig field (ShmSize, CapAdd, ...)"
                )))
            }
        };
        out.insert(converted.0.into(), converted.1);
    }
    if out.get("NetworkMode").and_then(Value::as_str) == Some("host")
        && out.get("PortBindings").is_some_and(|p| !p.is_null())
    {
        return Err(CoreError::InvalidSpec(format!(
            "{setting}: port_bindings cannot be used with network_mode='host'"
        )));
    }
    Ok(out)
}

/// docker-py's `binds` dict, `{source: {"bind": target, "mode": "ro"}}` or `{source: target}`, as
/// `Binds` strings; a list passes through as Engine `Binds`.
fn binds(setting: &str, value: &Value) -> CoreResult<Value> {
    let Value::Object(map) = value else {
        return Ok(value.clone());
    };
    let mut out = Vec::with_capacity(map.len());
    for (src, spec) in map {
        let key = format!("binds['{src}']");
        let bind = match spec {
            Value::String(dst) => format!("{src}:{dst}:rw"),
            Value::Object(b) => {
                let target = match b.get("bind") {
                    Some(Value::String(t)) if !t.is_empty() => t,
                    _ => {
                        return Err(invalid(
                            setting,
                            &key,
                            spec,
                            "use {'bind': '/path/in/container', 'mode': 'rw'}",
                        ))
                    }
                };
                // docker-py's forms: `mode`, or `ro` as a flag, not both.
                let mode = match (b.get("mode"), b.get("ro")) {
                    (Some(_), Some(_)) => {
                        return Err(invalid(
                            setting,
                            &key,
                            spec,
                            "give 'mode' or 'ro', not both",
                        ))
                    }
                    (Some(Value::String(m)), None) => m.clone(),
                    (None, Some(Value::Bool(ro))) => if *ro { "ro" } else { "rw" }.to_owned(),
                    (None, None) => "rw".to_owned(),
                    _ => {
                        return Err(invalid(
                            setting,
                            &key,
                            spec,
                            "'mode' must be a string such as 'ro' and 'ro' a boolean",
                        ))
                    }
                };
                let mode = match b.get("propagation") {
                    None | Some(Value::Null) => mode,
                    Some(Value::String(p)) if !p.is_empty() => format!("{mode},{p}"),
                    Some(_) => {
                        return Err(invalid(
                            setting,
                            &key,
                            spec,
                            "'propagation' must be a string such as 'rslave'",
                        ))
                    }
                };
                format!("{src}:{target}:{mode}")
            }
            other => {
                return Err(invalid(
                    setting,
                    &key,
                    other,
                    "use a container path or {'bind': path, 'mode': 'rw'}",
                ))
            }
        };
        out.push(json!(bind));
    }
    Ok(Value::Array(out))
}

/// One `ports` entry of `create_container`: a port (`8888`, `"8888"`, `"53/udp"`) or docker-py's
/// `(port, protocol)` pair; the `ExposedPorts` key it stands for.
fn exposed_port(setting: &str, index: usize, value: &Value) -> CoreResult<String> {
    let key = format!("ports[{index}]");
    let allowed = "use a port number, 'port/protocol', or (port, protocol)";
    let (port, protocol) = match value {
        Value::Array(pair) if !pair.is_empty() && pair.len() <= 2 => {
            let protocol = match pair.get(1) {
                None => "tcp",
                Some(p) => string_item(setting, &key, p, allowed)?,
            };
            (&pair[0], Some(protocol))
        }
        other => (other, None),
    };
    let port = match port {
        Value::Number(n) => n.to_string(),
        Value::String(s) if !s.is_empty() => s.clone(),
        _ => return Err(invalid(setting, &key, value, allowed)),
    };
    Ok(match protocol {
        Some(protocol) => format!("{port}/{protocol}"),
        None if port.contains('/') => port,
        None => format!("{port}/tcp"),
    })
}

/// What kind of JSON value this is, for messages that must not show the value itself.
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "None",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a dict",
    }
}

fn devices(setting: &str, value: &Value) -> CoreResult<Value> {
    let Value::Array(items) = value else {
        return Err(invalid(
            setting,
            "devices",
            value,
            "use a list such as ['/dev/fuse:/dev/fuse:rwm']",
        ));
    };
    let mut out = Vec::new();
    for item in items {
        match item {
            Value::String(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                let host = parts.first().copied().unwrap_or_default();
                let container = parts.get(1).copied().unwrap_or(host);
                let perms = parts.get(2).copied().unwrap_or("rwm");
                out.push(json!({"PathOnHost": host, "PathInContainer": container, "CgroupPermissions": perms}));
            }
            Value::Object(_) => out.push(pascal_keys(item)),
            other => {
                return Err(invalid(
                    setting,
                    "devices",
                    other,
                    "use 'host:container:perms' strings",
                ))
            }
        }
    }
    Ok(Value::Array(out))
}

/// Converts `extra_create_kwargs` from docker-py's `create_container` keywords.
pub fn create_kwargs(setting: &str, input: &Map<String, Value>) -> CoreResult<Map<String, Value>> {
    let mut out = Map::new();
    for (key, value) in input {
        if is_engine_field(key) {
            out.insert(key.clone(), value.clone());
            continue;
        }
        if let Some(field) = lookup(CREATE_RENAMES, key) {
            out.insert(field.into(), value.clone());
            continue;
        }
        let converted = match key.as_str() {
            "user" => (
                "User",
                match value {
                    Value::Null => Value::Null,
                    other => Value::String(scalar_string(
                        setting,
                        key,
                        other,
                        "use a user name or id, optionally with ':group'",
                    )?),
                },
            ),
            "image" => ("Image", value.clone()),
            "command" => ("Cmd", split_command(setting, key, value)?),
            "entrypoint" => ("Entrypoint", split_command(setting, key, value)?),
            "environment" => (
                "Env",
                match value {
                    Value::Object(map) => Value::Array(
                        map.iter()
                            .map(|(k, v)| {
                                // Only the variable's name is shown: its value may be a secret.
                                let text = match v {
                                    Value::String(s) => s.clone(),
                                    Value::Number(n) => n.to_string(),
                                    Value::Bool(b) => b.to_string(),
                                    _ => {
                                        return Err(CoreError::InvalidSpec(format!(
                                            "{setting}: environment['{k}'] is not allowed: it is {}; use a string",
                                            json_kind(v)
                                        )))
                                    }
                                };
                                Ok(json!(format!("{k}={text}")))
                            })
                            .collect::<CoreResult<Vec<_>>>()?,
                    ),
                    other => other.clone(),
                },
            ),
            "labels" => (
                "Labels",
                match value {
                    Value::Array(items) => list_as_keys(
                        setting,
                        key,
                        items,
                        &json!(""),
                        "use label name strings, or a dict of labels",
                    )?,
                    other => other.clone(),
                },
            ),
            "volumes" => (
                "Volumes",
                match value {
                    Value::Array(items) => list_as_keys(
                        setting,
                        key,
                        items,
                        &json!({}),
                        "use container path strings",
                    )?,
                    Value::String(s) => json!({ s.clone(): {} }),
                    other => other.clone(),
                },
            ),
            "ports" => (
                "ExposedPorts",
                match value {
                    Value::Array(items) => Value::Object(
                        items
                            .iter()
                            .enumerate()
                            .map(|(i, p)| Ok((exposed_port(setting, i, p)?, json!({}))))
                            .collect::<CoreResult<Map<_, _>>>()?,
                    ),
                    other => other.clone(),
                },
            ),
            "healthcheck" => ("Healthcheck", pascal_keys(value)),
            "host_config" => ("HostConfig", value.clone()),
            // Accepted by docker-py but not part of the create body; meaningless for a spawner.
            "detach" | "use_config_proxy" => continue,
            _ => {
                return Err(CoreError::InvalidSpec(format!(
                    "{setting}: unknown key '{key}': use a docker-py create_container keyword (user, labels, working_dir, environment, ...) or an Engine API field (User, Labels, WorkingDir, ...)"
                )))
            }
        };
        out.insert(converted.0.into(), converted.1);
    }
    Ok(out)
}

/// docker-py splits a string command with shlex; a plain whitespace split covers the
/// unquoted case, and a quote is refused rather than guessed at.
fn split_command(setting: &str, key: &str, value: &Value) -> CoreResult<Value> {
    match value {
        Value::String(s) => {
            if s.contains(['"', '\'', '\\']) {
                return Err(invalid(
                    setting,
                    key,
                    value,
                    "give a list of arguments when the command needs quoting",
                ));
            }
            Ok(Value::Array(
                s.split_whitespace().map(|p| json!(p)).collect(),
            ))
        }
        other => Ok(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(v: Value) -> CoreResult<Value> {
        host_config("extra_host_config", v.as_object().unwrap()).map(Value::Object)
    }

    fn create(v: Value) -> CoreResult<Value> {
        create_kwargs("extra_create_kwargs", v.as_object().unwrap()).map(Value::Object)
    }

    #[test]
    fn host_config_table() {
        let cases = [
            (json!({"shm_size": "1g"}), json!({"ShmSize": 1_073_741_824})),
            (
                json!({"mem_limit": "1.5g"}),
                json!({"Memory": 1_610_612_736}),
            ),
            (json!({"memswap_limit": -1}), json!({"MemorySwap": -1})),
            (json!({"cpu_period": 50000}), json!({"CpuPeriod": 50000})),
            (
                json!({"cap_add": ["SYS_ADMIN"]}),
                json!({"CapAdd": ["SYS_ADMIN"]}),
            ),
            (json!({"pids_limit": 100}), json!({"PidsLimit": 100})),
            (json!({"ShmSize": 5}), json!({"ShmSize": 5})),
            (
                json!({"ulimits": [{"name": "nofile", "soft": 1024, "hard": 2048}]}),
                json!({"Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]}),
            ),
            (
                json!({"device_requests": [{"count": -1, "capabilities": [["gpu"]]}]}),
                json!({"DeviceRequests": [{"Count": -1, "Capabilities": [["gpu"]]}]}),
            ),
            (
                json!({"device_requests": [{"Driver": "nvidia", "DeviceIDs": ["0"]}]}),
                json!({"DeviceRequests": [{"Driver": "nvidia", "DeviceIDs": ["0"]}]}),
            ),
            (
                json!({"device_requests": [{"device_ids": ["1"]}]}),
                json!({"DeviceRequests": [{"DeviceIDs": ["1"]}]}),
            ),
            (
                json!({"tmpfs": ["/run:size=64m", "/tmp"]}),
                json!({"Tmpfs": {"/run": "size=64m", "/tmp": ""}}),
            ),
            (
                json!({"tmpfs": {"/run": "size=1m"}}),
                json!({"Tmpfs": {"/run": "size=1m"}}),
            ),
            (
                json!({"restart_policy": {"Name": "on-failure", "MaximumRetryCount": 3}}),
                json!({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}}),
            ),
            (
                json!({"log_config": {"type": "json-file", "config": {"max-size": "1m"}}}),
                json!({"LogConfig": {"Type": "json-file", "Config": {"max-size": "1m"}}}),
            ),
            (
                json!({"sysctls": {"net.core.somaxconn": 1024}}),
                json!({"Sysctls": {"net.core.somaxconn": "1024"}}),
            ),
            (
                json!({"group_add": [100, "users"]}),
                json!({"GroupAdd": ["100", "users"]}),
            ),
            (
                json!({"links": {"db": "database"}}),
                json!({"Links": ["db:database"]}),
            ),
            (
                json!({"extra_hosts": {"hub": "10.0.0.1"}}),
                json!({"ExtraHosts": ["hub:10.0.0.1"]}),
            ),
            (
                json!({"binds": {"/srv": {"bind": "/data", "mode": "ro"}}}),
                json!({"Binds": ["/srv:/data:ro"]}),
            ),
            (
                json!({"port_bindings": {"8888": ["127.0.0.1"]}}),
                json!({"PortBindings": {"8888/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}}),
            ),
            (
                json!({"port_bindings": {"8888/tcp": 9000}}),
                json!({"PortBindings": {"8888/tcp": [{"HostIp": "", "HostPort": "9000"}]}}),
            ),
            (
                json!({"devices": ["/dev/fuse"]}),
                json!({"Devices": [{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"}]}),
            ),
            (
                json!({"read_only": true, "init": true}),
                json!({"ReadonlyRootfs": true, "Init": true}),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(host(input.clone()).unwrap(), expected, "{input}");
        }
    }

    #[test]
    fn host_config_errors_name_the_key() {
        for (input, needle) in [
            (json!({"shm_sise": "1g"}), "'shm_sise'"),
            (json!({"cpu_period": "50000"}), "cpu_period"),
            (json!({"shm_size": "lots"}), "shm_size"),
            (
                json!({"network_mode": "host", "port_bindings": {"8888": 1}}),
                "network_mode='host'",
            ),
        ] {
            let err = host(input).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
            assert!(err.contains("extra_host_config"), "{err}");
        }
    }

    #[test]
    fn create_kwargs_table() {
        let cases = [
            (json!({"user": "root"}), json!({"User": "root"})),
            (json!({"user": 1000}), json!({"User": "1000"})),
            (json!({"working_dir": "/w"}), json!({"WorkingDir": "/w"})),
            (json!({"labels": {"a": "b"}}), json!({"Labels": {"a": "b"}})),
            (json!({"labels": ["a"]}), json!({"Labels": {"a": ""}})),
            (
                json!({"environment": {"A": "1", "B": 2}}),
                json!({"Env": ["A=1", "B=2"]}),
            ),
            (
                json!({"entrypoint": "tini -g --"}),
                json!({"Entrypoint": ["tini", "-g", "--"]}),
            ),
            (json!({"command": ["a", "b"]}), json!({"Cmd": ["a", "b"]})),
            (
                json!({"ports": [8888, "9000/udp"]}),
                json!({"ExposedPorts": {"8888/tcp": {}, "9000/udp": {}}}),
            ),
            (
                json!({"stop_timeout": 30, "detach": true}),
                json!({"StopTimeout": 30}),
            ),
            (
                json!({"healthcheck": {"test": ["CMD", "true"], "interval": 1_000_000_000}}),
                json!({"Healthcheck": {"Test": ["CMD", "true"], "Interval": 1_000_000_000}}),
            ),
            (
                json!({"host_config": {"ShmSize": 1}}),
                json!({"HostConfig": {"ShmSize": 1}}),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(create(input.clone()).unwrap(), expected, "{input}");
        }
        let err = create(json!({"usr": "root"})).unwrap_err().to_string();
        assert!(
            err.contains("'usr'") && err.contains("extra_create_kwargs"),
            "{err}"
        );
        let err = create(json!({"command": "sh -c 'x y'"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("command"), "{err}");
    }

    #[test]
    fn pascal_case_keeps_engine_fields_and_uses_special_names() {
        assert_eq!(pascal_case("shm_size", &[]), "ShmSize");
        assert_eq!(pascal_case("device_ids", &[]), "DeviceIds");
        assert_eq!(pascal_case("ShmSize", &[]), "ShmSize");
        assert_eq!(pascal_case("workdir", &[("workdir", "Dir")]), "Dir");
        assert_eq!(pascal_case("Workdir", &[("workdir", "Dir")]), "Workdir");
    }

    #[test]
    fn list_items_of_the_wrong_type_are_named() {
        for (input, needle) in [
            (json!({"tmpfs": ["/run", 5]}), "tmpfs[1]=5"),
            (json!({"sysctls": {"a": [1]}}), "sysctls['a']=[1]"),
            (json!({"group_add": [null]}), "group_add[0]=null"),
            (json!({"extra_hosts": {"hub": 10}}), "extra_hosts['hub']=10"),
            (json!({"links": {"db": 1}}), "links['db']=1"),
            (json!({"binds": {"/srv": 5}}), "binds['/srv']=5"),
            (json!({"binds": {"/srv": {"mode": "ro"}}}), "binds['/srv']="),
            (
                json!({"binds": {"/srv": {"bind": "/d", "mode": 1}}}),
                "'mode' must be",
            ),
            (
                json!({"port_bindings": {"8888": [[1, 2]]}}),
                "port_bindings=1",
            ),
            (
                json!({"port_bindings": {"8888": ["127.0.0.1", {}]}}),
                "port_bindings={}",
            ),
        ] {
            let err = host(input.clone()).unwrap_err().to_string();
            assert!(
                err.contains("extra_host_config") && err.contains(needle),
                "{input}: {err}"
            );
        }
        for (input, needle) in [
            (json!({"labels": ["a", 1]}), "labels[1]=1"),
            (json!({"volumes": ["/a", {}]}), "volumes[1]={}"),
            (json!({"ports": [8888, {}]}), "ports[1]={}"),
            (json!({"ports": [[8888, 1]]}), "ports[0]=1"),
            (json!({"user": ["root"]}), "user=[\"root\"]"),
            (
                json!({"environment": {"TOKEN": {"x": 1}}}),
                "environment['TOKEN']",
            ),
        ] {
            let err = create(input.clone()).unwrap_err().to_string();
            assert!(
                err.contains("extra_create_kwargs") && err.contains(needle),
                "{input}: {err}"
            );
        }
        // The value of an environment variable may be a secret: it is never shown.
        let err = create(json!({"environment": {"TOKEN": ["s3cret"]}}))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn docker_py_value_forms() {
        let cases = [
            (
                json!({"binds": {"/srv": {"bind": "/d", "ro": true}, "/x": {"bind": "/x", "mode": "rw", "propagation": "rslave"}}}),
                json!({"Binds": ["/srv:/d:ro", "/x:/x:rw,rslave"]}),
            ),
            (
                json!({"links": {"db": null, "cache": ""}}),
                json!({"Links": ["cache:cache", "db:db"]}),
            ),
            (
                json!({"port_bindings": {"8888": ["127.0.0.1", 9000]}}),
                json!({"PortBindings": {"8888/tcp": [{"HostIp": "127.0.0.1", "HostPort": "9000"}]}}),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(host(input.clone()).unwrap(), expected, "{input}");
        }
        assert_eq!(
            create(json!({"ports": [[53, "udp"], [8080]], "user": null})).unwrap(),
            json!({"ExposedPorts": {"53/udp": {}, "8080/tcp": {}}, "User": null})
        );
    }
}

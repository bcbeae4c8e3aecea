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

fn stringify(value: &Value) -> Value {
    match value {
        Value::String(_) => value.clone(),
        other => Value::String(other.to_string()),
    }
}

/// PascalCase the keys of a dict given with docker-py's snake_case names (`Ulimit(name=...)`).
fn pascal_keys(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = if is_engine_field(k) {
                        k.clone()
                    } else {
                        k.split('_')
                            .map(|part| {
                                let mut chars = part.chars();
                                chars.next().map_or_else(String::new, |c| {
                                    c.to_uppercase().chain(chars).collect()
                                })
                            })
                            .collect()
                    };
                    (key, v.clone())
                })
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
                    let ip = pair[0].as_str().unwrap_or_default();
                    let port = pair.get(1).map_or_else(String::new, |p| match p {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    });
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
            "binds" => (
                "Binds",
                match value {
                    Value::Object(map) => Value::Array(
                        map.iter()
                            .map(|(src, spec)| match spec {
                                Value::Object(b) => {
                                    let bind = b.get("bind").and_then(Value::as_str).unwrap_or("");
                                    let mode = b.get("mode").and_then(Value::as_str).unwrap_or("rw");
                                    json!(format!("{src}:{bind}:{mode}"))
                                }
                                Value::String(dst) => json!(format!("{src}:{dst}:rw")),
                                other => json!(format!("{src}:{other}:rw")),
                            })
                            .collect(),
                    ),
                    other => other.clone(),
                },
            ),
            "port_bindings" => ("PortBindings", port_bindings(setting, value)?),
            "links" => (
                "Links",
                match value {
                    Value::Object(map) => Value::Array(
                        map.iter()
                            .map(|(name, alias)| {
                                json!(format!("{name}:{}", alias.as_str().unwrap_or(name)))
                            })
                            .collect(),
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
                        for item in items {
                            let s = item.as_str().unwrap_or_default();
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
                        map.iter().map(|(k, v)| (k.clone(), stringify(v))).collect(),
                    ),
                    other => other.clone(),
                },
            ),
            "group_add" => (
                "GroupAdd",
                match value {
                    Value::Array(items) => Value::Array(items.iter().map(stringify).collect()),
                    other => other.clone(),
                },
            ),
            "extra_hosts" => (
                "ExtraHosts",
                match value {
                    Value::Object(map) => Value::Array(
                        map.iter()
                            .map(|(host, ip)| json!(format!("{host}:{}", stringify(ip).as_str().unwrap_or(""))))
                            .collect(),
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
            "user" => ("User", stringify(value)),
            "image" => ("Image", value.clone()),
            "command" => ("Cmd", split_command(setting, key, value)?),
            "entrypoint" => ("Entrypoint", split_command(setting, key, value)?),
            "environment" => (
                "Env",
                match value {
                    Value::Object(map) => Value::Array(
                        map.iter()
                            .map(|(k, v)| {
                                json!(format!("{k}={}", stringify(v).as_str().unwrap_or_default()))
                            })
                            .collect(),
                    ),
                    other => other.clone(),
                },
            ),
            "labels" => (
                "Labels",
                match value {
                    Value::Array(items) => Value::Object(
                        items
                            .iter()
                            .map(|i| (i.as_str().unwrap_or_default().to_owned(), json!("")))
                            .collect(),
                    ),
                    other => other.clone(),
                },
            ),
            "volumes" => (
                "Volumes",
                match value {
                    Value::Array(items) => Value::Object(
                        items
                            .iter()
                            .map(|i| (i.as_str().unwrap_or_default().to_owned(), json!({})))
                            .collect(),
                    ),
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
                            .map(|p| {
                                let p = stringify(p);
                                let p = p.as_str().unwrap_or_default();
                                let key = if p.contains('/') { p.to_owned() } else { format!("{p}/tcp") };
                                (key, json!({}))
                            })
                            .collect(),
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
}

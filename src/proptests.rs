//! Property tests of the pure parsers: templates and escaping, memory strings, docker-py keyword
//! conversion, and the container and swarm specs built from the JSON Python hands over.
//!
//! Every property feeds generated input (arbitrary Unicode, numbers including NaN, infinities and
//! values past `i64::MAX`, JSON of bounded depth whose keys come from the real keyword tables
//! mixed with random ones) and checks that nothing panics (proptest turns a panic into a failure
//! and shrinks it) and that every failure is the module's own error with a message that says
//! something. Where a simple model of the result exists, the result is compared with it.
//!
//! The number of cases per property is proptest's default (256), or `PROPTEST_CASES` from the
//! environment: `cargo test --lib` runs the default, `scripts/fuzz.sh` a million at release speed.
//! A failure found here becomes a plain `#[test]` in `mod checks` at the end of this file, with the
//! input spelled out, so no regression-seed files are written.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{json, Map, Number, Value};

use crate::dockerpy;
use crate::errors::CoreError;
use crate::memory::{self, MemoryError, MemoryValue};
use crate::spec::ContainerSpec;
use crate::swarm::{self, SwarmExtras};
use crate::template::{self, Namespace, TemplateError};

/// 2^63: the first byte count past `i64::MAX`.
const I64_LIMIT: f64 = 9_223_372_036_854_775_808.0;

/// proptest's defaults (cases from `PROPTEST_CASES`, else 256), without regression files: found
/// failures are kept as plain tests instead.
fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Fails the case unless `err` is a `CoreError::InvalidSpec` with a non-blank message (the pure
/// modules report nothing else: the other variants are about the engine).
fn clean(err: &CoreError) -> Result<(), TestCaseError> {
    match err {
        CoreError::InvalidSpec(message) if !message.trim().is_empty() => Ok(()),
        other => Err(TestCaseError::fail(format!(
            "not a clean InvalidSpec: {other:?}"
        ))),
    }
}

/// `dockerpy::host_config` or `dockerpy::create_kwargs`.
type Converter = fn(&str, &Map<String, Value>) -> crate::errors::CoreResult<Map<String, Value>>;

/// The docker-py converters' property: every result key is an Engine field (an input of Engine
/// fields only comes out unchanged), and every error starts with the setting's name.
fn check_converter(
    setting: &str,
    input: &Map<String, Value>,
    convert: Converter,
) -> Result<(), TestCaseError> {
    match convert(setting, input) {
        Ok(out) => {
            prop_assert!(out.len() <= input.len());
            for key in out.keys() {
                prop_assert!(
                    key.starts_with(char::is_uppercase),
                    "{} from {:?}",
                    key,
                    input
                );
            }
            if input.keys().all(|k| k.starts_with(char::is_uppercase)) {
                prop_assert_eq!(&out, input);
            }
        }
        Err(err) => {
            clean(&err)?;
            prop_assert!(
                err.to_string().starts_with(&format!("{setting}: ")),
                "{}",
                err
            );
        }
    }
    Ok(())
}

/// Whether `err`'s message names one of `settings`.
fn names_one_of(err: &CoreError, settings: &[&str]) -> bool {
    let message = err.to_string();
    settings.iter().any(|s| message.contains(s))
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Any Unicode text (controls, NUL and astral-plane characters included).
fn unicode(max: usize) -> impl Strategy<Value = String> + Clone {
    prop::collection::vec(any::<char>(), 0..=max).prop_map(String::from_iter)
}

/// Text that looks like what configurations hold, half the time arbitrary Unicode.
fn text() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        3 => unicode(12),
        2 => "[a-z][a-z0-9_-]{0,10}",
        1 => prop::sample::select(vec![
            "", " ", "1g", "512m", "1.5gb", "0", "-1", "1e3", "nan", "host", "bridge", "ro", "rw",
            "rslave", "/data", "/home/jovyan/work", "/srv/../etc", "..", "a/b", "a b c",
            "quote'd", "8888", "8888/tcp", "53/udp", "/dev/fuse:/dev/fuse:rwm", "/run:size=64m",
            "KEY=value", "\0", "{username}", "gpu", "none",
        ])
        .prop_map(str::to_owned),
    ]
}

/// A finite or non-finite `f64` from every class, with the boundaries the parsers care about.
fn any_f64() -> impl Strategy<Value = f64> + Clone {
    prop_oneof![
        4 => prop::num::f64::ANY,
        2 => -10.0..1e7_f64,
        1 => prop::sample::select(vec![
            f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.0, 1e-310, I64_LIMIT,
            I64_LIMIT - 1024.0, -I64_LIMIT, f64::MAX, f64::MIN, 0.001, 0.01, 1e300,
        ]),
    ]
}

/// A JSON number: any `i64`, any `u64`, or a finite `f64` (JSON has no NaN or infinity).
fn json_number() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-100_i64..70_000).prop_map(Value::from),
        any_f64().prop_map(|x| Number::from_f64(x).map_or(Value::Null, Value::Number)),
    ]
}

/// A JSON scalar.
fn json_leaf() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        json_number(),
        text().prop_map(Value::String),
    ]
}

/// Keys of nested dicts: the docker-py and Engine spellings the converters look for inside
/// values, and random ones.
fn nested_key() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        3 => prop::sample::select(vec![
            "bind", "mode", "ro", "propagation", "name", "soft", "hard", "Name", "Soft", "Hard",
            "device_ids", "DeviceIds", "DeviceIDs", "count", "capabilities", "Driver",
            "condition", "Condition", "MaximumRetryCount", "type", "Type", "config", "Config",
            "test", "Test", "interval", "8888", "8888/tcp", "HostIp", "HostPort", "options",
            "Options", "Labels", "Target", "Source", "PathOnHost",
        ])
        .prop_map(str::to_owned),
        1 => text(),
    ]
}

/// JSON of bounded depth and size whose dict keys come from `key`.
fn json_value(key: impl Strategy<Value = String> + Clone + 'static) -> BoxedStrategy<Value> {
    json_leaf()
        .prop_recursive(3, 24, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((key.clone(), inner), 0..4)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
        .boxed()
}

/// A dict whose top-level keys come from `key` and whose values are arbitrary JSON.
fn json_object(
    key: impl Strategy<Value = String> + Clone + 'static,
    max: usize,
) -> BoxedStrategy<Map<String, Value>> {
    prop::collection::vec((key, json_value(nested_key())), 0..=max)
        .prop_map(|pairs| pairs.into_iter().collect())
        .boxed()
}

/// `extra_host_config` keywords of docker-py's `create_host_config`, as `dockerpy` knows them
/// (checked by `keyword_lists_are_the_converters_keywords`).
#[rustfmt::skip]
const HOST_KEYWORDS: &[&str] = &[
    "auto_remove", "blkio_weight", "blkio_weight_device", "cap_add", "cap_drop", "cgroup_parent",
    "cgroupns", "cpu_count", "cpu_percent", "cpu_period", "cpu_quota", "cpu_rt_period",
    "cpu_rt_runtime", "cpu_shares", "cpuset_cpus", "cpuset_mems", "device_cgroup_rules",
    "device_read_bps", "device_read_iops", "device_write_bps", "device_write_iops", "dns",
    "dns_opt", "dns_search", "init", "ipc_mode", "isolation", "mem_swappiness", "nano_cpus",
    "network_mode", "oom_kill_disable", "oom_score_adj", "pid_mode", "pids_limit", "privileged",
    "publish_all_ports", "read_only", "restart_policy", "runtime", "security_opt", "storage_opt",
    "userns_mode", "uts_mode", "volume_driver", "volumes_from", "mem_limit", "memswap_limit",
    "mem_reservation", "kernel_memory", "shm_size", "binds", "port_bindings", "links", "mounts",
    "ulimits", "device_requests", "devices", "log_config", "tmpfs", "sysctls", "group_add",
    "extra_hosts",
];

/// `extra_create_kwargs` keywords of docker-py's `create_container`, as `dockerpy` knows them.
#[rustfmt::skip]
const CREATE_KEYWORDS: &[&str] = &[
    "hostname", "domainname", "working_dir", "tty", "stdin_open", "network_disabled", "mac_address",
    "stop_signal", "stop_timeout", "networking_config", "user", "image", "command", "entrypoint",
    "environment", "labels", "volumes", "ports", "healthcheck", "host_config", "detach",
    "use_config_proxy",
];

/// Engine API fields (and a misspelt one) that pass through the converters as they are.
#[rustfmt::skip]
const ENGINE_FIELDS: &[&str] = &[
    "ShmSize", "Memory", "CpuPeriod", "CpuQuota", "NetworkMode", "PortBindings", "Binds", "Mounts",
    "Ulimits", "LogConfig", "Tmpfs", "Sysctls", "RestartPolicy", "Privileged", "CapAdd", "Env",
    "User", "Labels", "HostConfig", "Cmd", "WorkingDir", "ExposedPorts", "Healthcheck", "Volumes",
    "Image", "ShmSise", "Ärger",
];

/// A top-level key: a real keyword from `keywords`, an Engine field, or random text.
fn keyword(keywords: &'static [&'static str]) -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        12 => prop::sample::select(keywords).prop_map(str::to_owned),
        3 => prop::sample::select(ENGINE_FIELDS).prop_map(str::to_owned),
        1 => text(),
    ]
}

/// One optional field of a spec: present with probability `p`; when present, its value comes
/// from `value`, or rarely is any JSON at all (most often of the wrong type). Rarely, so that
/// most specs get past `from_json` to the builders.
fn field(
    name: &'static str,
    p: f64,
    value: impl Strategy<Value = Value> + 'static,
) -> BoxedStrategy<Option<(String, Value)>> {
    let value = prop_oneof![150 => value, 1 => json_value(nested_key())];
    prop::option::weighted(p, value.prop_map(move |v| (name.to_owned(), v))).boxed()
}

/// A string field's value.
fn string_value() -> impl Strategy<Value = Value> + Clone {
    text().prop_map(Value::String)
}

/// A `{str: str}` field.
fn string_map_value() -> impl Strategy<Value = Value> + Clone {
    prop::collection::vec((text(), string_value()), 0..4)
        .prop_map(|pairs| Value::Object(pairs.into_iter().collect()))
}

/// A list of strings.
fn string_list_value() -> impl Strategy<Value = Value> + Clone {
    prop::collection::vec(string_value(), 0..4).prop_map(Value::Array)
}

/// A mount source or target: the path shapes `check_source` and `normalised_target` treat
/// differently, and random text.
fn path_text() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        6 => prop::sample::select(vec![
            "/srv/data", "/home/jovyan/work", "/home/jovyan/work/", "/", "jupyterhub-user-alice",
            "vol", "/data", "/srv/{username}",
        ])
        .prop_map(str::to_owned),
        1 => prop::sample::select(vec![
            "..", ".", "/srv/../etc", "/srv//x", "/srv/./x", "a/b", "", "/a\0b",
        ])
        .prop_map(str::to_owned),
        1 => text(),
    ]
}

/// One `volumes` entry as Python sends it.
fn volume_entry() -> impl Strategy<Value = Value> {
    let mode = prop_oneof![
        4 => prop::sample::select(vec!["rw", "ro", "z", "Z", "ro,z"]).prop_map(Value::from),
        1 => string_value(),
        1 => json_leaf(),
    ];
    let propagation = prop_oneof![
        4 => prop::sample::select(vec!["rslave", "rshared", "private", ""]).prop_map(Value::from),
        1 => string_value(),
        1 => json_leaf(),
    ];
    let target = prop_oneof![
        6 => path_text().prop_map(Value::String),
        3 => (
            path_text(),
            prop::option::of(mode.clone()),
            prop::option::of(propagation.clone()),
        )
            .prop_map(|(bind, mode, propagation)| {
                let mut map = Map::from_iter([("bind".to_owned(), Value::String(bind))]);
                map.extend(mode.map(|m| ("mode".to_owned(), m)));
                map.extend(propagation.map(|p| ("propagation".to_owned(), p)));
                Value::Object(map)
            }),
        1 => prop::collection::vec(
            (
                prop::sample::select(vec!["bind", "mode", "propagation", "ro"]).prop_map(str::to_owned),
                prop_oneof![path_text().prop_map(Value::String), mode, propagation],
            ),
            0..4
        )
        .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
    ];
    (
        prop::sample::select(vec!["volumes", "read_only_volumes", "internal_ssl"]),
        path_text(),
        target,
        any::<bool>(),
        prop::option::weighted(0.01, text()),
    )
        .prop_map(|(setting, source, target, read_only, unknown)| {
            let mut entry = json!({"setting": setting, "source": source, "target": target,
                                   "read_only": read_only});
            if let Some(key) = unknown {
                entry[key] = json!(1);
            }
            entry
        })
}

/// One `mounts` entry: mostly a target, source and type, then docker-py `Mount` keywords,
/// Engine fields and random keys with any values.
fn mount_entry() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        8 => prop::sample::select(vec![
            "target", "source", "type", "read_only", "consistency", "propagation", "no_copy",
            "labels", "subpath", "driver_config", "tmpfs_size", "tmpfs_mode", "Target", "Source",
            "Type", "ReadOnly", "Consistency", "BindOptions", "VolumeOptions", "TmpfsOptions",
        ])
        .prop_map(str::to_owned),
        1 => text(),
    ];
    let value = prop_oneof![
        3 => path_text().prop_map(Value::String),
        1 => prop::sample::select(vec!["volume", "bind", "tmpfs", "npipe"]).prop_map(Value::from),
        2 => json_value(nested_key()),
    ];
    (
        prop::option::weighted(0.95, path_text()),
        prop::option::weighted(0.7, path_text()),
        prop::option::weighted(0.7, prop::sample::select(vec!["volume", "bind", "tmpfs"])),
        prop::option::weighted(0.4, prop::collection::vec((key, value), 1..3)),
    )
        .prop_map(|(target, source, kind, extra)| {
            let mut map = Map::new();
            map.extend(target.map(|t| ("target".to_owned(), Value::String(t))));
            map.extend(source.map(|s| ("source".to_owned(), Value::String(s))));
            map.extend(kind.map(|k| ("type".to_owned(), Value::from(k))));
            map.extend(extra.into_iter().flatten());
            Value::Object(map)
        })
}

/// A byte count field (`mem_limit`): a `u64`, mostly in the `0..=i64::MAX` that Python's check
/// lets through.
fn byte_count_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => any::<u64>().prop_map(Value::from),
        4 => (0..=i64::MAX.unsigned_abs()).prop_map(Value::from),
        4 => (0_u64..1 << 34).prop_map(Value::from),
    ]
}

/// The JSON `ContainerSpec::from_json` reads, from the real field names with random values, and
/// now and then a field it does not know.
fn spec_json() -> impl Strategy<Value = Value> {
    let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = vec![
        field(
            "name",
            0.99,
            prop_oneof![
                40 => "[a-z][a-z0-9-]{0,20}".prop_map(Value::from),
                1 => Just(Value::from("")),
                1 => string_value(),
            ],
        ),
        field(
            "image",
            0.99,
            prop_oneof![
                8 => "[a-z]{1,8}(/[a-z]{1,8})?(:[a-z0-9.]{1,6})?".prop_map(Value::from),
                1 => string_value(),
            ],
        ),
        field(
            "port",
            0.99,
            prop_oneof![
                40 => any::<u16>().prop_map(Value::from),
                1 => json_number(),
            ],
        ),
        field(
            "pull_policy",
            0.3,
            prop_oneof![
                20 => prop::sample::select(vec!["ifnotpresent", "always", "never", "skip"])
                    .prop_map(Value::from),
                1 => string_value(),
            ],
        ),
        field(
            "pull_stall_timeout",
            0.3,
            prop_oneof![
                10 => (0.0..100_000.0_f64).prop_map(Value::from),
                1 => json_number(),
            ],
        ),
        field(
            "cmd",
            0.3,
            prop_oneof![Just(Value::Null), string_list_value()],
        ),
        field("args", 0.3, string_list_value()),
        field("env", 0.5, string_map_value()),
        field("labels", 0.5, string_map_value()),
        field("volume_labels", 0.2, string_map_value()),
        field(
            "volumes",
            0.5,
            prop::collection::vec(volume_entry(), 0..4).prop_map(Value::Array),
        ),
        field(
            "mounts",
            0.4,
            prop::collection::vec(mount_entry(), 0..3).prop_map(Value::Array),
        ),
        field("mem_limit", 0.4, byte_count_value()),
        field("mem_guarantee", 0.3, byte_count_value()),
        field(
            "cpu_limit",
            0.4,
            prop_oneof![
                12 => (0.0..64.0_f64).prop_map(Value::from),
                1 => json_number(),
            ],
        ),
        field(
            "network_name",
            0.3,
            prop_oneof![
                1 => Just(Value::from("host")),
                3 => string_value(),
            ],
        ),
        field("use_internal_ip", 0.3, any::<bool>().prop_map(Value::Bool)),
        field("host_ip", 0.3, string_value()),
        field("links", 0.2, string_map_value()),
        field("remove", 0.2, any::<bool>().prop_map(Value::Bool)),
        field(
            "extra_create",
            0.4,
            json_object(keyword(CREATE_KEYWORDS), 3).prop_map(Value::Object),
        ),
        field(
            "create_defaults",
            0.2,
            json_object(keyword(CREATE_KEYWORDS), 2).prop_map(Value::Object),
        ),
        field(
            "extra_host_config",
            0.4,
            json_object(keyword(HOST_KEYWORDS), 3).prop_map(Value::Object),
        ),
        prop::option::weighted(0.01, (text(), json_leaf())).boxed(),
    ];
    fields.prop_map(|fields| Value::Object(fields.into_iter().flatten().collect()))
}

/// SwarmSpawner's settings, including a `cpu_guarantee` that Python could only send finite but
/// that is checked here across every `f64`.
fn swarm_extras() -> impl Strategy<Value = SwarmExtras> {
    // Each setting's docker-py keywords and Engine fields, and now and then random text.
    let extra = |keys: &'static [&'static str]| {
        let key = prop_oneof![
            8 => prop::sample::select(keys).prop_map(str::to_owned),
            1 => text(),
        ];
        prop::option::weighted(0.25, json_object(key, 2)).prop_map(Option::unwrap_or_default)
    };
    (
        prop::option::of(any_f64()),
        extra(&[
            "user",
            "workdir",
            "tty",
            "env",
            "hostname",
            "healthcheck",
            "dns_config",
            "cap_add",
            "cap_drop",
            "groups",
            "stop_signal",
            "Image",
            "Labels",
            "Mounts",
        ]),
        extra(&[
            "cpu_limit",
            "mem_limit",
            "cpu_reservation",
            "mem_reservation",
            "generic_resources",
            "limits",
            "reservations",
            "Limits",
            "Reservations",
        ]),
        extra(&[
            "constraints",
            "preferences",
            "maxreplicas",
            "platforms",
            "Constraints",
        ]),
        extra(&[
            "restart_policy",
            "log_driver",
            "networks",
            "force_update",
            "runtime",
            "RestartPolicy",
            "Placement",
            "Resources",
        ]),
        extra(&["mode", "ports", "Mode", "Ports"]),
        text(),
        json_object(text(), 2),
        (any::<bool>(), proptest::option::of(text())),
    )
        .prop_map(
            |(
                cpu,
                container,
                resources,
                placement,
                task,
                endpoint,
                driver,
                options,
                (host, pin),
            )| {
                SwarmExtras {
                    cpu_guarantee: cpu,
                    extra_container_spec: container,
                    extra_resources_spec: resources,
                    extra_placement_spec: placement,
                    extra_task_spec: task,
                    extra_endpoint_spec: endpoint,
                    volume_driver: driver,
                    volume_driver_options: options,
                    publish_mode: if host {
                        crate::swarm::PublishMode::Host
                    } else {
                        crate::swarm::PublishMode::Ingress
                    },
                    pin_node: pin.map(|id| crate::swarm::PinNode {
                        hostname: id.clone(),
                        id,
                        recorded_by: "this server's last start".to_owned(),
                        volumes: Vec::new(),
                    }),
                    unrecorded_volumes: Vec::new(),
                }
            },
        )
}

/// A namespace key that `render_strict` can look up: no brace, `!`, `:`, `.` or `[`, not empty
/// and not all ASCII digits (which would be a positional field). Generated text is repaired
/// rather than filtered: a million cases would exceed proptest's limit on rejected values.
fn field_name() -> impl Strategy<Value = String> + Clone {
    prop_oneof!["[A-Za-z_][A-Za-z0-9_]{0,10}", unicode(6)].prop_map(|name| {
        let name: String = name
            .chars()
            .filter(|c| !matches!(c, '{' | '}' | '!' | ':' | '.' | '['))
            .collect();
        if name.bytes().all(|b| b.is_ascii_digit()) {
            format!("f{name}")
        } else {
            name
        }
    })
}

/// A namespace of names `render_strict` can look up, with any values.
fn namespace() -> impl Strategy<Value = Namespace> + Clone {
    prop::collection::btree_map(field_name(), unicode(10), 0..5)
}

/// A template made of pieces that exercise the parser: braces, conversions, specs, names.
fn template_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => unicode(3),
        2 => prop::sample::select(vec![
            "{", "}", "{{", "}}", "!", "!r", "!a", "!s", "!x", ":", ":>", ":^10", ":<3.2", ":0",
            ":+", ":z", ":#", ":,", ":_", ":=", ":.", ":s", ":d", "[", "]", ".", "0", "99999999",
            "{}", "{0}", "{username}", "{prefix}", "{a.b}", "{a[0]}", "{x:{y}}",
        ])
        .prop_map(str::to_owned),
        1 => field_name(),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

/// A piece of a template that renders without error (`piece_model` gives its text and output).
#[derive(Debug, Clone)]
enum Piece {
    /// Literal text without braces.
    Literal(String),
    /// `{{` or `}}`.
    Brace(char),
    /// `{name[!s][:[align][width][.precision]]}`; `index` picks the key (modulo the count).
    Field {
        index: usize,
        conversion: bool,
        align: Option<char>,
        width: Option<usize>,
        precision: Option<usize>,
    },
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        unicode(6).prop_map(|s| Piece::Literal(s.replace(['{', '}'], ""))),
        prop::sample::select(vec!['{', '}']).prop_map(Piece::Brace),
        (
            any::<usize>(),
            any::<bool>(),
            prop::option::of(prop::sample::select(vec!['<', '>', '^'])),
            prop::option::of(0_usize..40),
            prop::option::of(0_usize..12),
        )
            .prop_map(
                |(index, conversion, align, width, precision)| Piece::Field {
                    index,
                    conversion,
                    align,
                    width,
                    precision,
                }
            ),
    ]
}

/// What Python would print for `piece`, computed with Rust's own formatting (same char-based
/// width, precision and centring rules as Python's for strings), and the template text.
fn piece_model(piece: &Piece, ns: &Namespace) -> (String, String) {
    match piece {
        Piece::Literal(s) => (s.clone(), s.clone()),
        Piece::Brace(c) => (format!("{c}{c}"), c.to_string()),
        Piece::Field {
            index,
            conversion,
            align,
            width,
            precision,
        } => {
            let Some((name, value)) = ns.iter().nth(index % ns.len().max(1)) else {
                return (String::new(), String::new());
            };
            let spec = format!(
                "{}{}{}",
                align.map(String::from).unwrap_or_default(),
                width.map(|w| w.to_string()).unwrap_or_default(),
                precision.map(|p| format!(".{p}")).unwrap_or_default(),
            );
            let conv = if *conversion { "!s" } else { "" };
            let colon = if spec.is_empty() { "" } else { ":" };
            let w = width.unwrap_or(0);
            // Rust's own precision is capped (at u16::MAX), so truncate by hand.
            let kept: String = value
                .chars()
                .take(precision.unwrap_or(usize::MAX))
                .collect();
            let rendered = match align {
                Some('>') => format!("{kept:>w$}"),
                Some('^') => format!("{kept:^w$}"),
                _ => format!("{kept:<w$}"),
            };
            (format!("{{{name}{conv}{colon}{spec}}}"), rendered)
        }
    }
}

/// Undoes [`template::escape`] (`-` + two hex digits per escaped byte) for text without
/// characters below U+0010, whose bytes all take two hex digits.
fn unescape(escaped: &str, escape_char: char) -> Option<String> {
    let mut bytes = Vec::new();
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        if c == escape_char {
            let hex: String = chars.by_ref().take(2).collect();
            bytes.push(u8::from_str_radix(&hex, 16).ok()?);
        } else {
            bytes.push(u8::try_from(c).ok()?);
        }
    }
    String::from_utf8(bytes).ok()
}

/// A memory-string number as a finite `f64` and the ways it can be written.
fn number_text() -> impl Strategy<Value = (f64, String)> {
    let x = prop_oneof![
        2 => prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO,
        2 => -10.0..1e7_f64,
        1 => (0_u64..1 << 40).prop_map(|n| {
            #[allow(clippy::cast_precision_loss)]
            let x = n as f64;
            x
        }),
    ];
    (x, 0..3_u8).prop_map(|(x, form)| {
        let written = match form {
            0 => format!("{x}"),
            1 => format!("{x:e}"),
            _ => format!("{x:E}"),
        };
        (x, written)
    })
}

/// `value`'s truncated byte count as `parse_byte_specification` must give it, from the same
/// `f64` arithmetic.
fn byte_model(bytes: f64) -> Result<i64, &'static str> {
    let truncated = bytes.trunc();
    if truncated < 0.0 {
        Err("negative")
    } else if truncated >= I64_LIMIT {
        Err("too large")
    } else {
        #[allow(clippy::cast_possible_truncation)]
        Ok(truncated as i64)
    }
}

fn memory_kind(err: &MemoryError) -> &'static str {
    match err {
        MemoryError::Invalid { .. } => "invalid",
        MemoryError::Negative { .. } => "negative",
        MemoryError::NotFinite { .. } => "not finite",
        MemoryError::TooLarge { .. } => "too large",
    }
}

fn memory_value() -> impl Strategy<Value = MemoryValue> {
    prop_oneof![
        any::<i128>().prop_map(MemoryValue::Int),
        any::<i64>().prop_map(|n| MemoryValue::Int(n.into())),
        (-1_i128..=i128::from(i64::MAX) + 2).prop_map(MemoryValue::Int),
        any_f64().prop_map(MemoryValue::Float),
        prop_oneof![
            unicode(12),
            number_text().prop_map(|(_, n)| n + "G"),
            "[ +-]?[0-9_.eE]{1,8}[KMGTkmgb]{1,2}",
        ]
        .prop_map(MemoryValue::Text),
        unicode(12).prop_map(MemoryValue::Other),
    ]
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// `escape` keeps only `[a-z0-9-]`, is deterministic, keeps safe text as it is, and at most
    /// triples the length.
    #[test]
    fn escape_output_is_safe(s in unicode(24)) {
        let escaped = template::escape(&s);
        prop_assert!(
            escaped.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "escape({s:?}) = {escaped:?}"
        );
        prop_assert_eq!(&escaped, &template::escape(&s));
        prop_assert!(escaped.len() >= s.chars().count() && escaped.len() <= 3 * s.len());
        if s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
            prop_assert_eq!(&escaped, &s);
        }
        let legacy = template::escape_legacy(&s);
        prop_assert!(
            legacy.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "escape_legacy({s:?}) = {legacy:?}"
        );
        prop_assert_eq!(&legacy, &template::escape_legacy(&s));
        if s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            prop_assert_eq!(&legacy, &s);
        }
    }

    /// Both escapes are injective on text without characters below U+0010 (those escape to a
    /// single hex digit, so `"\u{1}0"` and `"\u{10}"` meet, as in DockerSpawner): decoding gives
    /// the input back. Distinct user names therefore get distinct container and volume names.
    #[test]
    fn escape_round_trips(
        s in prop::collection::vec(any::<char>(), 0..16).prop_map(|chars| {
            // Characters below U+0010 moved up by 0x10 (repaired, not filtered: see `field_name`).
            chars
                .into_iter()
                .map(|c| if c < '\u{10}' { char::from_u32(u32::from(c) + 0x10).unwrap_or(c) } else { c })
                .collect::<String>()
        })
    ) {
        prop_assert_eq!(unescape(&template::escape(&s), '-'), Some(s.clone()));
        prop_assert_eq!(unescape(&template::escape_legacy(&s), '_'), Some(s.clone()));
    }

    /// `imagename` replaces exactly `/` and `:` by `-`.
    #[test]
    fn imagename_replaces_only_separators(s in unicode(24)) {
        let name = template::imagename(&s);
        prop_assert!(!name.contains(['/', ':']));
        prop_assert_eq!(name.chars().count(), s.chars().count());
        for (a, b) in s.chars().zip(name.chars()) {
            prop_assert!(a == b || (matches!(a, '/' | ':') && b == '-'));
        }
    }

    /// Arbitrary templates: strict rendering succeeds or names the template in its error;
    /// lenient rendering is strict rendering or the template unchanged.
    #[test]
    fn rendering_never_panics(
        t in prop_oneof![unicode(24), template_text()],
        ns in namespace(),
    ) {
        let strict = template::render_strict(&t, &ns);
        if let Err(err) = &strict {
            let message = err.to_string();
            prop_assert!(message.contains(t.as_str()), "{message:?} does not name {t:?}");
            let named = match err {
                TemplateError::UnknownField { template, .. }
                | TemplateError::Unsupported { template, .. }
                | TemplateError::Syntax { template, .. } => template,
            };
            prop_assert_eq!(named, &t);
        }
        prop_assert_eq!(template::render_lenient(&t, &ns), strict.unwrap_or_else(|_| t.clone()));
    }

    /// Any format spec after a known field: no panic, a clean error, and padding never beyond
    /// the width limit.
    #[test]
    fn any_format_spec(spec in prop_oneof![unicode(10), "[<>^=]?[+ z#0-]*[0-9]{0,12}[,_]?(\\.[0-9]{0,12})?[a-z]?"],
                       conversion in prop::option::of(any::<char>()),
                       value in unicode(8)) {
        let conv = conversion.map(|c| format!("!{c}")).unwrap_or_default();
        let t = format!("<{{v{conv}:{spec}}}>");
        let ns = Namespace::from([("v".to_owned(), value)]);
        match template::render_strict(&t, &ns) {
            Ok(out) => prop_assert!(out.chars().count() <= 1_000_000 + 2 + 64),
            Err(err) => prop_assert!(!err.to_string().is_empty()),
        }
    }

    /// A template without braces is itself, whatever the namespace.
    #[test]
    fn braceless_template_is_identity(t in unicode(32), ns in namespace()) {
        let t = t.replace(['{', '}'], "");
        prop_assert_eq!(template::render_strict(&t, &ns), Ok(t.clone()));
        prop_assert_eq!(template::render_lenient(&t, &ns), t);
    }

    /// Templates of literals, doubled braces and known fields with `!s`, alignment, width and
    /// precision render exactly as Rust's formatter renders the same pieces.
    #[test]
    fn valid_templates_match_the_model(
        ns in prop::collection::btree_map(field_name(), unicode(10), 1..5),
        pieces in prop::collection::vec(piece(), 0..8),
    ) {
        let (t, expected): (String, String) = pieces
            .iter()
            .map(|p| piece_model(p, &ns))
            .fold((String::new(), String::new()), |(mut t, mut e), (tp, ep)| {
                t.push_str(&tp);
                e.push_str(&ep);
                (t, e)
            });
        prop_assert_eq!(template::render_strict(&t, &ns), Ok(expected));
    }

    /// `parse_byte_specification` and `parse_docker_bytes` on any text: a byte count in
    /// `0..=i64::MAX`, or an error that quotes the text.
    #[test]
    fn memory_strings_never_panic(s in prop_oneof![
        unicode(16),
        "[ +-]?[0-9_.eE]{0,10}[KMGTkmgtbB ]{0,3}",
        "[+-]?(nan|inf|infinity|NaN|Inf)[KMGT]",
    ]) {
        for result in [memory::parse_byte_specification(&s), memory::parse_docker_bytes(&s)] {
            match result {
                Ok(n) => prop_assert!(n >= 0, "{s:?} -> {n}"),
                Err(err) => {
                    let message = err.to_string();
                    prop_assert!(message.contains(&format!("'{s}'")), "{message:?}");
                }
            }
        }
    }

    /// Numbers as Rust writes them, with every suffix: `parse_byte_specification` gives the
    /// truncated product of the same `f64` arithmetic, or the matching error.
    #[test]
    fn byte_specification_matches_the_model(
        (x, written) in number_text(),
        suffix in prop::sample::select(vec![('K', 1024.0), ('M', 1024.0 * 1024.0),
            ('G', 1024.0 * 1024.0 * 1024.0), ('T', 1024.0 * 1024.0 * 1024.0 * 1024.0)]),
    ) {
        let (letter, multiplier) = suffix;
        let input = format!("{written}{letter}");
        let got = memory::parse_byte_specification(&input).map_err(|e| memory_kind(&e));
        prop_assert_eq!(got, byte_model(x * multiplier), "input {:?}", input);
    }

    /// docker-py sizes: plain digits are exact, numbers with a unit follow the same model, and a
    /// sign or exponent is refused.
    #[test]
    fn docker_bytes_match_the_model(
        (x, written) in number_text(),
        n in any::<u128>(),
        unit in prop::sample::select(vec![("b", 1.0), ("B", 1.0), ("k", 1024.0), ("K", 1024.0),
            ("kb", 1024.0), ("m", 1024.0 * 1024.0), ("Mb", 1024.0 * 1024.0),
            ("g", 1024.0 * 1024.0 * 1024.0), ("GB", 1024.0 * 1024.0 * 1024.0), ("bb", 1.0)]),
    ) {
        let digits = n.to_string();
        let exact = memory::parse_docker_bytes(&digits).map_err(|e| memory_kind(&e));
        prop_assert_eq!(exact, i64::try_from(n).map_err(|_| "too large"));

        let (letter, multiplier) = unit;
        let input = format!("{written}{letter}");
        let got = memory::parse_docker_bytes(&input).map_err(|e| memory_kind(&e));
        let plain = !written.contains(['e', 'E', '-']);
        let expected = if plain { byte_model(x * multiplier) } else { Err("invalid") };
        prop_assert_eq!(got, expected, "input {:?}", input);
    }

    /// `limit_bytes` for every kind of value: the byte count Python's `int()` would give when it
    /// is in `0..=i64::MAX`, else an `InvalidSpec` naming the setting.
    #[test]
    fn limit_bytes_matches_the_model(value in memory_value()) {
        let setting = "DockerSpawner.mem_limit";
        let got = memory::limit_bytes(setting, &value);
        let expected: Option<u64> = match &value {
            MemoryValue::Int(n) => u64::try_from(*n).ok().filter(|b| i64::try_from(*b).is_ok()),
            MemoryValue::Float(x) if x.is_finite() && *x >= 0.0 && *x < I64_LIMIT => {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let b = x.trunc() as u64;
                Some(b)
            }
            MemoryValue::Float(_) | MemoryValue::Other(_) => None,
            MemoryValue::Text(text) => memory::parse_byte_specification(text)
                .ok()
                .map(i64::unsigned_abs),
        };
        match got {
            Ok(bytes) => {
                prop_assert_eq!(Some(bytes), expected, "{:?}", value);
                prop_assert!(i64::try_from(bytes).is_ok());
            }
            Err(err) => {
                clean(&err)?;
                prop_assert!(expected.is_none(), "{:?} refused: {}", value, err);
                prop_assert!(err.to_string().contains(setting), "{}", err);
            }
        }
    }

    /// `cpu_cores`: finite numbers >= 0 pass unchanged, anything else is refused by name.
    #[test]
    fn cpu_cores_matches_the_model(x in any_f64()) {
        match memory::cpu_cores("DockerSpawner.cpu_limit", x) {
            Ok(cores) => prop_assert!(cores.to_bits() == x.to_bits() && x.is_finite() && x >= 0.0),
            Err(err) => {
                clean(&err)?;
                prop_assert!(!(x.is_finite() && x >= 0.0), "{} refused", x);
                prop_assert!(err.to_string().contains("DockerSpawner.cpu_limit"));
            }
        }
    }

    /// `extra_host_config`: every result key is an Engine field, and every error names the
    /// setting.
    #[test]
    fn host_config_never_panics(input in json_object(keyword(HOST_KEYWORDS), 5)) {
        check_converter("extra_host_config", &input, dockerpy::host_config)?;
    }

    /// `extra_create_kwargs`: the same, for docker-py's `create_container` keywords.
    #[test]
    fn create_kwargs_never_panics(input in json_object(keyword(CREATE_KEYWORDS), 5)) {
        check_converter("extra_create_kwargs", &input, dockerpy::create_kwargs)?;
    }

    /// The whole path of a spec: `from_json`, the create body, the named volumes and the swarm
    /// service spec either succeed or fail with a clean `InvalidSpec`.
    #[test]
    fn spec_building_never_panics(
        spec in spec_json(),
        command in prop::option::of(prop::collection::vec(text(), 0..3)),
        swarm in swarm_extras(),
    ) {
        let spec = match ContainerSpec::from_json(&spec.to_string()) {
            Ok(spec) => spec,
            Err(err) => return clean(&err),
        };
        match spec.create_body(command.clone()) {
            Ok(body) => {
                // extra_create_kwargs' `image` wins, as in DockerSpawner.
                let image = match spec.extra_create.get("Image") {
                    None => Some(spec.image.as_str()),
                    Some(image) => image.as_str(),
                };
                prop_assert_eq!(body.image.as_deref(), image);
                prop_assert!(serde_json::to_string(&body).is_ok());
            }
            Err(err) => {
                clean(&err)?;
                // The spec itself parsed: what the body refuses comes from a setting it names.
                prop_assert!(
                    names_one_of(&err, &["extra_create_kwargs", "extra_host_config", "mounts", "cpu_limit"]),
                    "{}", err
                );
            }
        }
        let driver = spec.bind_volume_driver().map(|d| (d, &swarm.volume_driver_options));
        if let Err(err) = spec.named_volumes(driver) {
            clean(&err)?;
        }
        match swarm::service_spec(&spec, &swarm, command) {
            Ok(service) => prop_assert_eq!(service.name.as_deref(), Some(spec.name.as_str())),
            Err(err) => {
                clean(&err)?;
                prop_assert!(
                    names_one_of(
                        &err,
                        &["mounts", "extra_", "cpu_limit", "cpu_guarantee", "volume_driver_options"]
                    ),
                    "{}",
                    err
                );
            }
        }
        let _ = spec.pull_stall();
        let _ = spec.redact("token=secret password=hunter2");
    }
}

// ---------------------------------------------------------------------------------------------
// Checks of the generators themselves, and regressions found by the properties
// ---------------------------------------------------------------------------------------------

/// Plain tests: checks of the generators, and the regressions the properties found (each with
/// its input spelled out). `scripts/fuzz.sh` tells these from the properties by their module.
mod checks {
    use super::*;

    /// The keyword lists above are keywords the converters know (not "unknown key"), so the
    /// generators keep reaching the converters' branches if the tables change.
    #[test]
    fn keyword_lists_are_the_converters_keywords() {
        for key in HOST_KEYWORDS {
            let input = Map::from_iter([((*key).to_owned(), Value::Null)]);
            if let Err(err) = dockerpy::host_config("extra_host_config", &input) {
                assert!(!err.to_string().contains("unknown key"), "{key}: {err}");
            }
        }
        for key in CREATE_KEYWORDS {
            let input = Map::from_iter([((*key).to_owned(), Value::Null)]);
            if let Err(err) = dockerpy::create_kwargs("extra_create_kwargs", &input) {
                assert!(!err.to_string().contains("unknown key"), "{key}: {err}");
            }
        }
    }

    /// The spec generator is not all noise: a good share of its specs parse and build, so the
    /// property exercises the builders and not only `from_json`'s refusals.
    #[test]
    fn spec_generator_reaches_the_builders() {
        let mut runner = TestRunner::deterministic();
        let strategy = (spec_json(), swarm_extras());
        let (mut parsed, mut built, mut serviced) = (0, 0, 0);
        for _ in 0..400 {
            let (json, swarm) = strategy.new_tree(&mut runner).unwrap().current();
            if let Ok(spec) = ContainerSpec::from_json(&json.to_string()) {
                parsed += 1;
                built += usize::from(spec.create_body(None).is_ok());
                serviced += usize::from(swarm::service_spec(&spec, &swarm, None).is_ok());
            }
        }
        let counts = BTreeMap::from([("parsed", parsed), ("built", built), ("serviced", serviced)]);
        assert!(
            parsed >= 100 && built >= 40 && serviced >= 30,
            "{counts:?} of 400"
        );
    }

    /// A value of the wrong type for an Engine field is refused naming the settings it can come
    /// from. Found by the Python properties (tests/test_fuzz_traits.py): the message was
    /// "invalid container settings: invalid type: boolean `false`, expected a sequence".
    #[test]
    fn type_errors_in_the_body_name_the_settings() {
        for extra in [
            json!({"extra_host_config": {"cap_add": false}}),
            json!({"extra_create": {"working_dir": []}}),
            json!({"extra_host_config": {"restart_policy": []}}),
            json!({"mounts": [{"target": "/x", "BindOptions": 5}]}),
        ] {
            let mut json = json!({"name": "a", "image": "a", "port": 8888});
            crate::spec::deep_merge(json.as_object_mut().unwrap(), extra.as_object().unwrap());
            let spec = ContainerSpec::from_json(&json.to_string()).unwrap();
            let err = spec.create_body(None).unwrap_err();
            assert!(
                err.to_string().starts_with(
                    "invalid container settings (extra_create_kwargs, extra_host_config or mounts): "
                ),
                "{extra}: {err}"
            );
            let err = swarm::service_spec(&spec, &SwarmExtras::default(), None);
            if let Err(err) = err {
                assert!(names_one_of(&err, &["mounts", "extra_"]), "{extra}: {err}");
            }
        }
    }
}

//! What a container was made from: a record of its effective spec, kept in its labels, so that a
//! kept container (`remove = False`) can be compared with the configuration at its next start.
//!
//! The record is one short hash per field of the create body (`Image`, `Cmd`, each `Env`
//! variable, each `HostConfig` key, ...), so a comparison names what changed by field, never by
//! value (a value may be a secret). The hub's API token is left out: it is the spawn's own, not
//! configuration. Environment values are not in the labels at all, not even hashed: labels
//! travel further than the environment (monitoring such as cAdvisor exports every container
//! label by default), and a short unsalted hash of a weak password is found by guessing. The
//! labels name the variables; their values are read back from the container's own environment
//! (`Config.Env`) when it is compared. Pure logic, no I/O.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::errors::{CoreError, CoreResult};
use crate::spec::ContainerSpec;

/// Label holding the digest of the whole record (`sha256:<hex>`).
pub const SPEC_DIGEST_LABEL: &str = "org.rustdocker.spec-digest";
/// Label holding the record itself: JSON `{field: hash}`, with the format's version under
/// `VERSION_KEY`.
pub const SPEC_FIELDS_LABEL: &str = "org.rustdocker.spec-fields";
/// The record's format version: a record of another version is treated as no record. Version
/// 1 held a hash of each environment value; version 2 holds `ENV_FROM_CONTAINER` instead.
const VERSION: &str = "2";
const VERSIONS_READ: [&str; 2] = ["1", "2"];
/// What the labels hold for an `Env.NAME` field: its value is the container's own.
const ENV_FROM_CONTAINER: &str = "env";
const VERSION_KEY: &str = "_v";
/// Environment variables that are the spawn's own, not configuration: the hub's API token,
/// which a kept container keeps and a new one gets afresh.
const SPAWN_ENV: [&str; 2] = ["JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN"];
/// The record's fields of the environment's variables: `Env.NAME`.
const ENV_PREFIX: &str = "Env.";
/// Labels under this prefix are rustdocker's own (identity, the record itself).
const OWN_LABELS: &str = "org.rustdocker.";
/// Hex characters kept of each field's hash: 48 bits, plenty to notice a change.
const FIELD_HASH_LEN: usize = 12;

/// The record of one spec: `{field: hash}` and the digest over all of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigRecord {
    /// One hash per field (`Image`, `Cmd`, `Env.NAME`, `HostConfig.Memory`, ...).
    pub fields: BTreeMap<String, String>,
    /// `sha256:<hex>` of the fields.
    pub digest: String,
}

fn sha256_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut hex = String::with_capacity(64);
    for b in digest.as_ref() {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    hex
}

fn field_hash(value: &Value) -> String {
    // serde_json's Map is ordered by key, so equal values serialise equally.
    let mut hex = sha256_hex(value.to_string().as_bytes());
    hex.truncate(FIELD_HASH_LEN);
    hex
}

/// `image` with an implied `:latest` made explicit, so `busybox` and `busybox:latest` compare
/// equal (the engine treats them as one).
#[must_use]
pub fn normalise_image(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || image.contains('@') {
        image.to_owned()
    } else {
        format!("{image}:latest")
    }
}

/// `mounts` with the values of their volume driver options left out (a CIFS or NFS `o=` holds
/// the password; a hash of it is not for labels), their keys kept. Those options only shape a
/// volume when it is created: an existing volume is used as it is, so a changed value is no
/// change of the container.
fn mounts_without_secrets(mounts: &[Value]) -> Value {
    let mut mounts = mounts.to_vec();
    for mount in &mut mounts {
        if let Some(Value::Object(options)) =
            mount.pointer_mut("/VolumeOptions/DriverConfig/Options")
        {
            for value in options.values_mut() {
                *value = Value::Null;
            }
        }
    }
    Value::Array(mounts)
}

impl ConfigRecord {
    /// The record of what `spec` creates: its create body, with the command as configured
    /// (`cmd` and `args`, not the image's CMD, which only a lookup would give).
    pub fn of_spec(spec: &ContainerSpec) -> CoreResult<ConfigRecord> {
        let body = spec.create_body_json(None)?;
        let Value::Object(body) = body else {
            return Err(CoreError::Internal(
                "the create body is not a JSON object".to_owned(),
            ));
        };
        let mut fields = BTreeMap::new();
        if !body.contains_key("Cmd") {
            fields.insert(
                "Cmd".to_owned(),
                field_hash(&json!({"cmd": spec.cmd, "args": spec.args})),
            );
        }
        for (key, value) in &body {
            match (key.as_str(), value) {
                ("Image", Value::String(image)) => {
                    fields.insert(key.clone(), field_hash(&json!(normalise_image(image))));
                }
                ("Env", Value::Array(entries)) => {
                    for entry in entries.iter().filter_map(Value::as_str) {
                        let (name, value) = entry.split_once('=').unwrap_or((entry, ""));
                        if !SPAWN_ENV.contains(&name) {
                            fields.insert(format!("{ENV_PREFIX}{name}"), field_hash(&json!(value)));
                        }
                    }
                }
                ("Labels", Value::Object(labels)) => {
                    for (name, value) in labels {
                        if !name.starts_with(OWN_LABELS) {
                            fields.insert(format!("Labels.{name}"), field_hash(value));
                        }
                    }
                }
                ("HostConfig", Value::Object(host)) => {
                    for (name, value) in host {
                        let value = match (name.as_str(), value) {
                            // The order of binds means nothing to the engine.
                            ("Binds", Value::Array(binds)) => {
                                let mut binds = binds.clone();
                                binds.sort_by_key(ToString::to_string);
                                Value::Array(binds)
                            }
                            ("Mounts", Value::Array(mounts)) => mounts_without_secrets(mounts),
                            _ => value.clone(),
                        };
                        fields.insert(format!("HostConfig.{name}"), field_hash(&value));
                    }
                }
                _ => {
                    fields.insert(key.clone(), field_hash(value));
                }
            }
        }
        Ok(ConfigRecord::from_fields(fields))
    }

    fn from_fields(fields: BTreeMap<String, String>) -> ConfigRecord {
        let digest = format!(
            "sha256:{}",
            sha256_hex(json!(fields).to_string().as_bytes())
        );
        ConfigRecord { fields, digest }
    }

    /// The labels that carry the record on a container: the fields without the environment's
    /// values (see the module's comment), and the digest of that.
    #[must_use]
    pub fn labels(&self) -> [(String, String); 2] {
        let stored: BTreeMap<&String, &str> = self
            .fields
            .iter()
            .map(|(k, v)| {
                let v = if k.starts_with(ENV_PREFIX) {
                    ENV_FROM_CONTAINER
                } else {
                    v.as_str()
                };
                (k, v)
            })
            .collect();
        let digest = format!(
            "sha256:{}",
            sha256_hex(json!(stored).to_string().as_bytes())
        );
        let mut record = json!(stored);
        if let Value::Object(map) = &mut record {
            map.insert(VERSION_KEY.to_owned(), json!(VERSION));
        }
        [
            (SPEC_DIGEST_LABEL.to_owned(), digest),
            (SPEC_FIELDS_LABEL.to_owned(), record.to_string()),
        ]
    }

    /// The record a container's labels carry, its environment's values read from `env` (the
    /// container's `Config.Env`); None when they carry none, or one of another format version,
    /// or one that does not parse (made by DockerSpawner, by an older rustdocker, or edited by
    /// hand).
    pub fn from_labels<'a>(
        label: impl Fn(&str) -> Option<&'a String>,
        env: &[String],
    ) -> Option<ConfigRecord> {
        let text = label(SPEC_FIELDS_LABEL)?;
        let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(text) else {
            return None;
        };
        let version = map.remove(VERSION_KEY);
        if !VERSIONS_READ.iter().any(|v| version == Some(json!(v))) {
            return None;
        }
        let mut fields = map
            .into_iter()
            .map(|(k, v)| v.as_str().map(|v| (k, v.to_owned())))
            .collect::<Option<BTreeMap<_, _>>>()?;
        for entry in env {
            let (name, value) = entry.split_once('=').unwrap_or((entry, ""));
            if let Some(hash) = fields.get_mut(&format!("{ENV_PREFIX}{name}")) {
                if hash == ENV_FROM_CONTAINER {
                    *hash = field_hash(&json!(value));
                }
            }
        }
        Some(ConfigRecord::from_fields(fields))
    }

    /// The fields that differ between `self` (what the container was made from) and `now`, by
    /// name: `Env.FOO`, `HostConfig.Memory (added)`, `Labels.team (removed)`. Empty when the
    /// digests are equal.
    #[must_use]
    pub fn changes(&self, now: &ConfigRecord) -> Vec<String> {
        if self.digest == now.digest {
            return Vec::new();
        }
        let mut changed = Vec::new();
        for (field, hash) in &now.fields {
            match self.fields.get(field) {
                None => changed.push(format!("{field} (added)")),
                Some(old) if old != hash => changed.push(field.clone()),
                Some(_) => {}
            }
        }
        for field in self.fields.keys() {
            if !now.fields.contains_key(field) {
                changed.push(format!("{field} (removed)"));
            }
        }
        changed.sort();
        changed
    }

    /// Whether the image is among what changed.
    #[must_use]
    pub fn image_changed(&self, now: &ConfigRecord) -> bool {
        self.fields.get("Image") != now.fields.get("Image")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: &Value) -> ContainerSpec {
        let mut base = json!({
            "name": "jupyter-alice",
            "image": "busybox",
            "port": 8888,
            "env": {"JUPYTERHUB_API_TOKEN": "tok1", "JPY_API_TOKEN": "tok1", "A": "1"},
            "labels": {"org.rustdocker.hub": "h", "team": "x"},
            "volumes": [{"setting": "volumes", "source": "v1", "target": "/a"},
                        {"setting": "volumes", "source": "v2", "target": "/b"}],
        });
        if let (Value::Object(base), Value::Object(extra)) = (&mut base, extra) {
            for (k, v) in extra {
                base.insert(k.clone(), v.clone());
            }
        }
        ContainerSpec::from_json(&base.to_string()).unwrap()
    }

    fn record(extra: &Value) -> ConfigRecord {
        ConfigRecord::of_spec(&spec(extra)).unwrap()
    }

    #[test]
    fn the_api_token_and_own_labels_are_not_configuration() {
        let a = record(&json!({}));
        let b = record(&json!({
            "env": {"JUPYTERHUB_API_TOKEN": "tok2", "JPY_API_TOKEN": "tok2", "A": "1"},
            "labels": {"org.rustdocker.hub": "other", "team": "x"},
        }));
        assert_eq!(a, b);
        assert!(a.changes(&b).is_empty());
        assert!(!a.fields.keys().any(|k| k.contains("TOKEN")));
    }

    #[test]
    fn changes_are_named_by_field_never_by_value() {
        let a = record(&json!({}));
        let b = record(&json!({
            "image": "busybox:1.36",
            "env": {"JUPYTERHUB_API_TOKEN": "tok1", "A": "secret-2", "B": "new"},
            "mem_limit": 1_073_741_824,
            "labels": {"org.rustdocker.hub": "h"},
        }));
        let changes = a.changes(&b);
        assert_eq!(
            changes,
            vec![
                "Env.A",
                "Env.B (added)",
                "HostConfig.Memory (added)",
                "Image",
                "Labels.team (removed)",
            ]
        );
        assert!(a.image_changed(&b));
        assert!(!changes.iter().any(|c| c.contains("secret")));
    }

    #[test]
    fn implied_latest_and_bind_order_are_no_change() {
        let a = record(&json!({}));
        let b = record(&json!({
            "image": "busybox:latest",
            "volumes": [{"setting": "volumes", "source": "v2", "target": "/b"},
                        {"setting": "volumes", "source": "v1", "target": "/a"}],
        }));
        assert!(a.changes(&b).is_empty(), "{:?}", a.changes(&b));
        assert_eq!(
            normalise_image("localhost:5000/img"),
            "localhost:5000/img:latest"
        );
        assert_eq!(normalise_image("img@sha256:abc"), "img@sha256:abc");
        assert_eq!(normalise_image("img:1"), "img:1");
    }

    #[test]
    fn cmd_and_volumes_and_limits_are_recorded() {
        let a = record(&json!({}));
        let b = record(&json!({"cmd": ["jupyterhub-singleuser"], "cpu_limit": 1.5,
            "volumes": [{"setting": "volumes", "source": "v3", "target": "/c"}]}));
        let changes = a.changes(&b);
        for field in [
            "Cmd",
            "HostConfig.Binds",
            "HostConfig.CpuQuota (added)",
            "Volumes",
        ] {
            assert!(changes.iter().any(|c| c == field), "{field} in {changes:?}");
        }
    }

    #[test]
    fn labels_round_trip_and_other_versions_are_no_record() {
        let a = record(&json!({}));
        let labels: BTreeMap<String, String> = a.labels().into_iter().collect();
        // The container's environment as the engine shows it: the image's own variables too.
        let env = ["PATH=/bin".to_owned(), "A=1".to_owned()];
        assert_eq!(
            ConfigRecord::from_labels(|k| labels.get(k), &env),
            Some(a.clone())
        );
        assert!(labels[SPEC_DIGEST_LABEL].starts_with("sha256:"));
        let mut old = labels.clone();
        old.insert(
            SPEC_FIELDS_LABEL.to_owned(),
            r#"{"_v":"0","Image":"x"}"#.to_owned(),
        );
        assert_eq!(ConfigRecord::from_labels(|k| old.get(k), &env), None);
        old.insert(SPEC_FIELDS_LABEL.to_owned(), "not json".to_owned());
        assert_eq!(ConfigRecord::from_labels(|k| old.get(k), &env), None);
        let none: BTreeMap<String, String> = BTreeMap::new();
        assert_eq!(ConfigRecord::from_labels(|k| none.get(k), &env), None);
    }

    #[test]
    fn the_labels_hold_nothing_derived_from_an_environment_value() {
        // A weak password: a hash of it in a label would be found by guessing.
        let a = record(&json!({"env": {"JUPYTERHUB_API_TOKEN": "t", "DB_PASSWORD": "hunter2"}}));
        let b = record(&json!({"env": {"JUPYTERHUB_API_TOKEN": "t", "DB_PASSWORD": "hunter3"}}));
        assert_eq!(a.labels(), b.labels());
        let text = a
            .labels()
            .iter()
            .map(|(k, v)| [k.as_str(), v.as_str()].join("="))
            .collect::<Vec<_>>()
            .join("\n");
        let hash = field_hash(&json!("hunter2"));
        assert!(!text.contains(&hash), "{text}");
        assert!(text.contains("Env.DB_PASSWORD"), "{text}");
        // The comparison reads the values back from the container's environment.
        let labels: BTreeMap<String, String> = a.labels().into_iter().collect();
        let made = ["DB_PASSWORD=hunter2".to_owned()];
        let old = ConfigRecord::from_labels(|k| labels.get(k), &made).unwrap();
        assert!(old.changes(&a).is_empty());
        assert_eq!(old.changes(&b), vec!["Env.DB_PASSWORD"]);
        // A variable gone from the container's environment counts as changed.
        let old = ConfigRecord::from_labels(|k| labels.get(k), &[]).unwrap();
        assert_eq!(old.changes(&a), vec!["Env.DB_PASSWORD"]);
        // A record of version 1 (hashes of the values) is still read.
        let mut v1 = json!(a.fields);
        v1["_v"] = json!("1");
        let v1 = BTreeMap::from([(SPEC_FIELDS_LABEL.to_owned(), v1.to_string())]);
        let old = ConfigRecord::from_labels(|k| v1.get(k), &[]).unwrap();
        assert!(old.changes(&a).is_empty());
    }

    #[test]
    fn volume_driver_option_values_are_not_hashed() {
        let mount = |password: &str| {
            json!({"mounts": [{"type": "volume", "source": "nfs", "target": "/n",
                "driver_config": {"name": "local",
                    "options": {"type": "cifs", "o": format!("password={password}")}}}]})
        };
        let a = record(&mount("hunter2"));
        assert!(a.fields.contains_key("HostConfig.Mounts"), "{:?}", a.fields);
        assert_eq!(a, record(&mount("hunter3")));
        // Another option, another mount: still a change.
        let b = record(
            &json!({"mounts": [{"type": "volume", "source": "nfs", "target": "/m",
            "driver_config": {"name": "local", "options": {"type": "cifs", "o": "x"}}}]}),
        );
        assert_eq!(a.changes(&b), vec!["HostConfig.Mounts"]);
    }
}

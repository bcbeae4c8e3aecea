//! Named volumes: created explicitly and labelled with whose they are; removed only when the
//! operator asked (`remove_on_delete`) and then only a deleted server's or user's own.

use std::collections::{BTreeMap, HashMap};

use bollard::body_full;
use bollard::models::{ContainerCreateBody, HostConfig, Volume, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, ListVolumesOptions, RemoveVolumeOptions, UploadToContainerOptions,
};

use super::containers::Owner;
use super::{
    Engine, HUB_LABEL, MANAGED_LABEL, MANAGED_VALUE, SCOPE_LABEL, SERVER_LABEL, USER_LABEL,
};
use crate::errors::{CoreError, CoreResult};
use crate::log;
use crate::metrics::{timed, Verb};
use crate::spec::{is_named_volume, VolumeSpec};

impl Engine {
    /// Creates each named volume that does not exist yet, as the configuration describes it
    /// (driver, driver options, its own labels) and with rustdocker's `labels`. Creating an
    /// existing volume is a no-op in the engine, which answers with the volume as it is: an
    /// existing volume is used as it is (adopting volumes made by DockerSpawner or by hand
    /// without touching their data), with a warning when its driver or options differ from the
    /// configuration, and refused when another hub made it (its `org.rustdocker.hub` label).
    pub async fn ensure_volumes(
        &self,
        volumes: &[VolumeSpec],
        labels: &BTreeMap<String, String>,
    ) -> CoreResult<()> {
        let creates = volumes.iter().map(|volume| async move {
            let mut all_labels: HashMap<String, String> = volume
                .labels
                .iter()
                .chain(labels.iter())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            all_labels.insert(SCOPE_LABEL.to_owned(), volume.scope().to_owned());
            let request = VolumeCreateRequest {
                name: Some(volume.name.clone()),
                driver: volume.driver.clone(),
                driver_opts: (!volume.options.is_empty()).then(|| {
                    volume
                        .options
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                }),
                labels: Some(all_labels),
                ..Default::default()
            };
            let action = format!("create volume '{}'", volume.name);
            let found = timed(Verb::CreateVolume, self.docker().create_volume(request))
                .await
                .map_err(|e| self.err(action.clone(), e))?;
            check_volume(volume, &found, labels, &action)
        });
        futures_util::future::try_join_all(creates).await?;
        Ok(())
    }
}

/// Checks the volume the engine answered a create with (the existing one, if there was one):
/// another hub's is refused; a driver or options other than configured is a warning.
fn check_volume(
    wanted: &VolumeSpec,
    found: &Volume,
    labels: &BTreeMap<String, String>,
    action: &str,
) -> CoreResult<()> {
    let name = &wanted.name;
    let theirs = found.labels.get(HUB_LABEL);
    let ours = labels.get(HUB_LABEL);
    if let (Some(theirs), Some(ours)) = (theirs, ours) {
        if theirs != ours && found.labels.contains_key(MANAGED_LABEL) {
            return Err(CoreError::Api {
                action: action.to_owned(),
                status: 409,
                message: format!(
                    "the volume '{name}' belongs to another hub ({HUB_LABEL}={theirs:?}; this hub's hub_id is {ours:?}): two hubs on one Docker engine need different volume names (their templates, e.g. with {{prefix}}), or the same hub_id if they are one hub"
                ),
            });
        }
    }
    if wanted.per_user && found.labels.contains_key(MANAGED_LABEL) {
        if let (Some(theirs), Some(ours)) = (found.labels.get(USER_LABEL), labels.get(USER_LABEL)) {
            if theirs != ours {
                return Err(CoreError::Api {
                    action: action.to_owned(),
                    status: 409,
                    message: format!(
                        "the volume '{name}' holds the files of another user ({USER_LABEL}={theirs:?}, not {ours:?}): two user names give it the same name (check escape and {{raw_username}} in the volume templates)"
                    ),
                });
            }
        }
    }
    let driver = wanted.driver.as_deref().unwrap_or("local");
    if found.driver != driver {
        log::warn(&format!(
            "the volume '{name}' exists with the driver '{}', not '{driver}' as configured: it is used as it is",
            found.driver
        ));
    } else if !wanted.options.is_empty() {
        let options: BTreeMap<&String, &String> = found.options.iter().collect();
        let expected: BTreeMap<&String, &String> = wanted.options.iter().collect();
        if options != expected {
            let keys = |m: &BTreeMap<&String, &String>| {
                m.keys().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
            };
            // Option values can hold credentials (a CIFS password): name the keys only.
            log::warn(&format!(
                "the volume '{name}' exists with other driver options (keys: {}) than configured (keys: {}): it is used as it is",
                keys(&options),
                keys(&expected)
            ));
        }
    }
    Ok(())
}

/// What `stage_files` copies, and where.
#[derive(Debug)]
pub struct StageFiles {
    /// Named volume the files land in (created, labelled, if missing).
    pub volume: String,
    /// Directory the volume is mounted at in the helper, and the archive's destination.
    pub path: String,
    /// Image of the short-lived helper container (it is created, never started).
    pub image: String,
    /// Whether a missing helper image may be pulled.
    pub may_pull: bool,
    /// Name of the helper container.
    pub helper_name: String,
    /// Labels of the volume and the helper.
    pub labels: BTreeMap<String, String>,
    /// The volume's scope (`SCOPE_LABEL`): `server`, `user` or `shared`.
    pub scope: String,
    /// A tar archive of the files.
    pub tar: Vec<u8>,
}

impl Engine {
    /// Copies a tar archive into a named volume through a helper container that is created
    /// (not started) with the volume mounted, and removed again whatever happens. Used for the
    /// internal-SSL certificates, which the hub writes on its own host.
    pub async fn stage_files(&self, job: StageFiles) -> CoreResult<()> {
        let volume = VolumeSpec {
            name: job.volume.clone(),
            driver: None,
            options: BTreeMap::new(),
            labels: BTreeMap::new(),
            per_user: matches!(job.scope.as_str(), "user" | "server"),
            per_server: job.scope == "server",
        };
        self.ensure_volumes(std::slice::from_ref(&volume), &job.labels)
            .await?;
        let labels: HashMap<String, String> = job
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let body = ContainerCreateBody {
            image: Some(job.image.clone()),
            labels: Some(labels),
            host_config: Some(HostConfig {
                binds: Some(vec![format!("{}:{}:rw", job.volume, job.path)]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(job.helper_name.clone()),
            ..Default::default()
        };
        let action = format!("create helper container '{}'", job.helper_name);
        let created = match timed(
            Verb::CreateContainer,
            self.docker()
                .create_container(Some(options.clone()), body.clone()),
        )
        .await
        {
            Ok(created) => created,
            Err(e) => {
                let err = self.err(action.clone(), e);
                if !(job.may_pull && err.is_not_found()) {
                    return Err(err);
                }
                self.pull_image(&job.image).await?;
                timed(
                    Verb::CreateContainer,
                    self.docker().create_container(Some(options), body),
                )
                .await
                .map_err(|e| self.err(action, e))?
            }
        };
        let upload = timed(
            Verb::UploadToContainer,
            self.docker().upload_to_container(
                &created.id,
                Some(UploadToContainerOptions {
                    path: job.path.clone(),
                    ..Default::default()
                }),
                body_full(job.tar.into()),
            ),
        )
        .await
        .map_err(|e| self.err(format!("copy files into volume '{}'", job.volume), e));
        // The helper goes whatever happened; its volume stays.
        let removed = self.remove_container(&created.id, true).await;
        if let (Err(_), Err(e)) = (&upload, &removed) {
            // The copy's error is the one returned; this one would be lost.
            log::warn(&format!(
                "after a failed copy into volume '{}', helper container '{}': {e}",
                job.volume, job.helper_name
            ));
        }
        upload?;
        removed
    }
}

/// What `delete_server_volumes` may remove: the named volumes of one deleted server (or, with
/// `user_deleted`, of a deleted user), and what protects the others.
#[derive(Debug)]
pub struct VolumeDeletion {
    /// The deleted server: this hub, its user, its name.
    pub owner: Owner,
    /// Volume names the server's state and configuration name (host paths are ignored).
    pub names: Vec<String>,
    /// The server's former name, when it was renamed: its per-server volumes carry that name in
    /// their server label, and count as its own when `names` lists them.
    pub renamed_from: Option<String>,
    /// The user is deleted (this is their default server, which JupyterHub deletes only with
    /// the user): their per-user volumes go too.
    pub user_deleted: bool,
    /// Volume names the states of the user's other servers record: their per-server volumes
    /// are never this server's.
    pub other_servers: Vec<String>,
    /// Volume names the states of other users' servers record, or the configuration mounts
    /// for every user: never removed.
    pub other_users: Vec<String>,
}

/// What became of one volume `delete_server_volumes` looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeFate {
    /// The volume.
    pub name: String,
    /// Whether it was removed.
    pub removed: bool,
    /// Why it was kept (empty when removed).
    pub reason: String,
}

/// Why the volume `name` with `labels` is not the deleted server's (or user's) to remove; None
/// when it provably is: made by rustdocker for this hub and this user, and labelled as this
/// server's own (or, when the user is deleted, as the user's), and recorded by no other
/// server's state.
#[must_use]
pub fn kept_because<S: std::hash::BuildHasher>(
    name: &str,
    labels: &HashMap<String, String, S>,
    job: &VolumeDeletion,
) -> Option<String> {
    let label = |key: &str| labels.get(key).map(String::as_str);
    if label(MANAGED_LABEL) != Some(MANAGED_VALUE) {
        return Some("not made by rustdocker (no org.rustdocker labels)".to_owned());
    }
    if label(HUB_LABEL) != Some(job.owner.hub.as_str()) {
        return Some(format!(
            "made by another hub ({HUB_LABEL}={:?})",
            label(HUB_LABEL).unwrap_or_default()
        ));
    }
    if label(SCOPE_LABEL) == Some("shared") {
        return Some("shared by several users".to_owned());
    }
    if label(USER_LABEL) != Some(job.owner.user.as_str()) {
        return Some(format!(
            "made for another user ({USER_LABEL}={:?})",
            label(USER_LABEL).unwrap_or_default()
        ));
    }
    let other_users = || {
        job.other_users
            .iter()
            .any(|n| n == name)
            .then(|| {
                "another user's server records it in its state, or the configuration mounts it for every user"
                    .to_owned()
            })
    };
    match label(SCOPE_LABEL) {
        None => Some(format!(
            "made by an older rustdocker, without the {SCOPE_LABEL} label that says whose it is"
        )),
        Some("shared") => Some("shared by several users".to_owned()),
        Some("user") if !job.user_deleted => {
            Some("shared by the user's servers: removed only with the user".to_owned())
        }
        Some("user") => other_users(),
        Some("server") => {
            let server = label(SERVER_LABEL).unwrap_or_default();
            let renamed =
                job.renamed_from.as_deref() == Some(server) && job.names.iter().any(|n| n == name);
            if server != job.owner.server && !renamed {
                Some(format!(
                    "made for another server ({SERVER_LABEL}={server:?})"
                ))
            } else if job.other_servers.iter().any(|n| n == name) {
                Some("another of the user's servers records it in its state".to_owned())
            } else {
                other_users()
            }
        }
        Some(other) => Some(format!("an unknown {SCOPE_LABEL} {other:?}")),
    }
}

impl Engine {
    /// The names of this hub's volumes carrying all of `labels` (`key=value`).
    async fn labelled_volumes(&self, labels: &[(&str, &str)]) -> CoreResult<Vec<String>> {
        let filters = HashMap::from([(
            "label".to_owned(),
            labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        )]);
        let options = ListVolumesOptions {
            filters: Some(filters),
        };
        let listed = self
            .docker()
            .list_volumes(Some(options))
            .await
            .map_err(|e| self.err("list volumes".to_owned(), e))?;
        Ok(listed
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect())
    }

    /// Removes the named volumes that provably belong to a deleted server (or user): those
    /// `job.names` lists and those labelled as its own, each checked by `kept_because`. Never
    /// forced: a volume still in use by a container is kept. Host paths are never touched. Every
    /// volume looked at gets a fate (removed, or kept and why); one already gone gets none.
    pub async fn delete_server_volumes(&self, job: &VolumeDeletion) -> CoreResult<Vec<VolumeFate>> {
        let owner = &job.owner;
        let mine = [
            (MANAGED_LABEL, MANAGED_VALUE),
            (HUB_LABEL, owner.hub.as_str()),
            (USER_LABEL, owner.user.as_str()),
        ];
        let mut candidates: Vec<String> = job
            .names
            .iter()
            .filter(|n| !n.is_empty() && is_named_volume(n))
            .cloned()
            .collect();
        let servers = [
            (SCOPE_LABEL, "server"),
            (SERVER_LABEL, owner.server.as_str()),
        ];
        candidates.extend(
            self.labelled_volumes(&[&mine[..], &servers[..]].concat())
                .await?,
        );
        if job.user_deleted {
            let users = [(SCOPE_LABEL, "user")];
            candidates.extend(
                self.labelled_volumes(&[&mine[..], &users[..]].concat())
                    .await?,
            );
        }
        candidates.sort();
        candidates.dedup();
        let mut fates = Vec::new();
        for name in candidates {
            let volume = match self.docker().inspect_volume(&name).await {
                Ok(volume) => volume,
                Err(e) => {
                    let err = self.err(format!("inspect volume '{name}'"), e);
                    if err.is_not_found() {
                        continue;
                    }
                    fates.push(VolumeFate {
                        name,
                        removed: false,
                        reason: err.to_string(),
                    });
                    continue;
                }
            };
            if let Some(reason) = kept_because(&name, &volume.labels, job) {
                fates.push(VolumeFate {
                    name,
                    removed: false,
                    reason,
                });
                continue;
            }
            let removed = self
                .docker()
                .remove_volume(&name, Some(RemoveVolumeOptions { force: false }))
                .await
                .map_err(|e| self.err(format!("remove volume '{name}'"), e));
            match removed {
                Ok(()) => fates.push(VolumeFate {
                    name,
                    removed: true,
                    reason: String::new(),
                }),
                Err(err) if err.is_not_found() => {}
                Err(err) => {
                    let reason = if err.status() == Some(409) {
                        "in use by a container".to_owned()
                    } else {
                        err.to_string()
                    };
                    fates.push(VolumeFate {
                        name,
                        removed: false,
                        reason,
                    });
                }
            }
        }
        Ok(fates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> VolumeDeletion {
        VolumeDeletion {
            owner: Owner {
                hub: "h".to_owned(),
                user: "alice".to_owned(),
                server: "proj".to_owned(),
            },
            names: vec!["v-alice--proj".to_owned(), "v-old".to_owned()],
            renamed_from: Some("old".to_owned()),
            user_deleted: false,
            other_servers: vec!["v-sibling".to_owned()],
            other_users: vec!["v-bob".to_owned()],
        }
    }

    fn labels(hub: &str, user: &str, server: &str, scope: Option<&str>) -> HashMap<String, String> {
        let mut l = HashMap::from([
            (MANAGED_LABEL.to_owned(), MANAGED_VALUE.to_owned()),
            (HUB_LABEL.to_owned(), hub.to_owned()),
            (USER_LABEL.to_owned(), user.to_owned()),
            (SERVER_LABEL.to_owned(), server.to_owned()),
        ]);
        if let Some(scope) = scope {
            l.insert(SCOPE_LABEL.to_owned(), scope.to_owned());
        }
        l
    }

    #[test]
    fn only_the_servers_own_volumes_are_removed() {
        let j = job();
        let own = labels("h", "alice", "proj", Some("server"));
        assert_eq!(kept_because("v-alice--proj", &own, &j), None);
        // Renamed from "old": its volume recorded in state is its own, an unrecorded one not.
        let old = labels("h", "alice", "old", Some("server"));
        assert_eq!(kept_because("v-old", &old, &j), None);
        assert!(kept_because("v-other", &old, &j).is_some());
        let cases = [
            ("v", HashMap::new(), "not made by rustdocker"),
            (
                "v",
                labels("x", "alice", "proj", Some("server")),
                "another hub",
            ),
            (
                "v",
                labels("h", "bob", "proj", Some("server")),
                "another user",
            ),
            (
                "v",
                labels("h", "alice", "lab", Some("server")),
                "another server",
            ),
            ("v", labels("h", "alice", "proj", None), "older rustdocker"),
            ("v", labels("h", "alice", "proj", Some("shared")), "shared"),
            (
                "v",
                labels("h", "alice", "proj", Some("user")),
                "only with the user",
            ),
            ("v", labels("h", "alice", "proj", Some("bogus")), "unknown"),
            ("v-sibling", own.clone(), "user's servers records"),
            ("v-bob", own.clone(), "another user's server"),
        ];
        for (name, l, why) in cases {
            let reason = kept_because(name, &l, &j);
            assert!(
                reason.as_deref().is_some_and(|r| r.contains(why)),
                "{name} {l:?}: {reason:?}"
            );
        }
    }

    #[test]
    fn a_deleted_users_volumes_go_with_them() {
        let mut j = job();
        j.user_deleted = true;
        j.owner.server = String::new();
        let per_user = labels("h", "alice", "proj", Some("user"));
        assert_eq!(kept_because("home-alice", &per_user, &j), None);
        // Recorded by the user's other servers: they are deleted with the user too.
        assert_eq!(kept_because("v-sibling", &per_user, &j), None);
        assert!(kept_because("v-bob", &per_user, &j).is_some());
        let shared = labels("h", "alice", "", Some("shared"));
        assert!(kept_because("data", &shared, &j).is_some());
        // A named server's volume is that server's to remove, not the default server's.
        let named = labels("h", "alice", "proj", Some("server"));
        assert!(kept_because("v-alice--proj", &named, &j).is_some());
    }
}

//! Named volumes: created explicitly and labelled, never deleted.

use std::collections::{BTreeMap, HashMap};

use bollard::body_full;
use bollard::models::{ContainerCreateBody, HostConfig, Volume, VolumeCreateRequest};
use bollard::query_parameters::{CreateContainerOptions, UploadToContainerOptions};

use super::{Engine, HUB_LABEL, MANAGED_LABEL, USER_LABEL};
use crate::errors::{CoreError, CoreResult};
use crate::log;
use crate::metrics::{timed, Verb};
use crate::spec::VolumeSpec;

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
            let all_labels: HashMap<String, String> = volume
                .labels
                .iter()
                .chain(labels.iter())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
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
            per_user: false,
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

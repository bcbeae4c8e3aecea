//! Named volumes: created explicitly and labelled, never deleted.

use std::collections::{BTreeMap, HashMap};

use bollard::body_full;
use bollard::models::{ContainerCreateBody, HostConfig, VolumeCreateRequest};
use bollard::query_parameters::{CreateContainerOptions, UploadToContainerOptions};

use super::Engine;
use crate::errors::CoreResult;

impl Engine {
    /// Creates each named volume that does not exist yet, with `labels`. Creating an existing
    /// volume is a no-op in the engine (its labels are left as they are), so this is idempotent
    /// and adopts volumes made by DockerSpawner or by hand without touching their data.
    pub async fn ensure_volumes(
        &self,
        names: &[String],
        labels: &BTreeMap<String, String>,
    ) -> CoreResult<()> {
        let labels: HashMap<String, String> =
            labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let creates = names.iter().map(|name| {
            let request = VolumeCreateRequest {
                name: Some(name.clone()),
                labels: Some(labels.clone()),
                ..Default::default()
            };
            async move {
                self.docker()
                    .create_volume(request)
                    .await
                    .map(|_| ())
                    .map_err(|e| self.err(format!("create volume '{name}'"), e))
            }
        });
        futures_util::future::try_join_all(creates).await?;
        Ok(())
    }
}

/// What `stage_files` copies, and where.
#[derive(Debug, Clone)]
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
        self.ensure_volumes(std::slice::from_ref(&job.volume), &job.labels)
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
        let created = match self
            .docker()
            .create_container(Some(options.clone()), body.clone())
            .await
        {
            Ok(created) => created,
            Err(e) => {
                let err = self.err(action.clone(), e);
                if !(job.may_pull && err.is_not_found()) {
                    return Err(err);
                }
                self.pull_image(&job.image).await?;
                self.docker()
                    .create_container(Some(options), body)
                    .await
                    .map_err(|e| self.err(action, e))?
            }
        };
        let upload = self
            .docker()
            .upload_to_container(
                &created.id,
                Some(UploadToContainerOptions {
                    path: job.path.clone(),
                    ..Default::default()
                }),
                body_full(job.tar.into()),
            )
            .await
            .map_err(|e| self.err(format!("copy files into volume '{}'", job.volume), e));
        // The helper goes whatever happened; its volume stays.
        let removed = self.remove_container(&created.id, true).await;
        upload?;
        removed
    }
}

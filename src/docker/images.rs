//! Images: pulls that fail when the engine reports an error in the stream. The pull policy
//! is applied in `containers::create_or_find`, from the create call's answer.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptions;
use futures_util::StreamExt;

use super::progress::{self, PullEnd, PullState, Role, StartProgress};
use super::Engine;
use crate::errors::{CoreError, CoreResult};
use crate::log;
use crate::metrics::{self, timed, ErrorKind, StreamCall, Verb};
use crate::spec::{credentials_for, RegistryAuth};

/// Splits an image reference into the `fromImage` and `tag` the pull endpoint takes.
/// A port in the registry host (`host:5000/img`) is not a tag; a digest is pulled as is.
#[must_use]
pub fn split_reference(image: &str) -> (String, Option<String>) {
    if image.contains('@') {
        return (image.to_owned(), None);
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(colon) => {
            let at = last_slash + colon;
            (image[..at].to_owned(), Some(image[at + 1..].to_owned()))
        }
        None => (image.to_owned(), Some("latest".to_owned())),
    }
}

impl Engine {
    /// The image's own `Cmd`, used when the spawner's `cmd` is unset but `args` must be appended.
    pub async fn image_cmd(&self, image: &str) -> CoreResult<Option<Vec<String>>> {
        let inspect = timed(Verb::InspectImage, self.docker().inspect_image(image))
            .await
            .map_err(|e| self.err(format!("inspect image '{image}'"), e))?;
        Ok(inspect.config.and_then(|c| c.cmd))
    }

    /// Pulls `image`, consuming the progress stream; an error reported inside the stream (which
    /// the engine sends with status 200) fails the pull with the engine's message.
    pub async fn pull_image(&self, image: &str) -> CoreResult<()> {
        self.pull_image_watched(image, DEFAULT_PULL_STALL, &|| false, None, None)
            .await
    }

    /// `pull_image`, bounded, and shared: one pull per image at a time on this engine. A start
    /// that needs an image another start is pulling joins that pull (and its progress) instead
    /// of asking the engine again; if the start leading it goes away first, a waiting start
    /// leads a new one. The pull fails when the stream brings nothing for `stall` (a registry
    /// that stopped sending), and this call gives up within `WATCH_INTERVAL` once `gone()` says
    /// its caller went away (a cancelled spawn; the engine may finish the pull in the
    /// background). `progress`, if given, follows the pull.
    pub async fn pull_image_watched(
        &self,
        image: &str,
        stall: Duration,
        gone: &(dyn Fn() -> bool + Send + Sync),
        progress: Option<&StartProgress>,
        credentials: Option<DockerCredentials>,
    ) -> CoreResult<()> {
        let action = || format!("pull image '{image}'");
        let cancelled = || CoreError::Request {
            action: action(),
            message: "cancelled".to_owned(),
        };
        let auth = progress::credentials_key(credentials.as_ref());
        loop {
            match progress::join_or_lead(self.host(), image, auth) {
                Role::Lead(lead) => {
                    if let Some(p) = progress {
                        p.pulling(lead.state(), false);
                    }
                    let result = self
                        .pull_counted(image, stall, gone, lead.state(), credentials.clone())
                        .await;
                    lead.end(match &result {
                        Ok(()) => PullEnd::Pulled,
                        Err(_) if gone() => PullEnd::Abandoned,
                        Err(e) => PullEnd::Failed(e.message().to_owned()),
                    });
                    return result;
                }
                Role::Join(state) => {
                    if let Some(p) = progress {
                        p.pulling(&state, true);
                    }
                    let end = loop {
                        // Bounded waits, to notice a caller that went away.
                        match tokio::time::timeout(WATCH_INTERVAL, state.ended()).await {
                            Ok(end) => break end,
                            Err(_) if gone() => return Err(cancelled()),
                            Err(_) => {}
                        }
                    };
                    match end {
                        PullEnd::Pulled => return Ok(()),
                        PullEnd::Failed(message) => {
                            return Err(CoreError::Request {
                                action: action(),
                                message,
                            })
                        }
                        PullEnd::Abandoned if gone() => return Err(cancelled()),
                        PullEnd::Abandoned => {}
                    }
                }
            }
        }
    }

    /// Pulls `images` one at a time, in the background of the hub (the pre-pull), writing its
    /// progress to the hub's log every `LOG_EVERY`. Starts that need one of them meanwhile
    /// join its pull. Errors are logged, never raised: the pre-pull is a courtesy.
    /// Images the engine has already are skipped unless `always` (`pull_policy = "always"`).
    pub async fn pre_pull(
        &self,
        images: Vec<String>,
        stall: Duration,
        always: bool,
        credentials: BTreeMap<String, RegistryAuth>,
    ) {
        let count = images.len();
        for (index, image) in images.iter().enumerate() {
            let which = format!("pre-pull {}/{count}: image '{image}'", index + 1);
            let present = timed(Verb::InspectImage, self.docker().inspect_image(image)).await;
            if !always && present.is_ok() {
                log::emit(log::INFO, &format!("{which}: already on the engine"));
                continue;
            }
            log::emit(log::INFO, &format!("{which}: pulling"));
            let started = Instant::now();
            let auth = credentials_for(&credentials, image);
            let auth_key = progress::credentials_key(auth.as_ref());
            let pull = self.pull_image_watched(image, stall, &|| false, None, auth);
            tokio::pin!(pull);
            let mut ticker = tokio::time::interval(LOG_EVERY);
            ticker.tick().await; // the first tick is immediate
            let result = loop {
                tokio::select! {
                    result = &mut pull => break result,
                    _ = ticker.tick() => {
                        if let Some(state) = progress::pull_in_flight(self.host(), image, auth_key) {
                            let s = state.snapshot();
                            log::emit(log::INFO, &format!(
                                "{which}: {} of {} MB downloaded, {} MB extracted, {} of {} layers done",
                                s.downloaded / 1_000_000,
                                s.total / 1_000_000,
                                s.extracted / 1_000_000,
                                s.layers_done,
                                s.layers
                            ));
                        }
                    }
                }
            };
            match result {
                Ok(()) => log::emit(
                    log::INFO,
                    &format!("{which}: ready after {} s", started.elapsed().as_secs()),
                ),
                Err(e) => log::emit(log::WARNING, &format!("{which}: {e}")),
            }
        }
    }

    /// One pull request to the engine, its stream recorded in `state`, counted in the metrics.
    async fn pull_counted(
        &self,
        image: &str,
        stall: Duration,
        gone: &(dyn Fn() -> bool + Send + Sync),
        state: &PullState,
        credentials: Option<DockerCredentials>,
    ) -> CoreResult<()> {
        let call = StreamCall::start(Verb::PullImage);
        let result = self
            .pull_stream(image, stall, gone, state, credentials)
            .await;
        metrics::observe_pull(call.elapsed(), result.is_ok());
        call.finish(result.as_ref().err().map(|(_, kind)| *kind));
        result.map_err(|(err, _)| err)
    }

    async fn pull_stream(
        &self,
        image: &str,
        stall: Duration,
        gone: &(dyn Fn() -> bool + Send + Sync),
        state: &PullState,
        credentials: Option<DockerCredentials>,
    ) -> Result<(), (CoreError, ErrorKind)> {
        let (from_image, tag) = split_reference(image);
        let options = CreateImageOptions {
            from_image: Some(from_image),
            tag,
            ..Default::default()
        };
        let action = || format!("pull image '{image}'");
        let mut stream = self.docker().create_image(Some(options), None, credentials);
        let mut last_progress = Instant::now();
        loop {
            // `next()` is cancel-safe: a timed-out wait loses nothing of the stream.
            let item = match tokio::time::timeout(WATCH_INTERVAL, stream.next()).await {
                Ok(Some(item)) => item,
                Ok(None) => return Ok(()),
                Err(_) => {
                    if gone() {
                        let err = CoreError::Request {
                            action: action(),
                            message: "cancelled".to_owned(),
                        };
                        return Err((err, ErrorKind::Cancelled));
                    }
                    if last_progress.elapsed() >= stall {
                        let err = CoreError::Request {
                            action: action(),
                            message: format!(
                                "the registry {} sent nothing for {} s: the pull is stalled (pull_stall_timeout)",
                                registry_of(image),
                                stall.as_secs()
                            ),
                        };
                        return Err((err, ErrorKind::Timeout));
                    }
                    continue;
                }
            };
            last_progress = Instant::now();
            let info = item.map_err(|e| {
                let kind = metrics::error_kind(&e).unwrap_or(ErrorKind::Other);
                (self.err(action(), e), kind)
            })?;
            if let Some(detail) = info.error_detail {
                let message = detail
                    .message
                    .unwrap_or_else(|| "the engine reported an error".to_owned());
                let err = CoreError::Request {
                    action: action(),
                    message,
                };
                return Err((err, ErrorKind::Registry));
            }
            // One reading of the stream serves the progress and the metrics.
            let downloaded = state.record(&info);
            if downloaded > 0 {
                metrics::add_pull_bytes(downloaded);
            }
        }
    }
}

/// How often the pre-pull writes its progress to the hub's log.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// How often a pull checks whether its caller is still there.
const WATCH_INTERVAL: Duration = Duration::from_millis(200);

/// The default `pull_stall_timeout`.
pub const DEFAULT_PULL_STALL: Duration = Duration::from_secs(120);

/// The registry an image reference pulls from: its first component when that names a host
/// (has a `.` or `:`, or is `localhost`), else Docker Hub.
#[must_use]
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

#[cfg(test)]
mod tests {
    use super::{registry_of, split_reference};

    #[test]
    fn registries() {
        assert_eq!(registry_of("busybox"), "docker.io");
        assert_eq!(registry_of("jupyter/base-notebook:x"), "docker.io");
        assert_eq!(registry_of("quay.io/jupyterhub/singleuser:5"), "quay.io");
        assert_eq!(registry_of("127.0.0.1:5000/img"), "127.0.0.1:5000");
        assert_eq!(registry_of("localhost/img"), "localhost");
    }

    #[test]
    fn references() {
        let cases = [
            ("busybox", ("busybox", Some("latest"))),
            ("busybox:1.36", ("busybox", Some("1.36"))),
            (
                "quay.io/jupyterhub/singleuser:5.2",
                ("quay.io/jupyterhub/singleuser", Some("5.2")),
            ),
            ("localhost:5000/img", ("localhost:5000/img", Some("latest"))),
            ("localhost:5000/img:v1", ("localhost:5000/img", Some("v1"))),
            ("img@sha256:abcd", ("img@sha256:abcd", None)),
            (
                "localhost:5000/img:v1@sha256:abcd",
                ("localhost:5000/img:v1@sha256:abcd", None),
            ),
        ];
        for (input, (repo, tag)) in cases {
            let (r, t) = split_reference(input);
            assert_eq!(r, repo, "{input}");
            assert_eq!(t.as_deref(), tag, "{input}");
        }
    }
}

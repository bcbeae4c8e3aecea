//! Images: pulls that fail when the engine reports an error in the stream. The pull policy
//! is applied in `containers::create_or_find`, from the create call's answer.

use bollard::query_parameters::CreateImageOptions;
use futures_util::StreamExt;

use super::Engine;
use crate::errors::{CoreError, CoreResult};

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
        let inspect = self
            .docker()
            .inspect_image(image)
            .await
            .map_err(|e| self.err(format!("inspect image '{image}'"), e))?;
        Ok(inspect.config.and_then(|c| c.cmd))
    }

    /// Pulls `image`, consuming the progress stream; an error reported inside the stream (which
    /// the engine sends with status 200) fails the pull with the engine's message.
    pub async fn pull_image(&self, image: &str) -> CoreResult<()> {
        let (from_image, tag) = split_reference(image);
        let options = CreateImageOptions {
            from_image: Some(from_image),
            tag,
            ..Default::default()
        };
        let mut stream = self.docker().create_image(Some(options), None, None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| self.err(format!("pull image '{image}'"), e))?;
            if let Some(detail) = info.error_detail {
                let message = detail
                    .message
                    .unwrap_or_else(|| "the engine reported an error".to_owned());
                return Err(CoreError::Request {
                    action: format!("pull image '{image}'"),
                    message,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::split_reference;

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

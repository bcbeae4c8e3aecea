//! `docker exec`, for `post_start_cmd`.

use bollard::container::LogOutput;
use bollard::exec::StartExecResults;
use bollard::models::ExecConfig;
use futures_util::StreamExt;

use super::Engine;
use crate::errors::CoreResult;
use crate::metrics::{self, timed, StreamCall, Verb};

/// Output of a command run in a container.
#[derive(Debug, Default)]
pub struct ExecOutput {
    /// The command's exit code (`None` when the engine did not report one).
    pub exit_code: Option<i64>,
    /// What it wrote to stdout.
    pub stdout: String,
    /// What it wrote to stderr.
    pub stderr: String,
}

/// Output kept per stream: enough to log, bounded so a chatty command cannot fill the hub.
const MAX_OUTPUT: usize = 64 * 1024;

fn push_bounded(buf: &mut String, bytes: &[u8]) {
    if buf.len() < MAX_OUTPUT {
        let room = MAX_OUTPUT - buf.len();
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(room)]);
        buf.push_str(&text);
    }
}

impl Engine {
    /// Runs `cmd` (no shell) in container `name` as its default user, waits for it, and returns
    /// its exit code and output.
    pub async fn exec_run(&self, name: &str, cmd: Vec<String>) -> CoreResult<ExecOutput> {
        let action = format!("exec {cmd:?} in container '{name}'");
        let config = ExecConfig {
            cmd: Some(cmd),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let created = timed(Verb::CreateExec, self.docker().create_exec(name, config))
            .await
            .map_err(|e| self.err(action.clone(), e))?;
        let mut out = ExecOutput::default();
        // One call from the start to the end of the command's output.
        let call = StreamCall::start(Verb::StartExec);
        match self.docker().start_exec(&created.id, None).await {
            Err(e) => {
                call.finish(metrics::error_kind(&e));
                return Err(self.err(action, e));
            }
            Ok(StartExecResults::Attached { mut output, .. }) => {
                while let Some(item) = output.next().await {
                    let item = match item {
                        Ok(item) => item,
                        Err(e) => {
                            call.finish(metrics::error_kind(&e));
                            return Err(self.err(action, e));
                        }
                    };
                    match item {
                        LogOutput::StdErr { message } => push_bounded(&mut out.stderr, &message),
                        LogOutput::StdOut { message } | LogOutput::Console { message } => {
                            push_bounded(&mut out.stdout, &message);
                        }
                        LogOutput::StdIn { .. } => {}
                    }
                }
                call.finish(None);
            }
            Ok(StartExecResults::Detached) => call.finish(None),
        }
        let inspect = timed(Verb::InspectExec, self.docker().inspect_exec(&created.id))
            .await
            .map_err(|e| self.err(action, e))?;
        out.exit_code = inspect.exit_code;
        Ok(out)
    }
}

//! Carrying out one job on the device's engine and turning how it went into a [`JobResult`].
//!
//! Output is pushed into an [`OutputCapture`] chunk by chunk as the engine streams it, so a
//! command that prints gigabytes costs the agent 128 KiB. The job's timeout wraps the whole
//! attempt (a pull included); the capture lives outside it, so a job that times out still reports
//! what it printed. A one-shot container is removed afterwards whatever happened — exited,
//! failed, timed out — as `docker run --rm` would, killed first if it still runs.
//!
//! A one-shot container is named `outpost-job-<id>` and labelled [`JOB_LABEL`], so an operator
//! on the device sees whose it is. The name is the job's, the same on every device: agents that
//! share one engine (a test bench, not a fleet) cannot run the same one-shot job at once — the
//! second is refused by the engine with a name conflict, and the clean-up after a job removes
//! only the container it created (by id). At start, what an agent stop interrupted is found by
//! name.

use std::collections::HashMap;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::errors::Error as EngineError;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    RemoveContainerOptionsBuilder, StartContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use futures_util::{Stream, StreamExt};
use outpost_protocol::job::{
    JobOrder, JobOutcome, JobResult, JobSpec, OutputCapture, MAX_JOB_REASON,
};
use outpost_protocol::text::is_unsafe_char;
use thiserror::Error;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::warn;

use super::engine_call;
use crate::docker_host::DockerHost;
use crate::snapshot::{engine_client, SnapshotError};

/// The label every one-shot job container carries, with the job's id as its value.
pub const JOB_LABEL: &str = "outpost.job";

/// How often a finished exec is asked for its exit code until the engine has recorded it.
const EXIT_POLL: Duration = Duration::from_millis(50);

/// Why a job could not run to its end; the text becomes its [`JobOutcome::Failed`] reason.
#[derive(Debug, Error)]
pub(crate) enum JobError {
    /// No engine client for `DOCKER_HOST` (no socket there: Docker is not running).
    #[error(transparent)]
    Client(#[from] SnapshotError),
    /// The engine refused a step or broke off: its own message ("No such container: web").
    #[error("{0}")]
    Engine(String),
    /// The engine's socket could not be opened for an Engine API job.
    #[error("the Docker engine at {host} is not reachable: {source}")]
    Unreachable {
        /// `DOCKER_HOST`.
        host: DockerHost,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// An Engine API job's path is not one HTTP can carry (a character a URI may not hold).
    #[error("the Engine API request cannot be sent: {0}")]
    Request(#[from] hyper::http::Error),
    /// The HTTP exchange of an Engine API job failed.
    #[error("the Docker engine's answer was cut off: {0}")]
    Http(#[from] hyper::Error),
    /// The engine stopped waiting for a one-shot container without saying how it ended.
    #[error("the engine did not say how container {0} ended")]
    NoExitStatus(String),
}

impl From<EngineError> for JobError {
    fn from(err: EngineError) -> Self {
        Self::Engine(crate::stack::engine_message(&err))
    }
}

/// Name of the one-shot container of job `id`.
pub fn container_name(id: u64) -> String {
    format!("outpost-job-{id}")
}

/// What an attempt leaves behind, kept outside it so that a timeout cutting it short loses
/// neither the output so far nor the container to remove.
#[derive(Debug, Default)]
struct Traces {
    output: OutputCapture,
    /// The one-shot container, once created (by id: on an engine shared by several agents, a
    /// container of the same name may be another's).
    container: Option<String>,
}

/// Run `order` on the engine at `host` within its timeout, unless `cancel` is signalled first;
/// never fails (a failure is a result). Cut short either way, the output so far is kept and a
/// one-shot container is removed.
pub(crate) async fn perform(host: &DockerHost, order: &JobOrder, cancel: &Notify) -> JobResult {
    let started = Instant::now();
    let mut traces = Traces::default();
    let limit = Duration::from_millis(order.timeout_ms);
    let outcome = tokio::select! {
        finished = tokio::time::timeout(limit, attempt(host, order, &mut traces)) => match finished {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => JobOutcome::Failed(reason(&e.to_string())),
            Err(_) => JobOutcome::TimedOut,
        },
        () = cancel.notified() => JobOutcome::Cancelled,
    };
    let duration = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if let Some(container) = &traces.container {
        remove_container(host, container).await;
    }
    traces.output.finish(order.id, outcome, duration)
}

async fn attempt(
    host: &DockerHost,
    order: &JobOrder,
    traces: &mut Traces,
) -> Result<JobOutcome, JobError> {
    let output = &mut traces.output;
    match &order.spec {
        JobSpec::Exec {
            container,
            cmd,
            user,
        } => {
            exec(
                &engine_client(host)?,
                container,
                cmd,
                user.as_deref(),
                output,
            )
            .await
        }
        JobSpec::Run { image, cmd } => {
            run_once(&engine_client(host)?, order.id, image, cmd, traces).await
        }
        JobSpec::Engine { method, path, body } => {
            engine_call::call(host, *method, path, body, output).await
        }
        // The runner hands pulls to `job/pull.rs`, which reports progress on the way.
        JobSpec::PullImage { .. } => Err(JobError::Engine(
            "an image pull runs through the loopback registry".into(),
        )),
    }
}

/// `docker exec CONTAINER CMD…` with stdout and stderr attached, then its exit code.
async fn exec(
    docker: &Docker,
    container: &str,
    cmd: &[String],
    user: Option<&str>,
    output: &mut OutputCapture,
) -> Result<JobOutcome, JobError> {
    let config = CreateExecOptions {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(cmd.to_vec()),
        user: user.map(str::to_owned),
        ..Default::default()
    };
    let created = docker.create_exec(container, config).await?;
    if let StartExecResults::Attached {
        output: stream,
        input: _input, // held open until the output ends
    } = docker.start_exec(&created.id, None).await?
    {
        capture(stream, output).await?;
    }
    exit_code(docker, &created.id).await.map(JobOutcome::Exited)
}

/// The exit code of a finished exec. The output can end a moment before the engine records the
/// exit, so it is asked again until it has.
async fn exit_code(docker: &Docker, exec: &str) -> Result<i64, JobError> {
    loop {
        let inspected = docker.inspect_exec(exec).await?;
        if let (Some(false), Some(code)) = (inspected.running, inspected.exit_code) {
            return Ok(code);
        }
        tokio::time::sleep(EXIT_POLL).await;
    }
}

/// `docker run --rm IMAGE CMD…`: create (pulling the image if the engine lacks it), attach
/// before start so no output is lost, start, read to the end, wait for the exit code.
async fn run_once(
    docker: &Docker,
    id: u64,
    image: &str,
    cmd: &[String],
    traces: &mut Traces,
) -> Result<JobOutcome, JobError> {
    let container = create_pulling(docker, id, image, cmd).await?;
    let container = traces.container.insert(container);
    let attach = AttachContainerOptionsBuilder::default()
        .stream(true)
        .stdout(true)
        .stderr(true)
        .build();
    let attached = docker.attach_container(container, Some(attach)).await?;
    docker
        .start_container(container, None::<StartContainerOptions>)
        .await?;
    capture(attached.output, &mut traces.output).await?;
    wait(docker, container).await
}

/// Create job `id`'s one-shot container, pulling its image first if the engine lacks it; its id.
async fn create_pulling(
    docker: &Docker,
    id: u64,
    image: &str,
    cmd: &[String],
) -> Result<String, JobError> {
    let options = CreateContainerOptionsBuilder::default()
        .name(&container_name(id))
        .build();
    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: (!cmd.is_empty()).then(|| cmd.to_vec()),
        labels: Some(HashMap::from([(JOB_LABEL.to_owned(), id.to_string())])),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        ..Default::default()
    };
    let created = match docker
        .create_container(Some(options.clone()), body.clone())
        .await
    {
        Err(EngineError::DockerResponseServerError {
            status_code: 404, ..
        }) => {
            pull(docker, image).await?;
            docker.create_container(Some(options), body).await?
        }
        created => created?,
    };
    Ok(created.id)
}

/// Pull `image`: the tag it names, `latest` for a bare name (not every tag of the repository).
async fn pull(docker: &Docker, image: &str) -> Result<(), JobError> {
    let reference = match crate::stack::tag_to_pull(image) {
        Some(tag) => format!("{image}:{tag}"),
        None => image.to_owned(),
    };
    let options = CreateImageOptionsBuilder::default()
        .from_image(&reference)
        .build();
    let mut progress = docker.create_image(Some(options), None, None);
    while let Some(message) = progress.next().await {
        message?;
    }
    Ok(())
}

/// The exit code of a container that has stopped (bollard reports a non-zero one as an error).
async fn wait(docker: &Docker, name: &str) -> Result<JobOutcome, JobError> {
    let mut waiting = docker.wait_container(name, None::<WaitContainerOptions>);
    match waiting.next().await {
        Some(Ok(exited)) => Ok(JobOutcome::Exited(exited.status_code)),
        Some(Err(EngineError::DockerContainerWaitError { code, .. })) => {
            Ok(JobOutcome::Exited(code))
        }
        Some(Err(e)) => Err(e.into()),
        None => Err(JobError::NoExitStatus(name.to_owned())),
    }
}

/// Every chunk of an attached stream, stdout and stderr as they interleave.
async fn capture(
    mut stream: impl Stream<Item = Result<LogOutput, EngineError>> + Unpin,
    output: &mut OutputCapture,
) -> Result<(), JobError> {
    while let Some(chunk) = stream.next().await {
        output.push(chunk?.as_ref());
    }
    Ok(())
}

/// Kill and remove job `id`'s one-shot container, if there is one: what an agent stop left.
pub(crate) async fn remove_one_shot(host: &DockerHost, id: u64) {
    remove_container(host, &container_name(id)).await;
}

/// Kill and remove a one-shot container (best effort: a leftover carries [`JOB_LABEL`]).
async fn remove_container(host: &DockerHost, container: &str) {
    if let Err(e) = remove(host, container).await {
        warn!(%container, "job container not removed: {e}");
    }
}

async fn remove(host: &DockerHost, container: &str) -> Result<(), JobError> {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    match engine_client(host)?
        .remove_container(container, Some(options))
        .await
    {
        Err(EngineError::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        removed => Ok(removed?),
    }
}

/// A failure reason as the hub takes it: control characters replaced by spaces, at most
/// [`MAX_JOB_REASON`] bytes, cut at a character boundary.
pub(crate) fn reason(text: &str) -> String {
    let mut clean: String = text
        .chars()
        .map(|c| if is_unsafe_char(c) { ' ' } else { c })
        .collect();
    let mut end = clean.len().min(MAX_JOB_REASON);
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    clean.truncate(end);
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_loses_its_control_characters_and_is_cut_on_a_character_boundary() {
        assert_eq!(
            reason("No such container: web\n\x1b[31mred\u{202e}"),
            "No such container: web  [31mred "
        );
        let long = "é".repeat(MAX_JOB_REASON);
        let cut = reason(&long);
        assert_eq!(cut.len(), MAX_JOB_REASON);
        assert!(cut.chars().all(|c| c == 'é'));
        let odd = format!("a{long}");
        assert_eq!(reason(&odd).len(), MAX_JOB_REASON - 1);
    }

    #[test]
    fn the_engines_own_message_is_the_reason() {
        let refused = EngineError::DockerResponseServerError {
            status_code: 404,
            message: "No such container: web".to_owned(),
        };
        assert_eq!(
            JobError::from(refused).to_string(),
            "No such container: web"
        );
        let stream = EngineError::DockerStreamError {
            error: "manifest unknown".to_owned(),
        };
        assert_eq!(JobError::from(stream).to_string(), "manifest unknown");
    }
}

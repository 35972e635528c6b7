//! A job: one command run once on each device of a selection (issue #15), carried on the control
//! stream like a desired state, so it reaches a device over the same connection the check-ins
//! keep alive, and an offline device gets it within one check-in of its return.
//!
//! ```text
//! agent ── AgentMessage::Features(JOBS) ───▶ hub   (once per session, after Hello)
//! agent ◀─ HubMessage::Job(order) ─────────── hub   (queued orders, at most the job's concurrency
//!                                                    in flight across the fleet)
//! agent ── AgentMessage::JobStarted { id } ─▶ hub
//! agent ── AgentMessage::JobProgress(p) ───▶ hub   (a PullImage job, at most once a second)
//! agent ── AgentMessage::JobResult(result) ─▶ hub   (again on every new session until acked)
//! agent ◀─ HubMessage::JobAck { id } ──────── hub   (the result is in the store)
//! ```
//!
//! A job runs **at most once** per device: the agent journals an order before it starts it and
//! keeps the result until the hub acknowledges it, so a link cut or a hub restart between the two
//! costs a resend of the result, never a second run; an agent killed while a job runs reports it
//! [`JobOutcome::Interrupted`] at its next start instead of running it again. An order carries the
//! time left until the job expires, not a wall-clock deadline (device clocks are not trusted):
//! an agent that receives an order after it expired reports [`JobOutcome::Expired`].
//!
//! Output is the interleaved stdout and stderr, kept as its first and last [`MAX_OUTPUT_PART`]
//! bytes ([`OutputCapture`]), so a result always fits one control frame however much a command
//! prints.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::wire;

/// First and last bytes of output kept from a job (each): 128 KiB a result at most, half a control
/// frame.
pub const MAX_OUTPUT_PART: usize = 64 * 1024;

/// Most encoded bytes of a job's specification (an Engine API body included).
pub const MAX_JOB_SPEC_BYTES: usize = 32 * 1024;

/// Most arguments in a command.
pub const MAX_ARGS: usize = 256;

/// Longest container, image or user name, and longest Engine API path.
pub const MAX_JOB_NAME: usize = 1024;

/// Longest reason in a [`JobOutcome::Failed`].
pub const MAX_JOB_REASON: usize = crate::stack::MAX_REASON;

/// What the agent can do beyond the version-1 session, announced once per session
/// ([`crate::wire::AgentMessage::Features`], version 4). The hub sends a job only to a session
/// that announced [`Features::JOBS`]; unknown bits are ignored, so later features add bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Features(pub u32);

impl Features {
    /// The agent runs jobs against its engine.
    pub const JOBS: Self = Self(1);
    /// The agent reads [`HubMessage::DesiredOrder`](crate::wire::HubMessage::DesiredOrder)
    /// (version 5): some stacks' drift only reported.
    pub const DRIFT_REPORT: Self = Self(2);
    /// The agent runs a loopback registry and fetches from the hub's mirror over fetch streams
    /// ([`crate::fetch`], version 6).
    pub const REGISTRY: Self = Self(4);
    /// The agent runs [`JobSpec::PullImage`] through its loopback registry and reports
    /// [`JobProgress`] while it pulls. The hub sends such a job only to an agent that announces
    /// this bit (an older agent could not decode it).
    pub const IMAGE_PULL: Self = Self(8);
    /// The agent takes check-in intervals of up to
    /// [`MAX_CHECKIN_INTERVAL`](crate::agent_session::MAX_CHECKIN_INTERVAL) and keeps its
    /// connection's idle timeout in step with its interval, so the hub may put it on a `quiet`
    /// policy (check-ins minutes apart). No message of its own: a hub that does not know the bit
    /// ignores it, and an agent without it keeps intervals short enough for a 110 s idle timeout.
    pub const QUIET: Self = Self(16);
    /// The agent understands [`FetchRefusal::Deferred`](crate::fetch::FetchRefusal::Deferred)
    /// and reports a stack it holds back as
    /// [`Phase::Deferred`](crate::stack::Phase::Deferred): the hub may defer its background
    /// transfers (a byte budget spent, outside a transfer window) instead of refusing them.
    pub const DEFERRAL: Self = Self(32);
    /// The agent takes [`HubMessage::HubAddrs`](crate::wire::HubMessage::HubAddrs) mid-session:
    /// the hubs sharing its hub's store changed, and it dials them if its hub dies.
    pub const HUB_ADDRS: Self = Self(64);
    /// The agent reads [`FetchRefusal::Forbidden`](crate::fetch::FetchRefusal::Forbidden) (an
    /// image not ordered onto the device) and answers its engine 403; an agent without the bit
    /// is refused such a fetch as not found.
    pub const FETCH_FORBIDDEN: Self = Self(128);

    /// Every bit of either.
    pub fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

/// What a job does on each device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobSpec {
    /// `docker exec CONTAINER CMD…` in a running container.
    Exec {
        /// Container name or id.
        container: String,
        /// The command and its arguments.
        cmd: Vec<String>,
        /// `--user`, when set.
        user: Option<String>,
    },
    /// `docker run --rm IMAGE CMD…`: a one-shot container (the image pulled if missing), removed
    /// after it exits.
    Run {
        /// The image.
        image: String,
        /// The command and its arguments (the image's own when empty).
        cmd: Vec<String>,
    },
    /// One Engine API request, e.g. `POST /images/prune`; the output is the response body.
    Engine {
        /// The method.
        method: EngineMethod,
        /// Path and query, starting with `/` (`/v1.41/…` or unversioned).
        path: String,
        /// JSON body, empty for none.
        body: Vec<u8>,
    },
    /// Pull an image through the agent's loopback registry, from the hub's mirror (`outpost-hub
    /// image pull`); sent only to agents that announce [`Features::IMAGE_PULL`].
    PullImage {
        /// `NAME[:TAG]` (pushed to the hub, or of its default upstream) or `HOST/NAME[:TAG]` of
        /// the hub's default upstream.
        image: String,
    },
}

/// Methods an Engine API job may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EngineMethod {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
}

impl EngineMethod {
    /// The method as HTTP spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
        }
    }

    /// Read an HTTP method name (upper case, as the CLI takes it).
    pub fn parse(method: &str) -> Option<Self> {
        [Self::Get, Self::Post, Self::Put, Self::Delete]
            .into_iter()
            .find(|m| m.as_str() == method)
    }
}

/// Engine API paths a job may not call: they hijack the connection or stream without end, so a
/// job built on them would hold its device's slot until it timed out.
const STREAMING_PATH_PARTS: [&str; 6] = [
    "/attach", "/exec/", "/events", "/logs", "/stats", "/session",
];

/// Why a job's specification is refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum JobSpecError {
    /// Nothing to run.
    #[error("the job is empty: {0}")]
    Empty(&'static str),
    /// A name or argument with a control character, or too long.
    #[error("{0} holds a control character or is longer than {MAX_JOB_NAME} bytes")]
    BadText(&'static str),
    /// More than [`MAX_ARGS`] arguments.
    #[error("a command has at most {MAX_ARGS} arguments")]
    TooManyArgs,
    /// An Engine API path that is not a plain absolute path, or one that streams.
    #[error("Engine API path {0:?} is not allowed (an absolute path; no attach, exec, events, logs, stats or session)")]
    BadPath(String),
    /// The body is not JSON.
    #[error("the Engine API body is not JSON: {0}")]
    BadBody(String),
    /// The encoding passes [`MAX_JOB_SPEC_BYTES`].
    #[error("the job encodes to {0} bytes, more than the {MAX_JOB_SPEC_BYTES} allowed")]
    TooLarge(usize),
}

impl JobSpec {
    /// Check what both sides rely on: something to run, bounded text without control characters,
    /// an Engine path that neither streams nor hijacks, a JSON body, the size.
    pub fn check(&self) -> Result<(), JobSpecError> {
        match self {
            Self::Exec {
                container,
                cmd,
                user,
            } => {
                check_text("the container", container, "no container named")?;
                check_command(cmd, true)?;
                if let Some(user) = user {
                    check_text("the user", user, "an empty user")?;
                }
            }
            Self::Run { image, cmd } => {
                check_text("the image", image, "no image named")?;
                check_command(cmd, false)?;
            }
            Self::PullImage { image } => check_text("the image", image, "no image named")?,
            Self::Engine { path, body, .. } => {
                check_path(path)?;
                if !body.is_empty() {
                    serde_json::from_slice::<serde_json::Value>(body)
                        .map_err(|e| JobSpecError::BadBody(e.to_string()))?;
                }
            }
        }
        let size = wire::encode(self).len();
        if size > MAX_JOB_SPEC_BYTES {
            return Err(JobSpecError::TooLarge(size));
        }
        Ok(())
    }

    /// One line for lists: `exec web sh -c …`, `run busybox true`, `POST /images/prune`.
    pub fn summary(&self) -> String {
        let line = match self {
            Self::Exec { container, cmd, .. } => format!("exec {container} {}", cmd.join(" ")),
            Self::Run { image, cmd } => format!("run --rm {image} {}", cmd.join(" ")),
            Self::Engine { method, path, .. } => format!("{} {path}", method.as_str()),
            Self::PullImage { image } => format!("pull {image}"),
        };
        let line = line.trim_end();
        match line.char_indices().nth(120) {
            Some((cut, _)) => format!("{}…", &line[..cut]),
            None => line.to_owned(),
        }
    }
}

fn check_text(what: &'static str, text: &str, empty: &'static str) -> Result<(), JobSpecError> {
    if text.is_empty() {
        return Err(JobSpecError::Empty(empty));
    }
    if text.len() > MAX_JOB_NAME || text.chars().any(char::is_control) {
        return Err(JobSpecError::BadText(what));
    }
    Ok(())
}

fn check_command(cmd: &[String], required: bool) -> Result<(), JobSpecError> {
    if required && cmd.is_empty() {
        return Err(JobSpecError::Empty("no command"));
    }
    if cmd.len() > MAX_ARGS {
        return Err(JobSpecError::TooManyArgs);
    }
    // Arguments may hold newlines and tabs (a shell script); only NUL cannot reach the engine.
    if cmd
        .iter()
        .any(|arg| arg.len() > MAX_JOB_NAME * 4 || arg.contains('\0'))
    {
        return Err(JobSpecError::BadText("an argument"));
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), JobSpecError> {
    let plain = path.starts_with('/')
        && path.len() <= MAX_JOB_NAME
        && !path.contains("..")
        && path.chars().all(|c| c.is_ascii_graphic());
    let route = path.split('?').next().unwrap_or(path);
    let streams = STREAMING_PATH_PARTS.iter().any(|part| route.contains(part));
    if plain && !streams {
        Ok(())
    } else {
        Err(JobSpecError::BadPath(path.to_owned()))
    }
}

/// A job as the hub sends it to one device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOrder {
    /// The job's id (the hub's, the same on every device).
    pub id: u64,
    /// What to run.
    pub spec: JobSpec,
    /// Milliseconds left until the job expires, as the hub counts when it sends the order; an
    /// agent does not start it later than that after receiving it.
    pub expires_in_ms: u64,
    /// Longest the agent waits for the job to finish before reporting [`JobOutcome::TimedOut`]
    /// (a one-shot container is killed then; an exec is left to the engine).
    pub timeout_ms: u64,
}

/// How far a device's [`JobSpec::PullImage`] has come: bytes the engine downloaded over the bytes
/// it knows of so far (the total grows as it learns each layer). Sent at most once a second per
/// job, only while it runs; the result follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobProgress {
    /// The job.
    pub id: u64,
    /// Bytes downloaded.
    pub done: u64,
    /// Bytes known.
    pub total: u64,
    /// The hub holds the pull back (a spent byte budget, outside the transfer window): the job
    /// waits, not fails, and goes on from where it stopped when allowed.
    pub deferred: Option<crate::fetch::DeferCause>,
}

/// How a job ended on one device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobOutcome {
    /// The command (exec or one-shot container) exited with this code.
    Exited(i64),
    /// The engine answered the API request with this HTTP status.
    Answered(u16),
    /// It could not run; the engine's or the agent's reason.
    Failed(String),
    /// It ran past the order's timeout.
    TimedOut,
    /// The order arrived after the job expired: nothing ran.
    Expired,
    /// The agent stopped (killed, restarted) while the job ran; it is not run again.
    Interrupted,
    /// An admin cancelled it before it started, or while a one-shot container ran it (stopped).
    Cancelled,
}

impl JobOutcome {
    /// Whether the job did what was asked: exit code 0, or a 2xx answer.
    pub fn succeeded(&self) -> bool {
        match self {
            Self::Exited(code) => *code == 0,
            Self::Answered(status) => (200..300).contains(status),
            _ => false,
        }
    }
}

/// One device's result of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    /// The job.
    pub id: u64,
    /// How it ended.
    pub outcome: JobOutcome,
    /// The first bytes of output (at most [`MAX_OUTPUT_PART`]).
    pub head: Vec<u8>,
    /// The last bytes of output not already in `head` (at most [`MAX_OUTPUT_PART`]).
    pub tail: Vec<u8>,
    /// All output bytes, kept or not.
    pub output_bytes: u64,
    /// From start to end, in milliseconds.
    pub duration_ms: u64,
}

/// Why a device's result is refused (the hub closes the session: a correct agent never sends one).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum JobResultError {
    /// `head` or `tail` is longer than [`MAX_OUTPUT_PART`], or they exceed `output_bytes`.
    #[error("a job result's output does not add up ({head} + {tail} bytes kept of {total})")]
    Output {
        /// Bytes in `head`.
        head: usize,
        /// Bytes in `tail`.
        tail: usize,
        /// `output_bytes`.
        total: u64,
    },
    /// A failure reason longer than [`MAX_JOB_REASON`].
    #[error("a job failure reason is longer than {MAX_JOB_REASON} bytes")]
    Reason,
}

impl JobResult {
    /// Check the bounds a hub relies on before storing a result.
    pub fn check(&self) -> Result<(), JobResultError> {
        let kept = (self.head.len() + self.tail.len()) as u64;
        if self.head.len() > MAX_OUTPUT_PART
            || self.tail.len() > MAX_OUTPUT_PART
            || kept > self.output_bytes
            || (!self.tail.is_empty() && self.head.len() < MAX_OUTPUT_PART)
        {
            return Err(JobResultError::Output {
                head: self.head.len(),
                tail: self.tail.len(),
                total: self.output_bytes,
            });
        }
        match &self.outcome {
            JobOutcome::Failed(reason) if reason.len() > MAX_JOB_REASON => {
                Err(JobResultError::Reason)
            }
            _ => Ok(()),
        }
    }
}

/// The first and last [`MAX_OUTPUT_PART`] bytes of a stream of output, in bounded memory.
#[derive(Clone, Debug, Default)]
pub struct OutputCapture {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    total: u64,
}

impl OutputCapture {
    /// Add the next bytes of output.
    pub fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let room = MAX_OUTPUT_PART - self.head.len();
        if room > 0 {
            let take = room.min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        if bytes.len() >= MAX_OUTPUT_PART {
            self.tail.clear();
            bytes = &bytes[bytes.len() - MAX_OUTPUT_PART..];
        }
        let overflow = (self.tail.len() + bytes.len()).saturating_sub(MAX_OUTPUT_PART);
        self.tail.drain(..overflow);
        self.tail.extend(bytes);
    }

    /// Every byte pushed so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The result of a job that ended with `outcome` after `duration_ms`.
    pub fn finish(self, id: u64, outcome: JobOutcome, duration_ms: u64) -> JobResult {
        JobResult {
            id,
            outcome,
            head: self.head,
            tail: self.tail.into(),
            output_bytes: self.total,
            duration_ms,
        }
    }
}

#[cfg(test)]
#[path = "job/tests.rs"]
mod tests;

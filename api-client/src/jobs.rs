//! Job request and response bodies (`/api/jobs`): one command run once on each device of a
//! selection, with each device's result.
//!
//! What a job runs is [`JobWhat`], a JSON spelling of the protocol's
//! [`JobSpec`]: the hub and the CLI both turn it into one with [`JobWhat::spec`], which also
//! runs the protocol's checks, so a job the hub would refuse is refused by the CLI in the same
//! words before it sends anything.

use std::collections::BTreeMap;

use outpost_protocol::job::{EngineMethod, JobSpec, JobSpecError};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// What a job runs on each device, tagged by `kind`. Absent names and commands read as empty, so
/// that the refusal names what is missing ("the job is empty: no image named").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum JobWhat {
    /// `docker exec [--user USER] CONTAINER CMD…` in a running container.
    Exec {
        /// Container name or id.
        #[serde(default)]
        container: String,
        /// The command and its arguments.
        #[serde(default)]
        cmd: Vec<String>,
        /// `--user`, when set.
        #[serde(default)]
        user: Option<String>,
    },
    /// `docker run --rm IMAGE [CMD…]`: a one-shot container, removed after it exits.
    Run {
        /// The image (pulled if missing).
        #[serde(default)]
        image: String,
        /// The command and its arguments (the image's own when empty).
        #[serde(default)]
        cmd: Vec<String>,
    },
    /// Pull an image from the hub's mirror through the device's loopback registry (`outpost-hub
    /// image pull`).
    PullImage {
        /// `NAME[:TAG]`, or `HOST/NAME[:TAG]` of the hub's default upstream.
        #[serde(default)]
        image: String,
    },
    /// One Engine API request, e.g. `POST /images/prune`.
    Engine {
        /// `GET`, `POST`, `PUT` or `DELETE`.
        method: String,
        /// Path and query, starting with `/`.
        path: String,
        /// The JSON body; none when absent or null.
        #[serde(default)]
        body: Option<serde_json::Value>,
    },
}

/// Why a [`JobWhat`] is not a job the hub runs.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum JobWhatError {
    /// An Engine API call with another method: say one of the four.
    #[error("Engine API method {0:?} is not one of GET, POST, PUT or DELETE")]
    Method(String),
    /// The protocol's checks refuse the job (empty, a streaming path, too large, …).
    #[error(transparent)]
    Spec(#[from] JobSpecError),
}

impl JobWhat {
    /// The job as devices receive it, checked.
    pub fn spec(&self) -> Result<JobSpec, JobWhatError> {
        let spec = match self.clone() {
            Self::Exec {
                container,
                cmd,
                user,
            } => JobSpec::Exec {
                container,
                cmd,
                user,
            },
            Self::Run { image, cmd } => JobSpec::Run { image, cmd },
            Self::PullImage { image } => JobSpec::PullImage { image },
            Self::Engine { method, path, body } => JobSpec::Engine {
                method: EngineMethod::parse(&method).ok_or(JobWhatError::Method(method))?,
                path,
                body: body
                    .filter(|b| !b.is_null())
                    .map(|b| b.to_string().into_bytes())
                    .unwrap_or_default(),
            },
        };
        spec.check()?;
        Ok(spec)
    }
}

/// `POST /api/jobs`: run something once on every device of a selection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    /// Devices in any of these groups…
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// …or with any of these tags…
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// …or these endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<u64>,
    /// What runs on each.
    pub what: JobWhat,
    /// How long devices that have not started it may still be sent it (`24h` when absent; from
    /// `1m` to `30d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Most devices running it at once (500 when absent; 1 to 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Longest one device may run it (`10m` when absent; from `1s` to `24h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// A job's state and counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSummary {
    /// Its id.
    pub id: i64,
    /// What it runs, in one line (`exec web df -h`, `run --rm busybox true`, `POST /images/prune`).
    pub what: String,
    /// `running` until every device settled, then `finished`; `cancelled` once cancelled.
    pub state: String,
    /// Devices by state (`queued`, `sent`, `running`, `succeeded`, `failed`, `expired`, `lost`,
    /// `cancelled`), every state present, and `total`.
    pub counts: BTreeMap<String, u32>,
    /// Most devices running it at once.
    pub concurrency: u32,
    /// Longest one device may run it (`10m`).
    pub timeout: String,
    /// When it was created (Unix seconds).
    pub created_at: i64,
    /// When devices that have not started it stop being sent it (Unix seconds).
    pub expires_at: i64,
    /// When every device settled (Unix seconds).
    pub finished_at: Option<i64>,
    /// The groups it was aimed at.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The tags it was aimed at.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The endpoints it was aimed at by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<u64>,
}

/// One page of `GET /api/jobs`, newest first.
pub type JobPage = crate::Paged<JobSummary>;

/// One device of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDevice {
    /// The device.
    pub endpoint: u64,
    /// Its name, while the endpoint exists.
    pub name: Option<String>,
    /// Where the job is on it (as in the counts).
    pub state: String,
    /// How it ended, for a human: `exit 0`, `HTTP 200`, `failed: <reason>`, `timed out`,
    /// `expired before it started`, `interrupted (the agent stopped while it ran)`.
    pub outcome: Option<String>,
    /// The command's exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// The engine's HTTP status, for an Engine API call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Why it could not run (the engine's or the agent's words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Output bytes it printed, kept or not.
    pub output_bytes: Option<u64>,
    /// How long it ran, in milliseconds.
    pub duration_ms: Option<u64>,
    /// When its row last changed (Unix seconds).
    pub updated_at: i64,
    /// How far an image pull has come, while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<PullProgress>,
}

/// Bytes an image pull downloaded over the bytes known so far (the total grows as the engine
/// learns each layer's size).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullProgress {
    /// Bytes downloaded.
    pub done: u64,
    /// Bytes known.
    pub total: u64,
    /// Held back by the device's byte budget or transfer window: waiting, not failed.
    #[serde(default)]
    pub deferred: Option<outpost_protocol::fetch::DeferCause>,
}

/// `GET /api/jobs/{id}?page=&per_page=&state=`: the summary and one page of devices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDetail {
    /// State and counts.
    #[serde(flatten)]
    pub summary: JobSummary,
    /// The page's devices, by endpoint id.
    pub devices: Vec<JobDevice>,
}

/// `GET /api/jobs/{id}/devices/{endpoint}`: one device's result with its kept output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOutput {
    /// The device's row.
    pub device: JobDevice,
    /// The first bytes of output (stdout and stderr interleaved; invalid UTF-8 replaced).
    pub head: String,
    /// The last bytes, when there was more than the head holds.
    pub tail: String,
    /// Output bytes printed in all.
    pub output_bytes: u64,
    /// Bytes printed between `head` and `tail` and not kept.
    pub omitted: u64,
}

/// `GET /api/jobs/{id}` parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobShowQuery {
    /// 1-based page number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    /// Rows per page, 1 to 1000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_page: Option<String>,
    /// Only devices in this state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn what(value: serde_json::Value) -> JobWhat {
        serde_json::from_value(value).expect("a JobWhat")
    }

    #[test]
    fn each_kind_reads_from_its_json_and_becomes_its_spec() {
        let exec = what(json!({"kind": "exec", "container": "web", "cmd": ["df", "-h"]}));
        assert_eq!(exec.spec().expect("exec").summary(), "exec web df -h");
        let run = what(json!({"kind": "run", "image": "busybox", "cmd": ["true"]}));
        assert_eq!(run.spec().expect("run").summary(), "run --rm busybox true");
        let engine = what(
            json!({"kind": "engine", "method": "POST", "path": "/images/prune",
            "body": {"filters": {}}}),
        );
        let Ok(JobSpec::Engine { body, .. }) = engine.spec() else {
            panic!("not an Engine job");
        };
        assert_eq!(body, br#"{"filters":{}}"#);
        let bare = what(json!({"kind": "engine", "method": "GET", "path": "/info", "body": null}));
        assert!(matches!(bare.spec(), Ok(JobSpec::Engine { body, .. }) if body.is_empty()));
    }

    #[test]
    fn what_is_missing_is_named() {
        let no_image = what(json!({"kind": "run"})).spec().expect_err("no image");
        assert_eq!(no_image.to_string(), "the job is empty: no image named");
        let no_cmd = what(json!({"kind": "exec", "container": "web"}));
        assert!(no_cmd
            .spec()
            .expect_err("no command")
            .to_string()
            .contains("no command"));
        let patch = what(json!({"kind": "engine", "method": "PATCH", "path": "/x"}));
        assert_eq!(patch.spec(), Err(JobWhatError::Method("PATCH".into())));
        let odd = serde_json::from_value::<JobWhat>(json!({"kind": "run", "rm": true}));
        assert!(odd.is_err(), "unknown fields are refused");
    }
}

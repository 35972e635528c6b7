#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use super::*;

fn exec(cmd: &[&str]) -> JobSpec {
    JobSpec::Exec {
        container: "web".into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        user: None,
    }
}

fn engine(method: EngineMethod, path: &str, body: &str) -> JobSpec {
    JobSpec::Engine {
        method,
        path: path.into(),
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn each_kind_of_job_passes_its_check() {
    exec(&["sh", "-c", "echo hi\nexit 3"]).check().unwrap();
    JobSpec::Run {
        image: "busybox:1.36".into(),
        cmd: vec![],
    }
    .check()
    .unwrap();
    engine(EngineMethod::Post, "/images/prune?filters=%7B%7D", "")
        .check()
        .unwrap();
    engine(EngineMethod::Post, "/v1.41/containers/prune", "{}")
        .check()
        .unwrap();
}

#[test]
fn a_pull_job_names_an_image_and_round_trips_with_its_progress() {
    let pull = JobSpec::PullImage {
        image: "pos/web:4".into(),
    };
    pull.check().unwrap();
    assert_eq!(pull.summary(), "pull pos/web:4");
    assert_eq!(wire::decode::<JobSpec>(&wire::encode(&pull)).unwrap(), pull);
    let empty = JobSpec::PullImage { image: "".into() };
    assert_eq!(empty.check(), Err(JobSpecError::Empty("no image named")));
    let control = JobSpec::PullImage {
        image: "a\nb".into(),
    };
    assert!(control.check().is_err());
    let progress = wire::AgentMessage::JobProgress(JobProgress {
        id: 3,
        done: 10,
        total: 20,
        deferred: None,
    });
    let frame = wire::encode(&progress);
    assert_eq!(
        wire::decode::<wire::AgentMessage>(&frame).unwrap(),
        progress
    );
    assert!(Features::JOBS
        .with(Features::IMAGE_PULL)
        .contains(Features::IMAGE_PULL));
    assert_eq!(Features::IMAGE_PULL.0, 8);
}

#[test]
fn an_empty_job_is_refused_saying_what_is_missing() {
    assert_eq!(exec(&[]).check(), Err(JobSpecError::Empty("no command")));
    let no_container = JobSpec::Exec {
        container: String::new(),
        cmd: vec!["true".into()],
        user: None,
    };
    assert_eq!(
        no_container.check(),
        Err(JobSpecError::Empty("no container named"))
    );
    let no_image = JobSpec::Run {
        image: String::new(),
        cmd: vec![],
    };
    assert_eq!(no_image.check(), Err(JobSpecError::Empty("no image named")));
}

#[test]
fn engine_paths_that_stream_hijack_or_escape_are_refused() {
    for path in [
        "images/prune",
        "/containers/x/attach?stream=1",
        "/exec/abc/start",
        "/events",
        "/containers/x/logs?follow=1",
        "/containers/x/stats",
        "/session",
        "/a/../b",
        "/with space",
        "/tab\there",
    ] {
        assert_eq!(
            engine(EngineMethod::Get, path, "").check(),
            Err(JobSpecError::BadPath(path.into())),
            "{path}"
        );
    }
    // `/exec` only as a route part: a container named `executor` is fine.
    engine(EngineMethod::Post, "/containers/executor/restart", "")
        .check()
        .unwrap();
}

#[test]
fn a_body_must_be_json_and_text_must_be_plain() {
    assert!(matches!(
        engine(EngineMethod::Post, "/images/prune", "{oops").check(),
        Err(JobSpecError::BadBody(_))
    ));
    let control = JobSpec::Run {
        image: "busy\u{1b}box".into(),
        cmd: vec![],
    };
    assert_eq!(control.check(), Err(JobSpecError::BadText("the image")));
    assert_eq!(
        exec(&["a\0b"]).check(),
        Err(JobSpecError::BadText("an argument"))
    );
    let many: Vec<&str> = vec!["x"; MAX_ARGS + 1];
    assert_eq!(exec(&many).check(), Err(JobSpecError::TooManyArgs));
}

#[test]
fn a_spec_past_the_size_limit_is_refused() {
    let body = format!("\"{}\"", "x".repeat(MAX_JOB_SPEC_BYTES));
    assert!(matches!(
        engine(EngineMethod::Post, "/build", &body).check(),
        Err(JobSpecError::TooLarge(_))
    ));
}

#[test]
fn methods_read_back_what_they_print() {
    for method in [
        EngineMethod::Get,
        EngineMethod::Post,
        EngineMethod::Put,
        EngineMethod::Delete,
    ] {
        assert_eq!(EngineMethod::parse(method.as_str()), Some(method));
    }
    assert_eq!(EngineMethod::parse("post"), None);
    assert_eq!(EngineMethod::parse("PATCH"), None);
}

#[test]
fn summaries_are_one_bounded_line() {
    assert_eq!(exec(&["df", "-h"]).summary(), "exec web df -h");
    assert_eq!(
        engine(EngineMethod::Post, "/images/prune", "").summary(),
        "POST /images/prune"
    );
    let long = exec(&[&"é".repeat(500)]).summary();
    assert_eq!(long.chars().count(), 121);
    assert!(long.ends_with('…'));
}

#[test]
fn small_output_is_kept_whole_in_the_head() {
    let mut capture = OutputCapture::default();
    capture.push(b"hello ");
    capture.push(b"world");
    let result = capture.finish(4, JobOutcome::Exited(0), 12);
    assert_eq!(result.head, b"hello world");
    assert!(result.tail.is_empty());
    assert_eq!(result.output_bytes, 11);
    result.check().unwrap();
}

#[test]
fn large_output_keeps_its_first_and_last_bytes_in_any_chunking() {
    let output: Vec<u8> = (0..5 * MAX_OUTPUT_PART).map(|i| (i % 251) as u8).collect();
    for chunk in [1000, 7, MAX_OUTPUT_PART + 3, 3 * MAX_OUTPUT_PART] {
        let mut capture = OutputCapture::default();
        for piece in output.chunks(chunk) {
            capture.push(piece);
        }
        assert_eq!(capture.total(), output.len() as u64);
        let result = capture.finish(1, JobOutcome::Exited(1), 0);
        assert_eq!(result.head, output[..MAX_OUTPUT_PART], "chunk {chunk}");
        assert_eq!(
            result.tail,
            output[output.len() - MAX_OUTPUT_PART..],
            "chunk {chunk}"
        );
        result.check().unwrap();
    }
}

#[test]
fn output_just_past_the_head_goes_to_the_tail_without_overlap() {
    let output: Vec<u8> = (0..MAX_OUTPUT_PART + 10).map(|i| (i % 7) as u8).collect();
    let mut capture = OutputCapture::default();
    capture.push(&output);
    let result = capture.finish(1, JobOutcome::Exited(0), 0);
    assert_eq!(result.head.len(), MAX_OUTPUT_PART);
    assert_eq!(result.tail, output[MAX_OUTPUT_PART..]);
}

#[test]
fn results_that_do_not_add_up_are_refused() {
    let ok = OutputCapture::default().finish(1, JobOutcome::Answered(200), 0);
    ok.check().unwrap();
    let overstated = JobResult {
        head: vec![0; 10],
        output_bytes: 9,
        ..ok.clone()
    };
    assert!(matches!(
        overstated.check(),
        Err(JobResultError::Output { .. })
    ));
    let tail_without_full_head = JobResult {
        head: vec![0; 10],
        tail: vec![0; 10],
        output_bytes: 100,
        ..ok.clone()
    };
    assert!(tail_without_full_head.check().is_err());
    let oversized = JobResult {
        head: vec![0; MAX_OUTPUT_PART + 1],
        output_bytes: u64::MAX,
        ..ok.clone()
    };
    assert!(oversized.check().is_err());
    let long_reason = JobResult {
        outcome: JobOutcome::Failed("x".repeat(MAX_JOB_REASON + 1)),
        ..ok
    };
    assert_eq!(long_reason.check(), Err(JobResultError::Reason));
}

#[test]
fn the_largest_result_fits_a_control_frame() {
    let mut capture = OutputCapture::default();
    capture.push(&vec![0xff; 3 * MAX_OUTPUT_PART]);
    let result = capture.finish(
        u64::MAX,
        JobOutcome::Failed("x".repeat(MAX_JOB_REASON)),
        u64::MAX,
    );
    let frame = wire::encode(&wire::AgentMessage::JobResult(result));
    assert!(frame.len() < wire::MAX_CONTROL_FRAME, "{}", frame.len());
}

#[test]
fn outcomes_say_whether_the_job_succeeded() {
    assert!(JobOutcome::Exited(0).succeeded());
    assert!(!JobOutcome::Exited(1).succeeded());
    assert!(JobOutcome::Answered(204).succeeded());
    assert!(!JobOutcome::Answered(404).succeeded());
    assert!(!JobOutcome::Expired.succeeded());
    assert!(!JobOutcome::Interrupted.succeeded());
}

#[test]
fn features_hold_bits_the_reader_does_not_know() {
    let newer = Features(Features::JOBS.0 | 0x80);
    assert!(newer.contains(Features::JOBS));
    assert!(!Features::default().contains(Features::JOBS));
}

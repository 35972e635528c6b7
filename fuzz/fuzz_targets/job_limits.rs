//! A job's specification and a device's result as hostile bytes could carry them, through the
//! checks the hub makes before storing (`JobSpec::check`, `JobResult::check`), and output of any
//! shape through `OutputCapture`: nothing panics, and a capture's result always passes the check
//! with its head and tail within `MAX_OUTPUT_PART` and its total the bytes pushed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_protocol::job::{JobOutcome, JobResult, JobSpec, OutputCapture, MAX_OUTPUT_PART};
use outpost_protocol::wire;

fuzz_target!(|data: &[u8]| {
    if let Ok(spec) = wire::decode::<JobSpec>(data) {
        let _ = spec.check();
        let _ = spec.summary();
    }
    if let Ok(result) = wire::decode::<JobResult>(data) {
        let _ = result.check();
    }
    let mut capture = OutputCapture::default();
    let mut rest = data;
    while let Some((&len, body)) = rest.split_first() {
        // Chunks up to 255 × 1021 bytes, so the head and the tail both fill and wrap.
        let wanted = usize::from(len) * 1021;
        let chunk = vec![len; wanted];
        capture.push(&chunk);
        rest = body;
    }
    let total = capture.total();
    let result = capture.finish(1, JobOutcome::Exited(0), 0);
    assert!(result.head.len() <= MAX_OUTPUT_PART && result.tail.len() <= MAX_OUTPUT_PART);
    assert_eq!(result.output_bytes, total);
    assert_eq!(JobResult::check(&result), Ok(()));
});

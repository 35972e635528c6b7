use std::fs::File;

use outpost_protocol::job::JobSpec;

use super::*;

fn order(id: u64) -> JobOrder {
    JobOrder {
        id,
        spec: JobSpec::Run {
            image: "busybox".to_owned(),
            cmd: vec!["true".to_owned()],
        },
        expires_in_ms: 60_000,
        timeout_ms: 60_000,
    }
}

fn exited(id: u64, code: i64) -> JobResult {
    let mut output = OutputCapture::default();
    output.push(b"hello\n");
    output.finish(id, JobOutcome::Exited(code), 12)
}

fn open(dir: &Path) -> Opened {
    Journal::open(dir, SystemTime::now()).unwrap()
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Set `path`'s modification time `age` into the past.
fn age(path: &Path, age: Duration) {
    let file = File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
}

#[test]
fn an_order_is_journaled_then_its_result_held_until_acknowledged_then_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = open(dir.path()).journal;

    assert_eq!(journal.admit(&order(7)).unwrap(), Admission::Run);
    assert_eq!(files(dir.path()), ["7.order"]);
    journal.finish(&exited(7, 3)).unwrap();
    assert_eq!(files(dir.path()), ["7.result"]);
    assert_eq!(journal.held(), [7]);
    let held = Journal::read_result(dir.path(), 7).unwrap();
    assert_eq!(held, Some(exited(7, 3)));

    assert!(journal.ack(7).unwrap());
    assert_eq!(files(dir.path()), ["7.done"]);
    assert!(journal.held().is_empty());
    assert_eq!(Journal::read_result(dir.path(), 7).unwrap(), None);
    assert!(!journal.ack(7).unwrap(), "a second ack changes nothing");
    assert!(
        !journal.ack(8).unwrap(),
        "nor does an ack of an unknown job"
    );
}

#[test]
fn a_known_job_is_never_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = open(dir.path()).journal;
    journal.admit(&order(1)).unwrap();
    assert_eq!(
        journal.admit(&order(1)).unwrap(),
        Admission::Ignore,
        "running"
    );
    journal.finish(&exited(1, 0)).unwrap();
    assert_eq!(journal.admit(&order(1)).unwrap(), Admission::Resend, "held");
    journal.ack(1).unwrap();
    assert_eq!(journal.admit(&order(1)).unwrap(), Admission::Ignore, "done");

    let mut reopened = open(dir.path()).journal;
    assert_eq!(
        reopened.admit(&order(1)).unwrap(),
        Admission::Ignore,
        "an agent restart remembers it"
    );
}

#[test]
fn an_order_without_a_result_at_start_is_reported_interrupted_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = open(dir.path()).journal;
    journal.admit(&order(4)).unwrap();
    drop(journal); // the agent is killed while job 4 runs

    let opened = open(dir.path());
    assert_eq!(opened.interrupted, [order(4)]);
    let mut journal = opened.journal;
    assert_eq!(journal.held(), [4]);
    assert_eq!(files(dir.path()), ["4.result"]);
    let result = Journal::read_result(dir.path(), 4).unwrap().unwrap();
    assert_eq!(result.outcome, JobOutcome::Interrupted);
    assert_eq!(
        (result.output_bytes, result.duration_ms, result.head.len()),
        (0, 0, 0)
    );
    assert_eq!(journal.admit(&order(4)).unwrap(), Admission::Resend);
    assert!(
        open(dir.path()).interrupted.is_empty(),
        "reported once only"
    );
}

#[test]
fn what_a_crash_between_two_steps_leaves_reads_as_the_later_step() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| fs::write(dir.path().join(name), bytes).unwrap();
    // Killed after writing the result, before dropping the order.
    write("1.order", &wire::encode(&order(1)));
    write("1.result", &wire::encode(&exited(1, 0)));
    // Killed after writing the done marker, before dropping the result.
    write("2.result", &wire::encode(&exited(2, 0)));
    write("2.done", b"");
    // Killed while writing a file; and a file that is none of the journal's.
    write("3.result.tmp-0a1b2c", b"half");
    write("notes.txt", b"an operator's");

    let opened = open(dir.path());
    assert!(opened.interrupted.is_empty());
    let mut journal = opened.journal;
    assert_eq!(journal.held(), [1]);
    assert_eq!(journal.admit(&order(2)).unwrap(), Admission::Ignore);
    assert_eq!(files(dir.path()), ["1.result", "2.done", "notes.txt"]);
}

#[test]
fn done_markers_older_than_thirty_days_are_pruned_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = open(dir.path()).journal;
    for id in [1, 2] {
        journal.admit(&order(id)).unwrap();
        journal.finish(&exited(id, 0)).unwrap();
        journal.ack(id).unwrap();
    }
    age(
        &dir.path().join("1.done"),
        DONE_KEPT + Duration::from_secs(3600),
    );
    age(
        &dir.path().join("2.done"),
        DONE_KEPT - Duration::from_secs(3600),
    );

    let mut journal = open(dir.path()).journal;
    assert_eq!(files(dir.path()), ["2.done"]);
    assert_eq!(journal.admit(&order(2)).unwrap(), Admission::Ignore);
    assert_eq!(
        journal.admit(&order(1)).unwrap(),
        Admission::Run,
        "forgotten: a job expires long before"
    );
}

#[test]
fn new_orders_are_refused_while_too_many_results_wait_for_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = open(dir.path()).journal;
    journal.limit = 2;
    journal.admit(&order(1)).unwrap();
    journal.finish(&exited(1, 0)).unwrap();
    journal.admit(&order(2)).unwrap();

    assert_eq!(journal.admit(&order(3)).unwrap(), Admission::Full);
    assert_eq!(files(dir.path()), ["1.result", "2.order"], "3 unjournaled");
    assert_eq!(journal.admit(&order(1)).unwrap(), Admission::Resend);
    journal.ack(1).unwrap();
    assert_eq!(journal.admit(&order(3)).unwrap(), Admission::Run);
}

#[test]
fn a_damaged_result_is_an_error_naming_its_file() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("5.result"), b"\xff\xff").unwrap();
    let err = Journal::read_result(dir.path(), 5).unwrap_err();
    assert!(
        matches!(&err, JournalError::Corrupt { path, .. } if path.ends_with("5.result")),
        "{err}"
    );
}

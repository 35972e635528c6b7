use super::*;
use crate::stack::fixtures::spec;

fn journal() -> Journal {
    Journal {
        format: FORMAT,
        phase: Phase::Applying,
        spec: spec(),
        kept: vec!["db1".to_owned()],
        set_aside: vec![Aside {
            id: "web1".to_owned(),
            name: "pos-web-1".to_owned(),
            was_running: true,
        }],
        network_existed: true,
    }
}

#[test]
fn a_journal_reads_back_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut written = journal();
    written.write(dir.path()).unwrap();
    assert_eq!(
        Journal::read(dir.path(), "pos").unwrap(),
        Some(written.clone())
    );
    written.phase = Phase::Committed;
    written.write(dir.path()).unwrap();
    assert_eq!(Journal::read(dir.path(), "pos").unwrap(), Some(written));
    assert_eq!(Journal::pending(dir.path()).unwrap(), ["pos"]);
    let files: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "no temporary file left: {files:?}");
}

#[test]
fn a_cleared_journal_is_no_longer_pending() {
    let dir = tempfile::tempdir().unwrap();
    journal().write(dir.path()).unwrap();
    Journal::clear(dir.path(), "pos").unwrap();
    Journal::clear(dir.path(), "pos").unwrap();
    assert_eq!(Journal::read(dir.path(), "pos").unwrap(), None);
    assert!(Journal::pending(dir.path()).unwrap().is_empty());
}

#[test]
fn a_missing_state_directory_has_nothing_pending() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("stacks");
    assert!(Journal::pending(&absent).unwrap().is_empty());
    assert_eq!(last_applied(&absent, "pos").unwrap(), None);
}

#[test]
fn the_state_directory_is_created_on_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let stacks = dir.path().join("stacks");
    save_applied(&stacks, &spec()).unwrap();
    assert_eq!(last_applied(&stacks, "pos").unwrap(), Some(spec()));
    forget_applied(&stacks, "pos").unwrap();
    assert_eq!(last_applied(&stacks, "pos").unwrap(), None);
}

#[cfg(unix)]
#[test]
fn state_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    save_applied(dir.path(), &spec()).unwrap();
    let mode = fs::metadata(applied_path(dir.path(), "pos"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_journal_of_another_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut newer = journal();
    newer.format = FORMAT + 1;
    newer.write(dir.path()).unwrap();
    let err = Journal::read(dir.path(), "pos").unwrap_err();
    assert!(
        matches!(&err, ApplyError::StateCorrupt { reason, .. } if reason.contains("format 2")),
        "{err}"
    );
}

#[test]
fn a_journal_under_another_projects_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    journal().write(dir.path()).unwrap();
    let renamed = journal_path(dir.path(), "other");
    fs::rename(journal_path(dir.path(), "pos"), renamed).unwrap();
    let err = Journal::read(dir.path(), "other").unwrap_err();
    assert!(
        err.to_string().contains("journal of project \"pos\""),
        "{err}"
    );
}

#[test]
fn a_damaged_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(journal_path(dir.path(), "pos"), b"{\"format\": 1, \"pha").unwrap();
    let err = Journal::read(dir.path(), "pos").unwrap_err();
    assert!(matches!(err, ApplyError::StateCorrupt { .. }), "{err}");
    assert!(err.to_string().contains("pos.journal.json"), "{err}");
}

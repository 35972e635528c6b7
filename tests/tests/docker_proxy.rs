//! The stock docker CLI drives a real engine through hub → QUIC → agent. Each test says what an
//! admin types and checks both what the CLI prints and what the engine (asked directly) did.
//!
//! With `OUTPOST_TEST_RELAY=1` (the second run in `scripts/test.sh`) every test runs through two
//! hubs on one PostgreSQL database: the device is held by one, and the docker CLI talks to the
//! other, which forwards each call (`hub/src/peers.rs`). `Device::hub` is then the holder, whose
//! view of the session the tests read.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use outpost_tests::bench_store::{BenchStore, StoreKind};
use outpost_tests::docker::{
    direct, require_engine, sha256_of, unique, Cleanup, Container, DockerCli, TEST_IMAGE,
};
use outpost_tests::{Agent, Hub};

/// A hub with one enrolled device on the local engine, online.
struct Device {
    hub: Hub,
    agent: Agent,
    id: u64,
    docker: DockerCli,
    /// In relay mode, the hub the CLI calls and the store both hubs share.
    _relay: Option<(Hub, BenchStore)>,
}

/// Whether to run through a second hub (`OUTPOST_TEST_RELAY=1`).
fn relay_mode() -> bool {
    std::env::var("OUTPOST_TEST_RELAY").is_ok_and(|v| v == "1")
}

fn device() -> Device {
    device_on("unix:///var/run/docker.sock")
}

fn device_on(docker_host: &str) -> Device {
    require_engine();
    if relay_mode() {
        return relayed_device_on(docker_host);
    }
    let hub = Hub::start();
    let (id, key) = hub.create_endpoint("kiosk", &[]);
    let dir = hub.data_dir.parent().unwrap().join("agent");
    let agent = Agent::start(&dir, &[("EDGE_KEY", &key), ("DOCKER_HOST", docker_host)]);
    hub.wait_status(id, "standby", Duration::from_secs(20));
    let docker = DockerCli::for_endpoint(&hub, id);
    Device {
        hub,
        agent,
        id,
        docker,
        _relay: None,
    }
}

/// The device held by one hub, the CLI on another of the same store. The holder starts first,
/// so the other finds it alive when it registers.
fn relayed_device_on(docker_host: &str) -> Device {
    let db = BenchStore::create(StoreKind::Postgres, &std::env::temp_dir());
    let flags = db.serve_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let holder = Hub::start_with_flags(&flags);
    let entry = Hub::start_with_flags(&flags);
    std::fs::copy(
        holder.data_dir.join("admin.token"),
        entry.data_dir.join("admin.token"),
    )
    .unwrap();
    let (id, key) = holder.create_endpoint("kiosk", &[]);
    let agent_dir = holder.data_dir.parent().unwrap().join("agent");
    let agent = Agent::start(
        &agent_dir,
        &[("EDGE_KEY", &key), ("DOCKER_HOST", docker_host)],
    );
    holder.wait_status(id, "standby", Duration::from_secs(20));
    let held = holder.show(id)["hub"].clone();
    outpost_tests::wait_for(
        Duration::from_secs(15),
        "the other hub to see the device held",
        || (entry.show(id)["hub"] == held).then_some(()),
    );
    let docker = DockerCli::for_endpoint(&entry, id);
    Device {
        hub: holder,
        agent,
        id,
        docker,
        _relay: Some((entry, db)),
    }
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// How long a streaming command may take to print its next expected line: far beyond the
/// sub-second the local engine and loopback link need, so only a broken stream reaches it.
const NEXT_LINE: Duration = Duration::from_secs(30);

/// A streaming command's stdout, read line by line on a thread so that every read is bounded:
/// a stream that stops delivering fails the test with what it was waiting for, never hangs it.
struct Lines(mpsc::Receiver<String>);

impl Lines {
    fn of(stdout: impl Read + Send + 'static) -> Self {
        let (send, receive) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        Self(receive)
    }

    /// The next line, within [`NEXT_LINE`].
    fn next(&self, what: &str) -> String {
        match self.0.recv_timeout(NEXT_LINE) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("no line within {NEXT_LINE:?} while waiting for {what}")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("the stream ended while waiting for {what}")
            }
        }
    }

    /// Skips lines until one equal to `wanted`; returns the lines skipped.
    fn until(&self, wanted: &str) -> Vec<String> {
        let mut skipped = Vec::new();
        loop {
            let line = self.next(&format!("`{wanted}` (after {skipped:?})"));
            if line == wanted {
                return skipped;
            }
            skipped.push(line);
        }
    }
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn version_info_and_ps_show_the_remote_engine() {
    let d = device();
    let version = d.docker.ok(&["version", "--format", "{{.Server.Version}}"]);
    let direct_version =
        String::from_utf8_lossy(&direct(&["version", "--format", "{{.Server.Version}}"]).stdout)
            .into_owned();
    assert_eq!(version.trim(), direct_version.trim());
    assert!(d.docker.ok(&["info"]).contains("Server Version"));
    let name = unique("ps");
    let mut cleanup = Cleanup::default();
    cleanup.add(&name);
    assert!(direct(&["create", "--name", &name, TEST_IMAGE, "true"])
        .status
        .success());
    assert!(d
        .docker
        .ok(&["ps", "-a", "--format", "{{.Names}}"])
        .lines()
        .any(|l| l == name));
}

#[test]
fn run_detached_then_remove_acts_on_the_engine() {
    let d = device();
    let container = d.docker.start("run-d", &["sleep", "300"]);
    let name = container.name.clone();
    let state = direct(&["inspect", "--format", "{{.State.Running}}", &name]);
    assert_eq!(String::from_utf8_lossy(&state.stdout).trim(), "true");
    d.docker.ok(&["rm", "-f", &name]);
    assert!(
        !direct(&["inspect", &name]).status.success(),
        "container still exists"
    );
}

#[test]
fn run_rm_prints_the_container_output() {
    let d = device();
    let out = d
        .docker
        .ok(&["run", "--rm", TEST_IMAGE, "echo", "hello from the device"]);
    assert_eq!(out, "hello from the device\n");
}

#[test]
fn logs_follow_delivers_lines_while_the_container_writes() {
    let d = device();
    let container = d.docker.start(
        "logs",
        &[
            "sh",
            "-c",
            "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.3; done",
        ],
    );
    let name = container.name.clone();
    let mut follower = d.docker.spawn(&["logs", "-f", &name]);
    let lines = Lines::of(follower.stdout.take().unwrap());
    assert_eq!(lines.next("line 0"), "line 0");
    // Later lines are written after `logs -f` started: they arrive as the container writes them.
    for expected in 1..6 {
        let expected = format!("line {expected}");
        assert_eq!(lines.next(&expected), expected);
    }
    follower.kill().unwrap();
    follower.wait().unwrap();
}

#[test]
fn exec_with_piped_stdin_returns_every_byte() {
    let d = device();
    let container = d.docker.start("exec", &["sleep", "300"]);
    let name = container.name.clone();
    assert_eq!(
        d.docker.ok(&["exec", &name, "echo", "plain exec"]),
        "plain exec\n"
    );
    let input = random_bytes(300_000, 7);
    let out = d.docker.with_stdin(&["exec", "-i", &name, "cat"], &input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), input.len());
    assert!(out.stdout == input, "exec -i output differs from its input");
}

#[test]
fn run_interactive_with_piped_stdin_returns_every_byte() {
    let d = device();
    let input = random_bytes(200_000, 11);
    let out = d
        .docker
        .with_stdin(&["run", "-i", "--rm", TEST_IMAGE, "cat"], &input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout == input,
        "run -i output differs from its input ({} vs {} bytes)",
        out.stdout.len(),
        input.len()
    );
}

#[test]
fn attach_carries_stdin_and_stdout_of_a_running_container() {
    let d = device();
    // `-i`: the container keeps its stdin open for the attach to write into.
    let name = unique("attach");
    let _container = Container { name: name.clone() };
    d.docker.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        &name,
        TEST_IMAGE,
        "sh",
        "-c",
        "read line; echo got:$line",
    ]);
    // Keep stdin open until the answer is back: the docker CLI stops reading the container's output
    // as soon as its stdin closes (straight to the engine as well), so closing early races.
    let mut attach = d
        .docker
        .command(&["attach", &name])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = attach.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"through the hub\n").unwrap();
    let lines = Lines::of(attach.stdout.take().unwrap());
    assert_eq!(lines.next("the echoed line"), "got:through the hub");
    drop(stdin);
    assert!(attach.wait().unwrap().success());
}

#[test]
fn events_stream_reports_a_container_start() {
    let d = device();
    let name = unique("events");
    let mut cleanup = Cleanup::default();
    cleanup.add(&name);
    // Events since a second before the container exists: whether the stream is established
    // before `docker run` or after it, the engine sends the create (live or replayed), so the
    // test needs no guess at when the stream is up.
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() - Duration::from_secs(1);
    let mut events = d.docker.spawn(&[
        "events",
        "--since",
        &since.as_secs().to_string(),
        "--filter",
        &format!("container={name}"),
        "--format",
        "{{.Action}}",
    ]);
    let lines = Lines::of(events.stdout.take().unwrap());
    direct(&["run", "--name", &name, TEST_IMAGE, "true"]);
    assert_eq!(lines.next("the create event"), "create");
    // The stream has delivered, so it is up: an event from now on must arrive live.
    direct(&["rm", &name]);
    lines.until("destroy");
    events.kill().unwrap();
    events.wait().unwrap();
}

#[test]
fn stats_without_streaming_reports_the_container() {
    let d = device();
    let container = d.docker.start("stats", &["sleep", "300"]);
    let name = container.name.clone();
    let out = d.docker.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}}",
        &name,
    ]);
    assert_eq!(out.trim(), format!("{name} 1"));
}

#[test]
fn cp_copies_files_both_ways_intact() {
    let d = device();
    let container = d.docker.start("cp", &["sleep", "300"]);
    let name = container.name.clone();
    let tmp = tempfile::tempdir().unwrap();
    let upload = tmp.path().join("upload.bin");
    std::fs::write(&upload, random_bytes(1_500_000, 3)).unwrap();
    d.docker.ok(&[
        "cp",
        upload.to_str().unwrap(),
        &format!("{name}:/tmp/upload.bin"),
    ]);
    let inside = d
        .docker
        .ok(&["exec", &name, "sha256sum", "/tmp/upload.bin"]);
    assert_eq!(
        inside.split_whitespace().next().unwrap(),
        sha256_of(&upload)
    );
    let download = tmp.path().join("download.bin");
    d.docker.ok(&[
        "cp",
        &format!("{name}:/tmp/upload.bin"),
        download.to_str().unwrap(),
    ]);
    assert_eq!(sha256_of(&download), sha256_of(&upload));
}

#[test]
fn save_and_load_of_a_multi_megabyte_image_keep_its_digest() {
    let d = device();
    let tag = format!("{}:v1", unique("big"));
    let mut cleanup = Cleanup::default();
    cleanup.add(&tag);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("blob.bin"), random_bytes(6_000_000, 5)).unwrap();
    std::fs::write(
        tmp.path().join("Dockerfile"),
        format!("FROM {TEST_IMAGE}\nCOPY blob.bin /blob.bin\n"),
    )
    .unwrap();
    let built = direct(&["build", "-q", "-t", &tag, tmp.path().to_str().unwrap()]);
    assert!(built.status.success(), "{}", text(&built));
    let id =
        String::from_utf8_lossy(&direct(&["image", "inspect", "--format", "{{.Id}}", &tag]).stdout)
            .trim()
            .to_owned();

    let archive = tmp.path().join("image.tar");
    d.docker
        .ok(&["save", "-o", archive.to_str().unwrap(), &tag]);
    assert!(std::fs::metadata(&archive).unwrap().len() > 6_000_000);
    assert!(direct(&["rmi", &tag]).status.success());
    let loaded = d.docker.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(loaded.contains(&tag), "{loaded}");
    let after =
        String::from_utf8_lossy(&direct(&["image", "inspect", "--format", "{{.Id}}", &tag]).stdout)
            .trim()
            .to_owned();
    assert_eq!(after, id);
}

#[test]
fn build_with_a_small_context_produces_a_working_image() {
    let d = device();
    let tag = format!("{}:v1", unique("build"));
    let mut cleanup = Cleanup::default();
    cleanup.add(&tag);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("greeting.txt"), "built through the hub\n").unwrap();
    std::fs::write(
        tmp.path().join("Dockerfile"),
        format!("FROM {TEST_IMAGE}\nCOPY greeting.txt /greeting.txt\nRUN cat /greeting.txt\n"),
    )
    .unwrap();
    d.docker
        .ok(&["build", "-t", &tag, tmp.path().to_str().unwrap()]);
    assert_eq!(
        direct(&["run", "--rm", &tag, "cat", "/greeting.txt"]).stdout,
        b"built through the hub\n"
    );
}

#[test]
fn a_dead_docker_socket_on_the_device_gives_a_clear_error() {
    let d = device_on("unix:///nonexistent/docker.sock");
    let out = d.docker.run(&["ps"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not reachable at unix:///nonexistent/docker.sock"),
        "{}",
        text(&out)
    );
    // The device itself stays connected and manageable.
    assert_ne!(d.hub.show(d.id)["status"], "offline");
}

#[test]
fn a_killed_logs_follower_releases_its_stream_on_both_sides() {
    let d = device();
    let container = d.docker.start(
        "release",
        &["sh", "-c", "while true; do echo tick; sleep 0.2; done"],
    );
    let name = container.name.clone();
    let mut follower = d.docker.spawn(&["logs", "-f", &name]);
    let lines = Lines::of(follower.stdout.take().unwrap());
    assert_eq!(lines.next("the first tick"), "tick");
    assert_eq!(d.hub.show(d.id)["proxy_streams"], 1);
    follower.kill().unwrap();
    follower.wait().unwrap();
    outpost_tests::wait_for(
        Duration::from_secs(10),
        "the hub to release the stream",
        || (d.hub.show(d.id)["proxy_streams"] == 0).then_some(()),
    );
    outpost_tests::wait_for(
        Duration::from_secs(10),
        "the agent to close the engine connection",
        || {
            d.agent
                .log()
                .lines()
                .last_matching("proxy stream closed")
                .filter(|l| l.ends_with("open=0"))
                .map(|_| ())
        },
    );
}

trait LastMatching<'a> {
    fn last_matching(self, needle: &str) -> Option<&'a str>;
}

impl<'a, I: Iterator<Item = &'a str>> LastMatching<'a> for I {
    fn last_matching(self, needle: &str) -> Option<&'a str> {
        self.filter(|l| l.contains(needle)).last()
    }
}

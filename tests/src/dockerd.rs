//! More real engines: extra `dockerd`s (Debian's docker.io, the same binary as the main engine on
//! [`DOCKER_SOCKET`]) for tests that need several devices on one machine, each with an engine of
//! its own. Several agents applying the same Compose project to one engine would fight over its
//! container names; with one engine each, every agent is a device.
//!
//! Each engine runs in a network namespace of its own with only loopback (as
//! `scripts/docker-setup.sh` runs the main one), with its own data root, exec root (and so its own
//! containerd), pid file and socket, no default bridge and no firewall rules. Its Compose networks
//! come from `198.18.X.0/20` (`/24`s), X distinct per instance: test traffic stays on loopback or
//! in 198.18.0.0/16 (the main engine has 198.19.0.0/16). The test image is loaded into it from
//! the main engine, so nothing is pulled.
//!
//! Where it lives: `/tmp/outpost-dockerd/NN` (short, since a unix socket path has 108 bytes), NN
//! a slot in 0..32 that also picks the address pool. A slot is claimed by renaming a directory
//! that already names its owner (the test process) into place, so two test processes never share
//! one; a slot whose owner is dead (a test killed before its cleanup ran) is swept — the engine,
//! its containerd, shims and containers killed, its mounts undone, the directory removed — and
//! reused. Dropping a [`Dockerd`] removes its containers and networks, stops it (SIGTERM, then
//! SIGKILL) and removes its directory.
//!
//! [`Dockerd::start_in_netns`] (`dockerd/netns.rs`) runs one in an existing namespace instead
//! (a rig's agent side), with extra flags and a pool clear of the rig's addresses.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::docker::{DOCKER_SOCKET, TEST_IMAGE};
use crate::wait_for_result;

mod netns;

/// Where the slots are.
const BASE: &str = "/tmp/outpost-dockerd";
/// Slots, one `/20` of 198.18.0.0/16 each (the main engine's networks come from 198.19.0.0/16,
/// `scripts/docker-setup.sh`).
const SLOTS: u32 = 16;
/// How long an engine may take to answer after it starts.
const READY: Duration = Duration::from_secs(60);
/// How long it may take to stop after SIGTERM (its containers are removed first).
const STOP: Duration = Duration::from_secs(20);

/// A running extra `dockerd`; stopped and removed when dropped.
#[derive(Debug)]
pub struct Dockerd {
    child: Option<Child>,
    root: PathBuf,
    slot: u32,
    /// Where it runs: `None` in a namespace of its own, else an existing one.
    place: Option<netns::Place>,
}

impl Dockerd {
    /// Start one engine with the test image loaded; panics (with its log) if it does not answer.
    pub fn start() -> Self {
        Self::launch(None)
    }

    fn launch(place: Option<netns::Place>) -> Self {
        let (root, slot) = claim_slot();
        let mut engine = Self {
            child: None,
            root,
            slot,
            place,
        };
        engine.child = Some(engine.spawn());
        engine.wait_ready();
        engine.load_test_image();
        engine
    }

    /// Start `count` engines side by side.
    pub fn start_many(count: usize) -> Vec<Self> {
        std::thread::scope(|scope| {
            let starting: Vec<_> = (0..count).map(|_| scope.spawn(Self::start)).collect();
            starting
                .into_iter()
                .map(|s| s.join().expect("an engine started"))
                .collect()
        })
    }

    /// Its address for `DOCKER_HOST`: `unix:///tmp/outpost-dockerd/NN/docker.sock`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The pool its networks' subnets come from (`198.18.X.0/20`).
    pub fn address_pool(&self) -> String {
        match self.place {
            None => pool(self.slot),
            Some(_) => netns::pool(self.slot),
        }
    }

    /// A `docker` CLI command against this engine.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("docker");
        command
            .args(args)
            .env("DOCKER_HOST", self.host())
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .env("DOCKER_BUILDKIT", "0");
        command
    }

    /// Run the `docker` CLI against this engine.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .expect("the docker CLI is on PATH")
    }

    /// Run the `docker` CLI against this engine, assert success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker -H {} {args:?}: {}",
            self.host(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The engine's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("dockerd.log")).unwrap_or_default()
    }

    fn socket(&self) -> PathBuf {
        self.root.join("docker.sock")
    }

    /// `dockerd` in a new network namespace with loopback up (and forwarding on there only, which
    /// keeps the engine from warning on every `run`), or in its [`netns::Place`].
    fn spawn(&self) -> Child {
        let config = self.root.join("daemon.json");
        // Its own (empty) configuration: nothing from /etc/docker/daemon.json.
        std::fs::write(&config, "{}\n").expect("daemon.json");
        let log = std::fs::File::create(self.root.join("dockerd.log")).expect("dockerd log");
        let path = |name: &str| self.root.join(name).display().to_string();
        let mut flags = vec![
            format!("--config-file={}", config.display()),
            format!("--data-root={}", path("data")),
            format!("--exec-root={}", path("exec")),
            format!("--pidfile={}", path("dockerd.pid")),
            format!("--host={}", self.host()),
            "--bridge=none".to_owned(),
            "--iptables=false".to_owned(),
            "--ip-forward=false".to_owned(),
            "--ip-masq=false".to_owned(),
            format!(
                "--default-address-pool=base={},size=24",
                self.address_pool()
            ),
            "--exec-opt=native.cgroupdriver=cgroupfs".to_owned(),
        ];
        if has_ip6tables_flag() {
            flags.push("--ip6tables=false".to_owned());
        }
        let mut command = match &self.place {
            None => {
                let mut unshare = Command::new("unshare");
                unshare.arg("--net");
                unshare
            }
            Some(place) => {
                flags.extend(place.extra.iter().cloned());
                place.enter()
            }
        };
        command
            .args(["sh", "-c"])
            .arg(
                "ip link set lo up && echo 1 >/proc/sys/net/ipv4/ip_forward || exit 70; \
                 exec dockerd \"$@\"",
            )
            .arg("dockerd")
            .args(&flags)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dockerd log"))
            .stderr(log)
            .spawn()
            .expect("start dockerd (docker.io) in a network namespace")
    }

    fn wait_ready(&mut self) {
        let child = self.child.as_mut().expect("started");
        let host = format!("unix://{}", self.root.join("docker.sock").display());
        let answered = wait_for_result(READY, || {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(status));
            }
            let version = Command::new("docker")
                .args(["-H", &host, "version", "--format", "{{.Server.Version}}"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            version.is_ok_and(|s| s.success()).then_some(Ok(()))
        });
        match answered {
            Some(Ok(())) => {}
            Some(Err(status)) => panic!(
                "dockerd on {host} exited ({status}) before it answered:\n{}",
                tail(&self.log())
            ),
            None => panic!(
                "dockerd on {host} did not answer within {READY:?}:\n{}",
                tail(&self.log())
            ),
        }
    }

    /// `docker save TEST_IMAGE | docker -H … load`.
    fn load_test_image(&self) {
        let mut save = Command::new("docker")
            .args(["save", TEST_IMAGE])
            .env("DOCKER_HOST", format!("unix://{DOCKER_SOCKET}"))
            .env_remove("DOCKER_CONTEXT")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker save");
        let archive = save.stdout.take().expect("docker save's stdout");
        let loaded = self
            .command(&["load", "--quiet"])
            .stdin(archive)
            .output()
            .expect("docker load");
        let saved = save.wait_with_output().expect("docker save");
        assert!(
            saved.status.success() && loaded.status.success(),
            "loading {TEST_IMAGE} into {}: save: {} load: {}",
            self.host(),
            String::from_utf8_lossy(&saved.stderr),
            String::from_utf8_lossy(&loaded.stderr)
        );
    }

    /// Remove every container (no stop timeouts to wait out) and every unused network.
    fn remove_contents(&self) {
        let listed = self.docker(&["ps", "-aq"]);
        let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids.iter().map(String::as_str));
            let _ = self.docker(&args);
        }
        let _ = self.docker(&["network", "prune", "-f"]);
    }

    /// SIGTERM, wait up to [`STOP`], then SIGKILL.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if child.try_wait().ok().flatten().is_none() {
            signal("TERM", &[child.id()]);
            let stopped = wait_for_result(STOP, || child.try_wait().ok().flatten());
            if stopped.is_none() {
                let _ = child.kill();
            }
        }
        let _ = child.wait();
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.remove_contents();
        }
        self.stop();
        // Whatever outlived it (its containerd and shims if it was killed), then its mounts.
        sweep(&self.root, &self.root);
    }
}

/// `198.18.0.0/16` as 16 `/20`s: slot 3 is `198.18.48.0/20`.
fn pool(slot: u32) -> String {
    format!("198.18.{}.0/20", slot * 16)
}

/// Whether this dockerd knows `--ip6tables` (20.10 does).
fn has_ip6tables_flag() -> bool {
    static KNOWN: OnceLock<bool> = OnceLock::new();
    *KNOWN.get_or_init(|| {
        Command::new("dockerd")
            .arg("--help")
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).contains("--ip6tables"))
            .unwrap_or(false)
    })
}

/// A fresh directory named after this process, renamed onto the first free slot; a slot whose
/// owner died is swept first.
fn claim_slot() -> (PathBuf, u32) {
    std::fs::create_dir_all(BASE).expect("dockerd base directory");
    sweep_dead_leftovers();
    let me = std::process::id();
    let mine = scratch("claim");
    std::fs::create_dir(&mine).expect("a claim directory");
    std::fs::write(mine.join("owner"), me.to_string()).expect("owner file");
    let first = me % SLOTS;
    for slot in (0..SLOTS).map(|i| (first + i) % SLOTS) {
        let root = Path::new(BASE).join(format!("{slot:02}"));
        for _ in 0..2 {
            if std::fs::rename(&mine, &root).is_ok() {
                return (root, slot);
            }
            if !sweep_if_orphaned(&root) {
                break;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&mine);
    panic!("all {SLOTS} dockerd slots under {BASE} are in use by live test processes");
}

/// `BASE/.{kind}-{pid}-{n}`: a name no other claim or sweep uses.
fn scratch(kind: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Path::new(BASE).join(format!(".{kind}-{}-{n}", std::process::id()))
}

fn is_alive(pid: &str) -> bool {
    pid.trim()
        .parse::<u32>()
        .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

/// Whatever a dead test process left behind: its slots (engine and all), and its claim and
/// trash directories.
fn sweep_dead_leftovers() {
    for entry in std::fs::read_dir(BASE).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_ok() {
            sweep_if_orphaned(&entry.path());
            continue;
        }
        let pid = name
            .strip_prefix(".claim-")
            .or_else(|| name.strip_prefix(".trash-"))
            .and_then(|rest| rest.split('-').next());
        if pid.is_some_and(|pid| !is_alive(pid)) {
            sweep(&entry.path(), &entry.path());
        }
    }
}

/// Sweep the slot at `root` if its owner process is gone; whether it did.
fn sweep_if_orphaned(root: &Path) -> bool {
    let owner = || std::fs::read_to_string(root.join("owner")).unwrap_or_default();
    if is_alive(&owner()) {
        return false;
    }
    // Its engine first, while no live owner can hold the slot; then the directory is renamed
    // out of the slot (only one sweeper wins that) and removed.
    kill_started_from(root);
    let trash = scratch("trash");
    if std::fs::rename(root, &trash).is_ok() {
        sweep(&trash, root);
    }
    true
}

/// Kill whatever was started from `named` (its engine and what that started), undo the mounts
/// under `current` (where that directory is now), remove it.
fn sweep(current: &Path, named: &Path) {
    kill_started_from(named);
    let marker = format!("{}/", current.display());
    for mount in mounts_under(&marker) {
        let _ = Command::new("umount").args(["-l", &mount]).status();
    }
    let _ = std::fs::remove_dir_all(current);
}

/// Kill every process tree whose root's command line names `dir` (dockerd, containerd and the
/// shims do, by their flags; containers are below the shims).
fn kill_started_from(dir: &Path) {
    let marker = format!("{}/", dir.display());
    let roots: Vec<u32> = proc_pids()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|line| String::from_utf8_lossy(&line).contains(&marker))
        })
        .collect();
    if roots.is_empty() {
        return;
    }
    let all = with_descendants(&roots);
    signal("KILL", &all);
    wait_for_result(Duration::from_secs(5), || {
        all.iter()
            .all(|pid| !Path::new(&format!("/proc/{pid}")).exists())
            .then_some(())
    });
}

fn proc_pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
}

/// `roots` and every process below them.
fn with_descendants(roots: &[u32]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for pid in proc_pids() {
        if let Some(parent) = parent_of(pid) {
            children.entry(parent).or_default().push(pid);
        }
    }
    let mut seen: HashSet<u32> = HashSet::new();
    let mut todo = roots.to_vec();
    while let Some(pid) = todo.pop() {
        if seen.insert(pid) {
            todo.extend(children.get(&pid).into_iter().flatten().copied());
        }
    }
    seen.into_iter().collect()
}

/// The parent pid from `/proc/PID/stat` (the field after the parenthesised command).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Mount points under `marker`, deepest first.
fn mounts_under(marker: &str) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<String> = table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| point.starts_with(marker) || format!("{point}/") == marker)
        .map(str::to_owned)
        .collect();
    found.sort_by_key(|point| std::cmp::Reverse(point.len()));
    found
}

fn signal(name: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

/// The last lines of a log, for a failure message.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_stay_inside_198_18_0_0_16_and_do_not_overlap() {
        assert_eq!(pool(0), "198.18.0.0/20");
        assert_eq!(pool(1), "198.18.16.0/20");
        assert_eq!(pool(SLOTS - 1), "198.18.240.0/20");
        let all: HashSet<String> = (0..SLOTS).map(pool).collect();
        assert_eq!(all.len(), SLOTS as usize);
    }

    #[test]
    fn socket_paths_fit_a_sockaddr_un() {
        let longest = format!(
            "{BASE}/{:02}/exec/containerd/containerd.sock.ttrpc",
            SLOTS - 1
        );
        assert!(longest.len() < 108, "{longest}");
    }
}

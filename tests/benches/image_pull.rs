//! An image over bad links (issue #16): the device's engine pulls a 50 MB image through Outpost
//! (its agent's loopback registry, the hub's mirror, QUIC fetch streams that resume) against the
//! same engine pulling it straight from the registry (HTTP over TCP, what a device does without
//! Outpost), across the same emulated link, side by side in one run. Prints one table; run by
//! hand, as root, from the workspace root:
//!
//! ```sh
//! cargo bench -p outpost-tests --bench image_pull -- \
//!     [--profiles geo-satellite,lte,flaky-cellular] [--size-mb 50] [--samples 1] [--timeout-s 600]
//! cargo bench -p outpost-tests --bench image_pull -- --resume [--timeout-s 1200]
//! ```
//!
//! `--resume` runs the issue's resume case instead: a 100 MB image over `flaky-cellular` with its
//! outage made 20 s of every 60 s, the agent killed once mid-layer (40 MB in) and started again;
//! it prints the time and the bytes the kernel counted on the device's link over the blobs.
//!
//! Each profile gets a fresh rig (`netem/rig.sh`): Debian's `docker-registry` and the hub
//! (`--registry`) on its hub side, a `dockerd` and the agent on its agent side, as in
//! `tests/tests/agent_registry.rs`. The image (a random, incompressible layer on the test image)
//! is built and pushed while the link is transparent, and ordered onto the device (an `image pull`
//! run to its end: the hub's mirror serves a device only what it was ordered); then the profile
//! is set and each sample pulls it both ways, Outpost first, with the image removed from the
//! engine (and the agent's blob cache emptied) before each pull. The samples share the agent's
//! connection, so only the first pull starts from the transport's first measure of the link (its
//! startup train); the later ones start at the rate the first measured, and the table shows the
//! two apart. Hub and agent run the link's transport profile (lan, cellular, satellite), as
//! `link_profiles` picks it. On `lte`, `docker ps` through the hub is timed idle and while
//! Outpost's pull runs (median of three each), once per sample, for the "interactive first"
//! bound.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)] // wall-clock measurement; bench code

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use outpost_tests::docker::{require_engine, DockerCli};
use outpost_tests::dockerd::Dockerd;
use outpost_tests::registry::{push_random_image, wait_granted, Registry};
use outpost_tests::rig::{Rig, HUB_IP};
use outpost_tests::{wait_for, Agent, AgentOptions, Hub};

const LOOPBACK: &str = "127.0.0.1:5380";
const REPO: &str = "outpost/bench";

/// Command-line options.
struct Options {
    profiles: Vec<String>,
    size_mb: u64,
    samples: usize,
    timeout: Duration,
    resume: bool,
}

impl Options {
    fn parse() -> Self {
        let args: Vec<String> = std::env::args().collect();
        let value = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        let number = |name: &str, default: u64| {
            value(name).map_or(default, |v| v.parse().expect("a number"))
        };
        Self {
            profiles: value("--profiles")
                .unwrap_or_else(|| "geo-satellite,lte,flaky-cellular".to_owned())
                .split(',')
                .map(str::to_owned)
                .collect(),
            size_mb: number("--size-mb", 50),
            samples: number("--samples", 1) as usize,
            timeout: Duration::from_secs(number("--timeout-s", 600)),
            resume: args.iter().any(|a| a == "--resume"),
        }
    }
}

/// One profile's figures.
struct Row {
    profile: String,
    down_mbit: f64,
    outpost: Vec<Option<Duration>>,
    direct: Vec<Option<Duration>>,
    /// On `lte`: `docker ps` through the hub, (idle, during a pull), once per sample.
    ps: Vec<(Duration, Duration)>,
}

/// The QUIC transport profile for a link, by its round trip, as `link_profiles` picks it.
fn transport_for(profile: &str) -> &'static str {
    match profile {
        "transparent" => "lan",
        "geo-satellite" | "edge-2g" => "satellite",
        _ => "cellular",
    }
}

/// Order the image onto device `id` (the hub's mirror serves a device only what it was ordered):
/// an `image pull`, run to its end here over the transparent link (so the hub's mirror holds the
/// image before the samples, which pull it by hand under that order).
fn order_image(hub: &Hub, id: u64) {
    let (image, endpoint) = (format!("{REPO}:1"), id.to_string());
    let out = hub.cli(&["image", "pull", &image, "--endpoint", &endpoint, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let job = created["id"].to_string();
    wait_for(Duration::from_secs(600), "the ordered pull", || {
        let detail: serde_json::Value = hub.cli_json(&["job", "show", &job, "--json"]);
        let state = detail["devices"][0]["state"].as_str()?.to_owned();
        assert_ne!(state, "failed", "{detail}");
        (state == "succeeded").then_some(())
    });
}

fn through() -> String {
    format!("{LOOPBACK}/{REPO}:1")
}

fn direct() -> String {
    format!("{}/{REPO}:1", upstream())
}

fn upstream() -> String {
    format!("{HUB_IP}:5000")
}

fn profile_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../netem/profiles/{name}.toml"))
}

/// The profile's downlink rate in Mbit/s, from its file (`[down] rate = "20mbit"`).
fn down_mbit(name: &str) -> f64 {
    let text = std::fs::read_to_string(profile_path(name)).unwrap();
    let down = text.split("[down]").nth(1).unwrap_or_default();
    down.lines()
        .find_map(|l| l.trim().strip_prefix("rate = \""))
        .and_then(|r| r.strip_suffix("mbit\""))
        .and_then(|r| r.parse().ok())
        .unwrap_or(f64::NAN)
}

fn start_agent(
    rig: &Rig,
    dir: &Path,
    env: &[(&'static str, String)],
    transport: &'static str,
) -> Agent {
    let options = AgentOptions {
        netns: Some(rig.netns("agent")),
        transport,
    };
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Agent::start_with(dir, &options, &env)
}

/// A rig with a registry holding the image, a hub mirroring it and an agent with its engine.
struct Site {
    agent: Agent,
    agent_dir: PathBuf,
    agent_env: Vec<(&'static str, String)>,
    transport: &'static str,
    hub: Hub,
    id: u64,
    engine: Dockerd,
    _registry: Registry,
    rig: Rig,
    dir: tempfile::TempDir,
}

impl Site {
    fn start(size_mb: u64, transport: &'static str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rig = Rig::up(
            &format!("oimg{}", std::process::id() % 100_000),
            "transparent",
        );
        let (registry, engine) = Registry::with_engine(&rig, &upstream());
        let image = format!("{}/{REPO}:1", upstream());
        let layer = [("/blob", size_mb * 1_000_000)];
        push_random_image(&engine, &dir.path().join("image"), &image, &layer);
        let agent_addr = format!("{HUB_IP}:4433");
        let hub = Hub::start_in_netns(
            &rig.netns("hub"),
            dir.path().join("hub"),
            &agent_addr,
            &format!("{HUB_IP}:9443"),
            &[
                "--public-addr",
                &agent_addr,
                "--registry",
                &format!("http://{}", upstream()),
                "--transport",
                transport,
            ],
        );
        let (id, key) = hub.create_endpoint("bench", &[]);
        let agent_dir = dir.path().join("agent");
        let agent_env = vec![
            ("EDGE_KEY", key),
            ("DOCKER_HOST", engine.host()),
            ("OUTPOST_REGISTRY_LISTEN", LOOPBACK.to_owned()),
        ];
        let agent = start_agent(&rig, &agent_dir, &agent_env, transport);
        hub.wait_status(id, "standby", Duration::from_secs(30));
        wait_granted(&agent);
        order_image(&hub, id);
        Self {
            agent,
            agent_dir,
            agent_env,
            transport,
            hub,
            id,
            engine,
            _registry: registry,
            rig,
            dir,
        }
    }

    /// Kill the agent and start it again: a device that lives on the link the rig emulates now
    /// dials over it, so its connection's round trip is that link's from the start (the set-up's
    /// image push ran over the transparent link).
    fn restart_agent(&mut self) {
        self.agent.kill();
        self.agent = start_agent(&self.rig, &self.agent_dir, &self.agent_env, self.transport);
        wait_for(Duration::from_secs(120), "the registry grant", || {
            self.agent
                .log()
                .contains("the hub serves its registry mirror")
                .then_some(())
        });
    }

    /// Nothing of the image on the device: under neither name in the engine (the layers go with
    /// the last), not in the agent's blob cache.
    fn forget(&self) {
        for name in [through(), direct()] {
            let _ = self.engine.docker(&["rmi", &name]);
        }
        let blobs = self.agent_dir.join("registry").join("blobs");
        if let Ok(entries) = std::fs::read_dir(&blobs) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    fn pull(&self, name: &str) -> Child {
        self.engine
            .command(&["pull", name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Time a pull of `name`, or `None` past `timeout`.
    fn timed_pull(&self, name: &str, timeout: Duration) -> Option<Duration> {
        self.forget();
        let started = Instant::now();
        let mut child = self.pull(name);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success().then(|| started.elapsed());
            }
            if started.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The median of three `docker ps` through the hub.
    fn ps(&self) -> Duration {
        let docker = DockerCli::for_endpoint(&self.hub, self.id);
        let mut times: Vec<Duration> = (0..3)
            .map(|_| {
                let started = Instant::now();
                docker.ok(&["ps"]);
                started.elapsed()
            })
            .collect();
        times.sort();
        times[1]
    }

    /// `docker ps` idle, then while Outpost's pull runs.
    fn ps_during_pull(&self, name: &str) -> (Duration, Duration) {
        self.forget();
        let idle = self.ps();
        let mut child = self.pull(name);
        let partial = || {
            std::fs::read_dir(self.agent_dir.join("registry").join("blobs"))
                .ok()?
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
                .find_map(|e| (e.metadata().ok()?.len() > 5_000_000).then_some(()))
        };
        wait_for(Duration::from_secs(120), "the layer to flow", partial);
        let busy = self.ps();
        let sender = self.hub.show(self.id)["sender"].clone();
        let _ = child.wait();
        eprintln!("the hub's sender while the layer flowed: {sender}");
        (idle, busy)
    }
}

impl Site {
    /// Bytes the kernel counted on the device's side of the link: (received + sent, frames).
    fn link_bytes(&self) -> (u64, u64) {
        let read = |name: &str| -> u64 {
            let out = outpost_tests::command_in(Some(&self.rig.netns("agent")), "cat")
                .arg(format!("/sys/class/net/eth0/statistics/{name}"))
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        (
            read("rx_bytes") + read("tx_bytes"),
            read("rx_packets") + read("tx_packets"),
        )
    }

    /// What the hub's sender to the device shows (how startup ended, searches) and the link's
    /// downlink counters so far: a slow pull is explained by these.
    fn print_sender(&self, when: &str) {
        let sender = self.hub.show(self.id)["sender"].clone();
        let counters = self.rig.ctl(&["counters"]);
        let down = counters
            .lines()
            .find(|l| l.starts_with("down"))
            .unwrap_or("");
        eprintln!("{when}: sender {sender}; link {down}");
    }

    /// The largest partial blob on the device.
    fn partial_len(&self) -> Option<u64> {
        std::fs::read_dir(self.agent_dir.join("registry").join("blobs"))
            .ok()?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
            .filter_map(|e| e.metadata().ok().map(|m| m.len()))
            .max()
    }

    /// The complete blobs on the device, in bytes.
    fn complete_bytes(&self) -> u64 {
        std::fs::read_dir(self.agent_dir.join("registry").join("blobs"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| !e.file_name().to_string_lossy().ends_with(".partial"))
                    .filter_map(|e| e.metadata().ok().map(|m| m.len()))
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// What the resume scenario measured.
struct Resumed {
    took: Option<Duration>,
    killed_at: u64,
    blobs: u64,
    payload: u64,
    frames_bytes: u64,
}

/// `flaky-cellular` with its outage made 20 s of every 60 s: a 100 MB image through Outpost, the
/// agent killed (as by a power cut) once mid-layer and started again; the kernel's count of the
/// device's link against the blobs that crossed.
fn run_resume(options: &Options) -> Resumed {
    let mut site = Site::start(100, transport_for("flaky-cellular"));
    let profile = std::fs::read_to_string(profile_path("flaky-cellular")).unwrap();
    let harsher = profile.replace("duration = \"5s\"", "duration = \"20s\"");
    assert_ne!(profile, harsher, "the profile names its outage");
    let path = site.dir.path().join("flaky-20s.toml");
    std::fs::write(&path, harsher).unwrap();
    site.rig.ctl(&["profile", path.to_str().unwrap()]);
    site.restart_agent();
    site.forget();
    let before = site.link_bytes();
    let started = Instant::now();
    let mut first = site.pull(&through());
    wait_for(options.timeout, "40 MB of the layer", || {
        (site.partial_len()? >= 40_000_000).then_some(())
    });
    site.agent.kill();
    let killed_at = site.partial_len().unwrap_or(0);
    let _ = first.kill();
    let _ = first.wait();
    eprintln!("agent killed with {killed_at} bytes of the layer on disk");
    site.restart_agent();
    let mut second = site.pull(&through());
    let took = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status.success().then(|| started.elapsed());
        }
        if started.elapsed() > options.timeout {
            let _ = second.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let after = site.link_bytes();
    let frames_bytes = after.0 - before.0;
    let frames = after.1 - before.1;
    eprintln!("{}", site.rig.ctl(&["counters"]));
    Resumed {
        took,
        killed_at,
        blobs: site.complete_bytes(),
        // Ethernet 14 + IPv4 20 + UDP 8 per frame.
        payload: frames_bytes.saturating_sub(frames * 42),
        frames_bytes,
    }
}

fn run_profile(options: &Options, profile: &str) -> Row {
    let mut site = Site::start(options.size_mb, transport_for(profile));
    site.rig
        .ctl(&["profile", profile_path(profile).to_str().unwrap()]);
    site.restart_agent();
    let (through, direct) = (through(), direct());
    let mut row = Row {
        profile: profile.to_owned(),
        down_mbit: down_mbit(profile),
        outpost: Vec::new(),
        direct: Vec::new(),
        ps: Vec::new(),
    };
    for sample in 0..options.samples {
        let outpost = site.timed_pull(&through, options.timeout);
        site.print_sender("after Outpost's pull");
        let straight = site.timed_pull(&direct, options.timeout);
        site.print_sender("after the direct pull");
        eprintln!("{profile} sample {sample}: outpost {outpost:?}, direct {straight:?}");
        row.outpost.push(outpost);
        row.direct.push(straight);
    }
    if profile == "lte" {
        row.ps = (0..options.samples)
            .map(|_| site.ps_during_pull(&through))
            .collect();
    }
    eprintln!("{}", site.rig.ctl(&["counters"]));
    row
}

fn median(times: &[Option<Duration>]) -> Option<Duration> {
    let mut done: Vec<Duration> = times.iter().flatten().copied().collect();
    if done.len() < times.len() {
        return None;
    }
    done.sort();
    done.get(done.len() / 2).copied()
}

fn shown(time: Option<Duration>) -> String {
    time.map_or("timeout".to_owned(), |t| {
        format!("{:.1} s", t.as_secs_f64())
    })
}

fn main() {
    require_engine();
    let options = Options::parse();
    if options.resume {
        let resumed = run_resume(&options);
        let ratio = |bytes: u64| bytes as f64 / resumed.blobs.max(1) as f64;
        println!("\n100 MB image over flaky-cellular with a 20 s outage every 60 s, the agent killed once");
        println!(
            "| took | killed with | blobs crossed | UDP payload on the link | frames on the link |"
        );
        println!("|---:|---:|---:|---:|---:|");
        println!(
            "| {} | {:.1} MB | {:.1} MB | {:.3} x | {:.3} x |",
            shown(resumed.took),
            resumed.killed_at as f64 / 1e6,
            resumed.blobs as f64 / 1e6,
            ratio(resumed.payload),
            ratio(resumed.frames_bytes)
        );
        return;
    }
    let rows: Vec<Row> = options
        .profiles
        .iter()
        .map(|p| run_profile(&options, p))
        .collect();
    let megabits = options.size_mb as f64 * 8.0;
    println!(
        "\n{} MB image (one random layer), {} sample(s) each: Outpost's first pull on the link's \
         connection apart from the later ones (median), which start at the rate it measured",
        options.size_mb, options.samples
    );
    println!(
        "| profile | link ideal | Outpost first | % of link | Outpost later | % of link | direct pull | first ÷ direct (time) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        let ideal = megabits / row.down_mbit;
        let rate = |time: Option<Duration>| {
            time.map_or("-".to_owned(), |t| {
                format!("{:.0} %", 100.0 * ideal / t.as_secs_f64())
            })
        };
        let first = row.outpost.first().copied().flatten();
        let later = (row.outpost.len() > 1).then(|| median(&row.outpost[1..]));
        let direct = median(&row.direct);
        let ratio = match (first, direct) {
            (Some(o), Some(d)) => format!("{:.2}", o.as_secs_f64() / d.as_secs_f64()),
            (Some(_), None) => "direct timed out".to_owned(),
            _ => "-".to_owned(),
        };
        println!(
            "| {} | {ideal:.1} s | {} | {} | {} | {} | {} | {ratio} |",
            row.profile,
            shown(first),
            rate(first),
            later.map_or("-".to_owned(), shown),
            later.map_or("-".to_owned(), rate),
            shown(direct)
        );
    }
    for row in rows.iter().filter(|row| !row.ps.is_empty()) {
        let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
        let pulls: Vec<String> = row
            .ps
            .iter()
            .map(|(idle, busy)| format!("{} → {}", ms(*idle), ms(*busy)))
            .collect();
        println!(
            "\n`docker ps` through the hub on {} (median of three calls idle → during a pull, one pull each): {}",
            row.profile,
            pulls.join(", ")
        );
    }
}

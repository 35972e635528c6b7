//! What the TCP fallback costs: one device on QUIC over UDP and one on QUIC in a TLS tunnel over
//! TCP (`--tcp-fallback always`, as where UDP is blocked), side by side on the same emulated link
//! and engine, with the Docker API over TCP+TLS straight to the engine beside them. Run by hand, as
//! root, from the workspace root:
//!
//! ```sh
//! cargo bench -p outpost-tests --bench tcp_fallback -- [--profiles lte] [--size-mb 10] \
//!     [--samples 5] [--idle-s 100] [--seed 1]
//! ```
//!
//! Idle bytes are counted by nftables in the agent namespace, by protocol (UDP or TCP to the hub's
//! port 4433), so each device's cost is what crosses its link, IP headers included, with both in
//! standby over the same window (100 s by default: four of the 25 s check-ins each).
#![allow(clippy::disallowed_methods, clippy::unwrap_used)] // wall-clock measurement; bench code

#[path = "link_profiles/report.rs"]
#[allow(dead_code)] // the link bench's report; this bench uses its measures only
mod report;

use std::process::{Command, Stdio};
use std::time::Duration;

use outpost_netem::model::Capacity;
use outpost_netem::Profile;
use outpost_tests::bench_image::TestImage;
use outpost_tests::docker::{direct, require_engine, unique};
use outpost_tests::l3_paths::{start_agent_with, RigHub, TlsEngine};
use outpost_tests::l3_rig::{NsProcess, Rig, Side};
use outpost_tests::timed;
use report::{Call, Transfer};

/// Counters of the agent namespace's traffic to and from the hub's agent port, by protocol.
const COUNTERS: &str = "table inet bench_counters {\n  chain out {\n    type filter hook output priority 0; policy accept;\n    udp dport 4433 counter\n    tcp dport 4433 counter\n  }\n  chain in {\n    type filter hook input priority 0; policy accept;\n    udp sport 4433 counter\n    tcp sport 4433 counter\n  }\n}\n";

/// Quiet time before the idle window.
const SETTLE: Duration = Duration::from_secs(15);

struct Options {
    profiles: Vec<String>,
    size_mb: u64,
    samples: usize,
    idle: Duration,
    seed: u64,
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
                .unwrap_or_else(|| "lte".into())
                .split(',')
                .map(str::to_owned)
                .collect(),
            size_mb: number("--size-mb", 10),
            samples: number("--samples", 5) as usize,
            idle: Duration::from_secs(number("--idle-s", 100)),
            seed: number("--seed", 1),
        }
    }
}

/// The three ways to the engine.
#[derive(Clone, Copy)]
enum Way {
    Quic(u64),
    Tunnel(u64),
    TcpTls,
}

/// One profile's rig: a hub, two devices (QUIC, TCP tunnel) on one agent namespace and engine,
/// and the engine's TLS front. Fields drop in order, the rig last.
struct Bench {
    _agents: [NsProcess; 2],
    hub: RigHub,
    tls: TlsEngine,
    dir: tempfile::TempDir,
    rig: Rig,
    quic: u64,
    tunnel: u64,
}

impl Bench {
    fn start(profile: &str, seed: u64) -> Self {
        let rig = Rig::up(
            &format!("otb{}", std::process::id() % 100_000),
            profile,
            seed,
        );
        let dir = tempfile::tempdir().unwrap();
        let tls = TlsEngine::start(&rig, &dir.path().join("tls"));
        let hub = RigHub::start(
            &rig,
            &dir.path().join("hub"),
            &["--standby-after", "5s", "--summon-timeout", "60s"],
        );
        let (quic, quic_key) = hub.create_endpoint("on-quic");
        let (tunnel, tunnel_key) = hub.create_endpoint("on-tcp");
        let agent = |name: &str, key: &str, env: &[(&str, &str)]| {
            start_agent_with(&rig, &dir.path().join(name), key, "cellular", env)
        };
        let agents = [
            agent("quic-agent", &quic_key, &[]),
            agent(
                "tcp-agent",
                &tunnel_key,
                &[("OUTPOST_TCP_FALLBACK", "always")],
            ),
        ];
        for id in [quic, tunnel] {
            assert!(
                hub.reaches_status(id, "standby", Duration::from_secs(120)),
                "device {id} never reached standby"
            );
        }
        let bench = Self {
            _agents: agents,
            hub,
            tls,
            dir,
            rig,
            quic,
            tunnel,
        };
        bench.nft(&["-f", "-"], COUNTERS);
        bench
    }

    fn nft(&self, args: &[&str], input: &str) -> String {
        let mut child = self
            .rig
            .command(Side::Agent, "nft")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "nft {args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Bytes to and from the hub's port so far: (UDP, TCP).
    fn port_bytes(&self) -> (u64, u64) {
        let listing = self.nft(&["list", "table", "inet", "bench_counters"], "");
        let bytes = |proto: &str| -> u64 {
            listing
                .lines()
                .filter(|l| l.contains(proto) && l.contains("counter"))
                .filter_map(|l| l.split("bytes ").nth(1))
                .filter_map(|rest| rest.split_whitespace().next())
                .map(|n| n.parse::<u64>().unwrap())
                .sum()
        };
        (bytes("udp"), bytes("tcp"))
    }

    fn docker(&self, way: Way, args: &[&str]) -> Command {
        let mut command = match way {
            Way::Quic(id) | Way::Tunnel(id) => self.hub.docker(id),
            Way::TcpTls => self.tls.docker(),
        };
        command.args(args);
        command
    }

    fn latency(&self, way: Way, samples: usize) -> Call {
        let call = || {
            let run = timed::run(
                self.docker(way, &["ps", "-a"]),
                self.dir.path(),
                &unique("ps"),
                Duration::from_secs(60),
            );
            Call::from_run(&run, "CONTAINER ID")
        };
        let _ = call();
        Call::median((0..samples).map(|_| call()).collect())
    }

    fn load(&self, way: Way, image: &TestImage) -> Transfer {
        let _ = direct(&["rmi", "-f", &image.tag]);
        let run = timed::run(
            self.docker(way, &["load", "-i", image.tar.to_str().unwrap()]),
            self.dir.path(),
            &unique("load"),
            Duration::from_secs(300),
        );
        let done = run.succeeded() && run.stdout_text().contains("Loaded image");
        image.restore();
        Transfer::from_run(
            &run,
            if done { image.tar_bytes } else { 0 },
            image.tar_bytes,
        )
    }
}

/// One profile's rows: idle B/s per device, `docker ps` median, one load.
fn measure(profile: &str, options: &Options, image: &TestImage) -> Vec<[String; 4]> {
    let bench = Bench::start(profile, options.seed);
    let ways = [
        Way::Quic(bench.quic),
        Way::Tunnel(bench.tunnel),
        Way::TcpTls,
    ];
    eprintln!("[{profile}] idle window {:?}", options.idle);
    for id in [bench.quic, bench.tunnel] {
        bench
            .hub
            .reaches_status(id, "standby", Duration::from_secs(60));
    }
    // Past each session's first snapshot and the window growth after the welcome.
    std::thread::sleep(SETTLE);
    let (udp0, tcp0) = bench.port_bytes();
    std::thread::sleep(options.idle);
    let (udp1, tcp1) = bench.port_bytes();
    let per_s = |bytes: u64| format!("{:.1} B/s", bytes as f64 / options.idle.as_secs_f64());
    let mut rows = vec![[
        "idle, both ways (IP bytes)".to_owned(),
        per_s(udp1 - udp0),
        per_s(tcp1 - tcp0),
        "—".into(),
    ]];
    eprintln!("[{profile}] docker ps");
    let ps: Vec<String> = ways
        .iter()
        .map(|way| bench.latency(*way, options.samples).to_string())
        .collect();
    rows.push([
        format!("`docker ps` (median of {})", options.samples),
        ps[0].clone(),
        ps[1].clone(),
        ps[2].clone(),
    ]);
    eprintln!("[{profile}] docker load");
    let loads: Vec<String> = ways
        .iter()
        .map(|way| bench.load(*way, image).to_string())
        .collect();
    rows.push([
        format!("`docker load`, {} MB down", image.tar_bytes / 1_000_000),
        loads[0].clone(),
        loads[1].clone(),
        loads[2].clone(),
    ]);
    eprintln!("[{profile}] emulator counters:\n{}", bench.rig.counters());
    rows
}

fn down_rate(profile: &str) -> String {
    let profile = Profile::load(profile).unwrap();
    match profile.down.capacity {
        Capacity::Rate(bps) => format!("{:.1} Mbit/s down", bps as f64 / 1e6),
        _ => "trace".into(),
    }
}

fn main() {
    let options = Options::parse();
    require_engine();
    let image = TestImage::build(options.size_mb);
    for profile in &options.profiles {
        let rows = measure(profile, &options, &image);
        println!(
            "\n### `{profile}` ({}), seed {}\n",
            down_rate(profile),
            options.seed
        );
        println!("| measure | Outpost, QUIC on UDP | Outpost, TCP fallback | TCP+TLS straight to the engine |");
        println!("|---|---:|---:|---:|");
        for row in rows {
            println!("| {} | {} | {} | {} |", row[0], row[1], row[2], row[3]);
        }
    }
}

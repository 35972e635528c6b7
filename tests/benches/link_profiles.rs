//! Docker over emulated links: Outpost (hub → QUIC → agent) against the Docker API over TCP+TLS
//! straight to the engine (the best any TCP tunnel could do), across the same netem L3 link, for
//! each link profile. Prints one table per measure; run by hand, as root, from the workspace root:
//!
//! ```sh
//! cargo bench -p outpost-tests --bench link_profiles -- \
//!     [--profiles transparent,lte,...] [--size-mb 10] [--samples 5] [--idle-s 75] \
//!     [--min-transfer-s 60] [--max-transfer-s 200] [--call-timeout-s 60] [--transport NAME] [--tcp-cc NAME] [--seed 1] \
//!     [--reconnect-before-load] [--transfers 1] [--outpost-loads-only]
//! ```
//!
//! Each profile gets a fresh rig (`netem/rig.sh`, userspace router): the hub and the docker CLI
//! in the hub namespace, the agent and `docker-tls-front` in the agent namespace, the real engine
//! behind both. `docker save` carries the image agent → hub (the profile's `up` side),
//! `docker load` hub → agent (`down`). Every call has a deadline and prints "timeout" instead of
//! hanging. The transport profile follows the link (lan, cellular, satellite) unless `--transport`
//! says otherwise, so the bench re-runs unchanged as the transport work lands. The baseline's TCP
//! congestion control is the host's default (`net.ipv4.tcp_congestion_control`, often `bbr` or
//! `cubic`) unless `--tcp-cc` sets it on the rig's routes; the tables say which one ran.
//! `--reconnect-before-load` runs Outpost's `load` once more before the timed one, then restarts
//! the agent (killed, as a device that lost power), so the timed load is a new connection's first
//! transfer after one that measured the downlink: Careful Resume starts it at that rate. The
//! first connection's load is given in the profile's note. `--transfers N` runs the `save`s and
//! `load`s N times each, Outpost and TCP+TLS taking turns, and the table shows their medians with
//! every sample below it (issue #14 asks for three); with `--reconnect-before-load` each of
//! Outpost's loads comes after a reconnect. `--outpost-loads-only` skips the `save`s and the
//! TCP+TLS transfers (their cells print "—"): many after-reconnect loads in a few minutes, to see
//! their spread, where a full sample pair takes two on GEO. The CPU table gives, per finished
//! transfer, the CPU time of the processes between the CLI and the engine (the hub and the agent;
//! `docker-tls-front`), read from `/proc` around each transfer: on `transparent` the product's
//! extra hop is what the wall times differ by.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)] // wall-clock measurement; bench code

#[path = "link_profiles/report.rs"]
mod report;

use std::cell::RefCell;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use outpost_api::EndpointDetail;
use outpost_netem::model::Capacity;
use outpost_netem::{LinkConfig, Profile};
use outpost_tests::bench_image::TestImage;
use outpost_tests::docker::{direct, require_engine, unique, Container, TEST_IMAGE};
use outpost_tests::l3_paths::{start_agent, RigHub, TlsEngine};
use outpost_tests::l3_rig::{NsProcess, Rig, Side};
use outpost_tests::proc_stats::ProcSample;
use outpost_tests::timed;
use report::{Call, ProxyCpu, Row, Transfer};

const ALL_PROFILES: &str = "transparent,lte,leo-satellite,geo-satellite,3g,edge-2g,flaky-cellular";

/// Command-line options.
struct Options {
    profiles: Vec<String>,
    size_mb: u64,
    samples: usize,
    idle: Duration,
    min_transfer: Duration,
    max_transfer: Duration,
    call_timeout: Duration,
    transport: Option<String>,
    tcp_cc: Option<String>,
    seed: u64,
    reconnect_before_load: bool,
    /// How many times each transfer runs.
    transfers: usize,
    /// Only Outpost's `load`s are timed.
    outpost_loads_only: bool,
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
                .unwrap_or_else(|| ALL_PROFILES.to_owned())
                .split(',')
                .map(str::to_owned)
                .collect(),
            size_mb: number("--size-mb", 10),
            samples: number("--samples", 5) as usize,
            idle: Duration::from_secs(number("--idle-s", 75)),
            min_transfer: Duration::from_secs(number("--min-transfer-s", 60)),
            max_transfer: Duration::from_secs(number("--max-transfer-s", 200)),
            call_timeout: Duration::from_secs(number("--call-timeout-s", 60)),
            transport: value("--transport"),
            tcp_cc: value("--tcp-cc"),
            seed: number("--seed", 1),
            reconnect_before_load: args.iter().any(|a| a == "--reconnect-before-load"),
            transfers: number("--transfers", 1).max(1) as usize,
            outpost_loads_only: args.iter().any(|a| a == "--outpost-loads-only"),
        }
    }
}

/// The QUIC transport profile for a link, by its round trip (see `transport/src/profile.rs`).
fn transport_for(profile: &str) -> &'static str {
    match profile {
        "transparent" => "lan",
        "geo-satellite" | "edge-2g" => "satellite",
        _ => "cellular",
    }
}

/// What one direction of the link can carry: (bits per second, one-way base delay).
fn rate_and_delay(config: &LinkConfig) -> (Option<u64>, Duration) {
    let rate = match &config.capacity {
        Capacity::Rate(bps) => Some(*bps),
        _ => None,
    };
    (rate, config.delay.base)
}

/// Size / link rate + one round trip, or `None` for a link without a fixed rate.
fn ideal(bytes: u64, rate: Option<u64>, rtt: Duration) -> Option<Duration> {
    let rate = rate?;
    Some(Duration::from_secs_f64(bytes as f64 * 8.0 / rate as f64) + rtt)
}

/// Both paths to the engine in one rig, and where their outputs go.
struct Paths<'a> {
    hub: &'a RigHub,
    /// The agent now: `--reconnect-before-load` replaces it.
    agent: &'a RefCell<Option<NsProcess>>,
    id: u64,
    tls: &'a TlsEngine,
    out: &'a Path,
    options: &'a Options,
}

impl Paths<'_> {
    fn docker(&self, outpost: bool, args: &[&str]) -> Command {
        let mut command = if outpost {
            self.hub.docker(self.id)
        } else {
            self.tls.docker()
        };
        command.args(args);
        command
    }

    fn call(&self, outpost: bool, args: &[&str], expect: &str) -> Call {
        let name = unique("call");
        let run = timed::run(
            self.docker(outpost, args),
            self.out,
            &name,
            self.options.call_timeout,
        );
        Call::from_run(&run, expect)
    }

    /// A warm-up call, then `samples` timed ones; the median, or why there is none.
    fn latency(&self, outpost: bool, args: &[&str], expect: &str) -> Call {
        let _ = self.call(outpost, args, expect);
        let calls: Vec<Call> = (0..self.options.samples)
            .map(|_| self.call(outpost, args, expect))
            .collect();
        Call::median(calls)
    }

    fn save(&self, outpost: bool, image: &TestImage, timeout: Duration) -> Transfer {
        let run = timed::run(
            self.docker(outpost, &["save", &image.tag]),
            self.out,
            &unique("save"),
            timeout,
        );
        let received = run.stdout_len();
        let _ = std::fs::remove_file(&run.stdout);
        Transfer::from_run(&run, received, image.tar_bytes)
    }

    fn load(&self, outpost: bool, image: &TestImage, timeout: Duration) -> Transfer {
        let _ = direct(&["rmi", "-f", &image.tag]);
        let tar = image.tar.to_str().unwrap();
        let run = timed::run(
            self.docker(outpost, &["load", "-i", tar]),
            self.out,
            &unique("load"),
            timeout,
        );
        let done = run.succeeded() && run.stdout_text().contains("Loaded image");
        let bytes = if done { image.tar_bytes } else { 0 };
        if !done && !run.timed_out() {
            eprintln!("docker load failed: {}", run.stderr_text());
        }
        image.restore();
        Transfer::from_run(&run, bytes, image.tar_bytes)
    }

    /// CPU seconds so far of the path's processes between the CLI and the engine: the hub and
    /// the agent for Outpost, (none and) the TLS front for the baseline.
    fn proxy_cpu(&self, outpost: bool) -> Option<[f64; 2]> {
        let cpu = |pid| ProcSample::take(pid).ok().map(|s| s.cpu_seconds);
        if outpost {
            let agent = self.agent.borrow().as_ref().map(NsProcess::pid)?;
            Some([cpu(self.hub.pid())?, cpu(agent)?])
        } else {
            Some([0.0, cpu(self.tls.pid())?])
        }
    }

    /// Runs `transfer` over the path and adds its processes' CPU time to `cpu` if it finished.
    fn metered(
        &self,
        outpost: bool,
        cpu: &mut ProxyCpu,
        transfer: impl FnOnce() -> Transfer,
    ) -> Transfer {
        let before = self.proxy_cpu(outpost);
        let done = transfer();
        if let (Transfer::Done { .. }, Some(before), Some(after)) =
            (&done, before, self.proxy_cpu(outpost))
        {
            cpu.add(after[0] - before[0], after[1] - before[1]);
        }
        done
    }

    /// The hub's controller on the device's connection (why startup ended, its rate, searches),
    /// its resumes, its silences, the path saved for it and the parity it sent and used: to tell a load that resumed at a saved
    /// rate from one that started cold, one whose startup ended far below the link from one that
    /// did not, and an outage from a silence that outlasted it.
    fn print_controller(&self) {
        let shown: EndpointDetail = self
            .hub
            .admin_json(&["show", &self.id.to_string(), "--json"]);
        let parity = shown
            .endpoint
            .wire
            .map(|w| (w.tx_parity_frames, w.rx_rebuilt_chunks));
        eprintln!(
            "  hub controller: {:?}; resumes {:?}; silences {:?}; saved path {:?}; parity sent, chunks rebuilt {:?}",
            shown.endpoint.sender,
            shown.endpoint.resumes,
            shown.endpoint.silences,
            shown.endpoint.saved_path,
            parity
        );
    }
}

/// Summons from standby, `samples` times: the hub's control message → `Ready`, in ms.
fn summons(hub: &RigHub, id: u64, options: &Options) -> Call {
    let mut calls = Vec::new();
    for _ in 0..options.samples.min(3) {
        if !hub.reaches_status(id, "standby", Duration::from_secs(60)) {
            return Call::Failed("never back in standby".into());
        }
        let out = hub
            .endpoint_command(&["summon", &id.to_string()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let ms = text
            .split("ready in ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok());
        calls.push(match ms {
            Some(ms) => Call::Ms(ms),
            None => Call::Failed(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        });
    }
    Call::median(calls)
}

/// IP bytes per second in and out of the agent namespace while the agent is in standby
/// (`--idle-s 0` skips it).
fn idle_rate(rig: &Rig, hub: &RigHub, id: u64, window: Duration) -> Option<f64> {
    if window.is_zero() || !hub.reaches_status(id, "standby", Duration::from_secs(60)) {
        return None;
    }
    std::thread::sleep(Duration::from_secs(2));
    let before = rig.ip_octets(Side::Agent);
    std::thread::sleep(window);
    let bytes = rig.ip_octets(Side::Agent).since(before).total();
    Some(bytes as f64 / window.as_secs_f64())
}

/// Sets the TCP congestion control of the rig's route in both namespaces if asked (`ip route …
/// congctl`: a child namespace may not change its default to an algorithm the host restricts);
/// returns the one in use.
fn tcp_congestion_control(rig: &Rig, wanted: Option<&str>) -> String {
    if let Some(cc) = wanted {
        for (side, router) in [(Side::Hub, "198.18.0.254"), (Side::Agent, "198.18.1.254")] {
            let set = rig
                .command(side, "ip")
                .args(["route", "change", "198.18.0.0/15", "via", router])
                .args(["congctl", cc])
                .status()
                .unwrap();
            assert!(set.success(), "cannot route with congctl {cc}");
        }
        return cc.to_owned();
    }
    let out = rig
        .command(Side::Agent, "sysctl")
        .args(["-n", "net.ipv4.tcp_congestion_control"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Three times the ideal, within `--min-transfer-s` and `--max-transfer-s`.
fn transfer_timeout(options: &Options, ideal: Option<Duration>) -> Duration {
    let generous = ideal.map_or(options.min_transfer, |i| i * 3);
    generous.clamp(
        options.min_transfer,
        options.max_transfer.max(options.min_transfer),
    )
}

/// The link's facts for `name`, before anything runs.
fn plan(name: &str, options: &Options, image: &TestImage) -> Row {
    let profile = Profile::load(name).unwrap_or_else(|e| panic!("profile {name}: {e}"));
    let (up_rate, up_delay) = rate_and_delay(&profile.up);
    let (down_rate, down_delay) = rate_and_delay(&profile.down);
    let rtt = up_delay + down_delay;
    let transport = options
        .transport
        .clone()
        .unwrap_or_else(|| transport_for(name).to_owned());
    let mut row = Row::new(name, &transport, rtt, [up_rate, down_rate]);
    row.ideal_save = ideal(image.tar_bytes, up_rate, rtt);
    row.ideal_load = ideal(image.tar_bytes, down_rate, rtt);
    row
}

/// One profile's rig with both paths running; fields drop in order, the rig last.
struct Bench {
    agent: RefCell<Option<NsProcess>>,
    agent_key: String,
    hub: RigHub,
    id: u64,
    tls: TlsEngine,
    dir: tempfile::TempDir,
    rig: Rig,
}

impl Bench {
    /// Brings the rig up and waits for the agent to enrol; `None` (and a note) if it never does.
    fn start(options: &Options, row: &mut Row) -> Option<Self> {
        let prefix = format!("olb{}", std::process::id() % 100_000);
        let rig = Rig::up(&prefix, &row.profile, options.seed);
        let dir = tempfile::tempdir().unwrap();
        row.tcp_cc = tcp_congestion_control(&rig, options.tcp_cc.as_deref());
        let tls = TlsEngine::start(&rig, &dir.path().join("tls"));
        let flags = ["--standby-after", "5s", "--summon-timeout", "60s"];
        let transport = ["--transport", row.transport.as_str()];
        let hub = RigHub::start(
            &rig,
            &dir.path().join("hub"),
            &[&flags[..], &transport].concat(),
        );
        let (id, key) = hub.create_endpoint("link-bench");
        let agent = start_agent(&rig, &dir.path().join("agent"), &key, &row.transport);
        eprintln!(
            "[{}] rig up, transport {}, TCP {}; waiting for the agent",
            row.profile, row.transport, row.tcp_cc
        );
        if !hub.reaches_status(id, "standby", Duration::from_secs(120)) {
            let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();
            row.note = format!("agent never reached standby: {log}");
            return None;
        }
        Some(Self {
            agent: RefCell::new(Some(agent)),
            agent_key: key,
            hub,
            id,
            tls,
            dir,
            rig,
        })
    }

    /// Kill the agent and start it again on its identity; true once it is back in standby on a
    /// new connection.
    fn reconnect_agent(&self, transport: &str) -> bool {
        drop(self.agent.borrow_mut().take());
        let agent = start_agent(
            &self.rig,
            &self.dir.path().join("agent"),
            &self.agent_key,
            transport,
        );
        *self.agent.borrow_mut() = Some(agent);
        std::thread::sleep(Duration::from_secs(1));
        self.hub
            .reaches_status(self.id, "standby", Duration::from_secs(120))
    }

    fn paths<'a>(&'a self, options: &'a Options) -> Paths<'a> {
        Paths {
            hub: &self.hub,
            agent: &self.agent,
            id: self.id,
            tls: &self.tls,
            out: self.dir.path(),
            options,
        }
    }
}

fn latencies(paths: &Paths<'_>, row: &mut Row, container: &str) {
    for (i, outpost) in [true, false].into_iter().enumerate() {
        eprintln!("[{}] latency, outpost={outpost}", row.profile);
        row.ps[i] = paths.latency(outpost, &["ps", "-a"], "CONTAINER ID");
        row.exec[i] = paths.latency(outpost, &["exec", container, "echo", "hi"], "hi");
    }
}

fn transfers(paths: &Paths<'_>, row: &mut Row, image: &TestImage, before_load: &dyn Fn() -> bool) {
    for sample in 0..paths.options.transfers {
        for (i, outpost) in [true, false].into_iter().enumerate() {
            if !outpost && paths.options.outpost_loads_only {
                continue;
            }
            let (save, load) = transfer_pair(paths, row, image, outpost, sample, before_load);
            row.save_samples[i].push(save);
            row.load_samples[i].push(load);
        }
    }
    for i in 0..2 {
        row.save[i] = Transfer::median(&row.save_samples[i]);
        row.load[i] = Transfer::median(&row.load_samples[i]);
    }
}

/// One `save` and one `load` over a path. With `--reconnect-before-load`, Outpost's load comes
/// after a reconnect: the first sample's connection first loads once (shown in the note), later
/// ones follow the previous sample's load.
fn transfer_pair(
    paths: &Paths<'_>,
    row: &mut Row,
    image: &TestImage,
    outpost: bool,
    sample: usize,
    before_load: &dyn Fn() -> bool,
) -> (Transfer, Transfer) {
    let save_timeout = transfer_timeout(paths.options, row.ideal_save);
    let load_timeout = transfer_timeout(paths.options, row.ideal_load);
    let save = if paths.options.outpost_loads_only {
        Transfer::Missing
    } else {
        eprintln!(
            "[{}] save {sample}, outpost={outpost}, timeout {save_timeout:?}",
            row.profile
        );
        let cpu = &mut row.save_cpu[usize::from(!outpost)];
        paths.metered(outpost, cpu, || paths.save(outpost, image, save_timeout))
    };
    if outpost && paths.options.reconnect_before_load {
        if sample == 0 {
            let first = paths.load(outpost, image, load_timeout);
            paths.print_controller();
            eprintln!("[{}] load before the reconnect: {first}", row.profile);
            row.note = format!("Outpost's load on the first connection: {first}; the table's are the next connections' first transfers");
        }
        if !before_load() {
            row.note = "the agent did not come back after its restart".into();
        }
    }
    eprintln!(
        "[{}] load {sample}, outpost={outpost}, timeout {load_timeout:?}",
        row.profile
    );
    let cpu = &mut row.load_cpu[usize::from(!outpost)];
    let load = paths.metered(outpost, cpu, || paths.load(outpost, image, load_timeout));
    if outpost {
        paths.print_controller();
    }
    (save, load)
}

fn measure(name: &str, options: &Options, image: &TestImage, container: &str) -> Row {
    let mut row = plan(name, options, image);
    let Some(bench) = Bench::start(options, &mut row) else {
        return row;
    };
    let paths = bench.paths(options);
    latencies(&paths, &mut row, container);
    // Summons and the idle window come before the transfers: a transfer cut at its deadline may
    // keep the device busy for a while.
    eprintln!("[{name}] summons");
    row.summon = summons(&bench.hub, bench.id, options);
    eprintln!("[{name}] idle window {:?}", options.idle);
    row.idle = idle_rate(&bench.rig, &bench.hub, bench.id, options.idle);
    let transport = row.transport.clone();
    transfers(&paths, &mut row, image, &|| {
        bench.reconnect_agent(&transport)
    });
    let settle = Duration::from_secs(90);
    if !bench.hub.reaches_status(bench.id, "standby", settle) {
        row.note = format!(
            "the device was still active {}s after the last transfer ended",
            settle.as_secs()
        );
    }
    eprintln!("[{name}] emulator counters:\n{}", bench.rig.counters());
    row
}

fn main() {
    let options = Options::parse();
    require_engine();
    let image = TestImage::build(options.size_mb);
    // Removed when dropped, even if a profile panics.
    let container = Container {
        name: unique("link-exec"),
    };
    let started = direct(&[
        "run",
        "-d",
        "--name",
        &container.name,
        TEST_IMAGE,
        "sleep",
        "86400",
    ]);
    assert!(started.status.success(), "{started:?}");
    let mut rows = Vec::new();
    for name in &options.profiles {
        let row = measure(name, &options, &image, &container.name);
        eprintln!("[{name}] done: {row:?}");
        rows.push(row);
    }
    report::print(&rows, image.tar_bytes, options.samples);
    if options.transfers > 1 {
        report::print_samples(&rows);
    }
}

//! What the link benchmark measured per profile, and the tables it prints.

use std::fmt;
use std::time::Duration;

use outpost_tests::timed::Timed;

/// One latency measure: a median in milliseconds, or why there is none.
#[derive(Clone, Debug, Default)]
pub(crate) enum Call {
    /// Median (or single) time in milliseconds.
    Ms(f64),
    /// At least one call hit its deadline.
    Timeout,
    /// A call failed; its error.
    Failed(String),
    /// Not measured.
    #[default]
    Missing,
}

impl Call {
    /// A docker CLI run: its wall time if it succeeded and printed `expect`.
    pub(crate) fn from_run(run: &Timed, expect: &str) -> Self {
        if run.timed_out() {
            return Self::Timeout;
        }
        if run.succeeded() && run.stdout_text().contains(expect) {
            return Self::Ms(run.elapsed.as_secs_f64() * 1e3);
        }
        Self::Failed(run.stderr_text().trim().to_owned())
    }

    /// The median of `calls`, or the first timeout or failure among them.
    pub(crate) fn median(calls: Vec<Self>) -> Self {
        let mut ms = Vec::new();
        for call in calls {
            match call {
                Self::Ms(v) => ms.push(v),
                Self::Missing => {}
                other => {
                    if let Self::Failed(why) = &other {
                        eprintln!("call failed: {why}");
                    }
                    return other;
                }
            }
        }
        if ms.is_empty() {
            return Self::Missing;
        }
        ms.sort_by(f64::total_cmp);
        Self::Ms(ms[ms.len() / 2])
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ms(ms) if *ms >= 1000.0 => write!(f, "{:.2} s", ms / 1000.0),
            Self::Ms(ms) if *ms >= 10.0 => write!(f, "{ms:.0} ms"),
            Self::Ms(ms) => write!(f, "{ms:.1} ms"),
            Self::Timeout => f.write_str("timeout"),
            Self::Failed(_) => f.write_str("error"),
            Self::Missing => f.write_str("—"),
        }
    }
}

/// One bulk transfer.
#[derive(Clone, Debug, Default)]
pub(crate) enum Transfer {
    /// All bytes arrived in `secs`.
    Done {
        /// Bytes carried.
        bytes: u64,
        /// Wall time, CLI start to exit.
        secs: f64,
    },
    /// The deadline passed after `bytes` had arrived (0 when unknown, as for `load`).
    Timeout {
        /// Bytes that had arrived.
        bytes: u64,
        /// The deadline.
        secs: f64,
    },
    /// The CLI failed or the byte count was wrong.
    Failed,
    /// Not measured.
    #[default]
    Missing,
}

impl Transfer {
    /// A `docker save`/`load` run that carried `bytes` of an `expected`-byte image.
    pub(crate) fn from_run(run: &Timed, bytes: u64, expected: u64) -> Self {
        let secs = run.elapsed.as_secs_f64();
        if run.timed_out() {
            return Self::Timeout { bytes, secs };
        }
        if run.succeeded() && bytes == expected {
            return Self::Done { bytes, secs };
        }
        eprintln!(
            "transfer failed ({bytes} of {expected} bytes): {}",
            run.stderr_text().trim()
        );
        Self::Failed
    }

    /// The median of `samples` by time, a timeout or failure counting as slower than any
    /// finished transfer.
    pub(crate) fn median(samples: &[Self]) -> Self {
        let mut ranked: Vec<&Self> = samples.iter().collect();
        ranked.sort_by(|a, b| a.rank().total_cmp(&b.rank()));
        ranked
            .get(ranked.len() / 2)
            .map_or(Self::Missing, |t| (*t).clone())
    }

    fn rank(&self) -> f64 {
        match *self {
            Self::Done { secs, .. } => secs,
            _ => f64::INFINITY,
        }
    }

    /// Wall time alone, for the per-sample table: to 10 ms below 10 s (`transparent`'s take
    /// 0.2-0.4 s).
    fn short(&self) -> String {
        match *self {
            Self::Done { secs, .. } if secs < 10.0 => format!("{secs:.2}"),
            Self::Done { secs, .. } => format!("{secs:.1}"),
            Self::Timeout { .. } => "timeout".into(),
            Self::Failed => "error".into(),
            Self::Missing => "—".into(),
        }
    }
}

fn mbit(bytes: u64, secs: f64) -> f64 {
    bytes as f64 * 8.0 / secs / 1e6
}

impl fmt::Display for Transfer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Done { bytes, secs } => {
                write!(f, "{:.2} Mbit/s ({secs:.1} s)", mbit(bytes, secs))
            }
            Self::Timeout { bytes: 0, secs } => write!(f, "timeout (> {secs:.0} s)"),
            Self::Timeout { bytes, secs } => write!(
                f,
                "timeout (> {secs:.0} s; {:.1} MB, {:.2} Mbit/s)",
                bytes as f64 / 1e6,
                mbit(bytes, secs)
            ),
            Self::Failed => f.write_str("error"),
            Self::Missing => f.write_str("—"),
        }
    }
}

/// CPU time that one path's processes between the CLI and the engine spent on its finished
/// transfers of one kind: the hub and the agent for Outpost, `docker-tls-front` for the baseline.
/// The CLI, the router and the engine serve both paths alike and are not counted.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ProxyCpu {
    /// Seconds on the hub's side: the hub (none for the baseline).
    pub(crate) hub: f64,
    /// Seconds on the device: the agent, or the baseline's TLS front.
    pub(crate) device: f64,
    /// Transfers counted.
    pub(crate) transfers: u32,
}

impl ProxyCpu {
    /// Adds one transfer's CPU seconds, hub side and device side.
    pub(crate) fn add(&mut self, hub: f64, device: f64) {
        self.hub += hub;
        self.device += device;
        self.transfers += 1;
    }

    /// Milliseconds per transfer on the hub's side and on the device, or "—" for none.
    fn per_transfer(&self) -> [String; 2] {
        if self.transfers == 0 {
            return ["—".into(), "—".into()];
        }
        let ms = |secs: f64| format!("{:.0}", secs * 1e3 / f64::from(self.transfers));
        [ms(self.hub), ms(self.device)]
    }
}

/// Everything measured on one profile. Index 0 of each pair is Outpost, 1 the TCP+TLS baseline.
#[derive(Debug, Default)]
pub(crate) struct Row {
    pub(crate) profile: String,
    pub(crate) transport: String,
    /// The baseline's TCP congestion control.
    pub(crate) tcp_cc: String,
    pub(crate) rtt: Duration,
    /// Link rate up (device → hub) and down, bits per second (`None`: unlimited or a trace).
    pub(crate) rates: [Option<u64>; 2],
    pub(crate) summon: Call,
    pub(crate) ps: [Call; 2],
    pub(crate) exec: [Call; 2],
    /// The medians of the samples below.
    pub(crate) save: [Transfer; 2],
    pub(crate) load: [Transfer; 2],
    pub(crate) save_samples: [Vec<Transfer>; 2],
    pub(crate) load_samples: [Vec<Transfer>; 2],
    /// CPU time of each path's proxies over its finished `save`s and `load`s.
    pub(crate) save_cpu: [ProxyCpu; 2],
    pub(crate) load_cpu: [ProxyCpu; 2],
    pub(crate) ideal_save: Option<Duration>,
    pub(crate) ideal_load: Option<Duration>,
    /// IP bytes per second in and out of the agent's namespace while it idles in standby.
    pub(crate) idle: Option<f64>,
    /// Why the row is incomplete, if it is.
    pub(crate) note: String,
}

impl Row {
    pub(crate) fn new(
        profile: &str,
        transport: &str,
        rtt: Duration,
        rates: [Option<u64>; 2],
    ) -> Self {
        Self {
            profile: profile.to_owned(),
            transport: transport.to_owned(),
            rtt,
            rates,
            ..Self::default()
        }
    }
}

fn rate(bps: Option<u64>) -> String {
    bps.map_or("unlimited".to_owned(), |b| {
        format!("{} Mbit/s", b as f64 / 1e6)
    })
}

fn ideal(ideal: Option<Duration>, bytes: u64) -> String {
    ideal.map_or("—".to_owned(), |d| {
        let secs = d.as_secs_f64();
        format!("{:.2} Mbit/s ({secs:.1} s)", mbit(bytes, secs))
    })
}

/// Prints the latency and the transfer tables.
pub(crate) fn print(rows: &[Row], bytes: u64, samples: usize) {
    println!("\nLatency: the docker CLI in the hub namespace, process start included, median of {samples};");
    println!("summon: hub-side, control message → Ready, median of up to 3, from standby.\n");
    println!("| profile | QUIC transport / TCP cc | RTT | summon | `docker ps` Outpost | `docker ps` TCP+TLS | `exec echo` Outpost | `exec echo` TCP+TLS | idle B/s per agent (IP) |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let idle = r.idle.map_or("—".to_owned(), |b| format!("{b:.1}"));
        println!(
            "| {} | {} / {} | {} ms | {} | {} | {} | {} | {} | {idle} |",
            r.profile,
            r.transport,
            r.tcp_cc,
            r.rtt.as_millis(),
            r.summon,
            r.ps[0],
            r.ps[1],
            r.exec[0],
            r.exec[1]
        );
    }
    println!("\nTransfers of a {bytes}-byte image: goodput (wall time, CLI start to exit). Ideal = size / link rate + one RTT.\n");
    println!("| profile | `save` up rate | ideal | Outpost | TCP+TLS | `load` down rate | ideal | Outpost | TCP+TLS |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.profile,
            rate(r.rates[0]),
            ideal(r.ideal_save, bytes),
            r.save[0],
            r.save[1],
            rate(r.rates[1]),
            ideal(r.ideal_load, bytes),
            r.load[0],
            r.load[1]
        );
    }
    for r in rows.iter().filter(|r| !r.note.is_empty()) {
        println!("\n{}: {}", r.profile, r.note);
    }
    print_cpu(rows);
}

/// The proxies' CPU per finished transfer: what each path costs beside the engine's own work.
fn print_cpu(rows: &[Row]) {
    println!("\nCPU per finished transfer (ms, utime + stime from /proc at 10 ms ticks, mean): the processes");
    println!("between the CLI and the engine. Deployed, the hub's share runs on the hub's machine; the device");
    println!("pays its agent's, or the TLS front's.\n");
    println!("| profile | `save` hub | `save` agent | `save` docker-tls-front | `load` hub | `load` agent | `load` docker-tls-front |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let [save_hub, save_agent] = r.save_cpu[0].per_transfer();
        let [_, save_front] = r.save_cpu[1].per_transfer();
        let [load_hub, load_agent] = r.load_cpu[0].per_transfer();
        let [_, load_front] = r.load_cpu[1].per_transfer();
        println!(
            "| {} | {save_hub} | {save_agent} | {save_front} | {load_hub} | {load_agent} | {load_front} |",
            r.profile
        );
    }
}

/// Every transfer sample, in seconds, in the order they ran (`--transfers N`).
pub(crate) fn print_samples(rows: &[Row]) {
    let listed = |samples: &[Transfer]| {
        let times: Vec<String> = samples.iter().map(Transfer::short).collect();
        format!("{} s", times.join(", "))
    };
    println!("\nEach transfer sample (s), the medians above:\n");
    println!("| profile | `save` Outpost | `save` TCP+TLS | `load` Outpost | `load` TCP+TLS |");
    println!("|---|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.profile,
            listed(&r.save_samples[0]),
            listed(&r.save_samples[1]),
            listed(&r.load_samples[0]),
            listed(&r.load_samples[1])
        );
    }
}

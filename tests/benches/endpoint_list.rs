//! Endpoint-list latency at scale, on SQLite and on PostgreSQL: a release hub whose store holds N
//! endpoints (25,000 by default) answers a mix of list queries over HTTPS; prints p50/p99/max per
//! kind of query, the cost of a liveness flush, and the hub's memory and CPU, one column or row
//! per store. Run by hand:
//!
//! ```sh
//! cargo bench -p outpost-tests --bench endpoint_list -- --endpoints 25000 --rounds 300
//! cargo bench -p outpost-tests --bench endpoint_list -- --endpoints 100000 --rounds 100 --store both
//! ```
//!
//! `--store sqlite` (default), `postgres` (a fresh database on the test cluster, see
//! `outpost_tests::bench_store`) or `both`, one after the other. The store is filled before the
//! hub starts with a few set-based statements through the store's connection (one transaction:
//! what an import would do), the same rows on both: 50 groups, 20 tags (two per endpoint). Once
//! the hub has started (it clears every `connected` flag), the bench writes their liveness
//! through the store library: 60 % connected (checked in within the last 20 s), 30 % gone an hour
//! ago, 10 % never seen. On PostgreSQL it then runs `VACUUM ANALYZE` (what autovacuum does within
//! a minute of a bulk load). One client on one kept-alive HTTPS connection asks each query
//! `rounds` times, the kinds interleaved; the latency is the whole request as the client sees it
//! (TLS, HTTP, SQL, JSON). Meanwhile a writer writes 5,000 liveness rows in one batch every 5 s
//! (`--flush-rows N`, 0 for none), each row's connected flag rewritten as it was: what the hub's
//! flush writes while 25,000 agents reconnect after a restart (~1,000 set-ups a second). Then the
//! flush's own cost: `--flush-samples` such batches back to back, each timed.
#![allow(clippy::disallowed_methods)] // wall-clock measurement of a real process
#![allow(clippy::unwrap_used)] // bench code: a panic is the failure report

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use outpost_api::{ApiClient, ListQuery};
use outpost_hub::store::db::Dialect;
use outpost_hub::store::hubs::{self, HubId};
use outpost_hub::store::{liveness, unix_now, LivenessUpdate, Store};
use outpost_protocol::EndpointId;
use outpost_tests::bench_store::{parse_stores, postgres_cpu_seconds, BenchStore, StoreKind};
use outpost_tests::proc_stats::ProcSample;
use outpost_tests::Hub;
use serde_json::Value;
use tokio::time::Instant;

/// Endpoints per group and tags in use, as in a fleet sorted by site and role.
const GROUPS: usize = 50;
const TAGS: usize = 20;
/// The p99 the scale issue asks for.
const TARGET_P99_MS: f64 = 50.0;

struct Options {
    endpoints: usize,
    rounds: usize,
    /// Check-ins written every 5 s while the queries run (0: none), and per timed batch.
    flush_rows: usize,
    /// Batches of `flush_rows` timed back to back after the queries.
    flush_samples: usize,
    stores: Vec<StoreKind>,
}

fn options() -> Options {
    let mut options = Options {
        endpoints: 25_000,
        rounds: 300,
        flush_rows: 5_000,
        flush_samples: 40,
        stores: vec![StoreKind::Sqlite],
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.windows(2) {
        let number = || pair[1].parse().expect("a number");
        match pair[0].as_str() {
            "--endpoints" => options.endpoints = number(),
            "--rounds" => options.rounds = number(),
            "--flush-rows" => options.flush_rows = number(),
            "--flush-samples" => options.flush_samples = number(),
            "--store" => options.stores = parse_stores(&pair[1]),
            _ => {}
        }
    }
    options
}

/// Fill `store` with `n` endpoints in one transaction: endpoint `i` (from 0, id `i + 1`) is named
/// after a role and a number that scatters names against ids, created `n - i` seconds ago, in
/// group `i % 50` and tagged `i % 20` and `(3i + 1) % 20` (never the same).
fn fill(store: &Store, n: usize) {
    let conn = store.lock();
    let (number, random) = match conn.dialect() {
        Dialect::Sqlite => ("printf('%06d', (i * 7919) % {n})", "randomblob(32)"),
        Dialect::Postgres => (
            "lpad(CAST((i * 7919) % {n} AS TEXT), 6, '0')",
            "decode(md5(CAST(random() AS TEXT)) || md5(CAST(random() AS TEXT)), 'hex')",
        ),
    };
    let number = number.replace("{n}", &n.to_string());
    let series = |to: usize| {
        format!("WITH RECURSIVE s(i) AS (SELECT CAST(0 AS BIGINT) UNION ALL SELECT i + 1 FROM s WHERE i < {to} - 1)")
    };
    let tag = |expr: &str| {
        format!(
            "INSERT INTO endpoint_tags (tag_id, endpoint_id)
             SELECT t.id, e.id FROM endpoints e JOIN tags t ON t.name = 'tag-' || ({expr});"
        )
    };
    conn.execute_batch(&format!(
        "BEGIN;
         {groups} INSERT INTO groups (name) SELECT 'group-' || i FROM s;
         {tags} INSERT INTO tags (name) SELECT 'tag-' || i FROM s;
         {endpoints} INSERT INTO endpoints (name, kind, secret_hash, created_at, group_id)
             SELECT (CASE i % 4 WHEN 0 THEN 'kiosk' WHEN 1 THEN 'sign' WHEN 2 THEN 'pos'
                     ELSE 'gateway' END) || '-' || {number},
                    'device', {random}, {now} - ({n} - i),
                    (SELECT g.id FROM groups g WHERE g.name = 'group-' || (i % {GROUPS}))
             FROM s ORDER BY i;
         {first_tag}
         {second_tag}
         COMMIT;",
        groups = series(GROUPS),
        tags = series(TAGS),
        endpoints = series(n),
        now = unix_now(),
        first_tag = tag(&format!("(e.id - 1) % {TAGS}")),
        second_tag = tag(&format!("((e.id - 1) * 3 + 1) % {TAGS}")),
    ))
    .unwrap();
}

/// Whether the endpoint with `id` (1-based, in fill order) is connected: 60 % of them.
fn connected(id: usize) -> bool {
    (id - 1) % 10 >= 4
}

/// Write the liveness of the `n` endpoints, as the hub's flush would have: connected ones checked
/// in within the last 20 s, 30 % gone an hour ago, 10 % never seen.
fn liveness(store: &Store, n: usize) {
    let now = unix_now();
    let updates: Vec<LivenessUpdate> = (1..=n)
        .filter(|id| (id - 1) % 10 != 0)
        .map(|id| LivenessUpdate {
            id: EndpointId(id as u64),
            last_checkin: Some(if connected(id) {
                now - (id % 20) as i64
            } else {
                now - 3600
            }),
            addr: "198.18.0.2:4433".into(),
            migrations: 0,
            connected: connected(id),
            claim: connected(id),
            wire_ended: None,
            path_ended: None,
            path_mtu: None,
        })
        .collect();
    let hub = running_hub(store);
    liveness::write_liveness(&mut store.lock(), hub, &updates).unwrap();
    if store.lock().dialect() == Dialect::Postgres {
        store.lock().execute_batch("VACUUM ANALYZE").unwrap();
    }
}

/// The hub the bench started, whose flush the bench's writes stand in for.
fn running_hub(store: &Store) -> HubId {
    hubs::list(&store.lock()).unwrap()[0].id
}

/// Batches of `rows` liveness rows, rotating through the `n` endpoints: each row checked in now
/// and keeping its connected flag, which still rewrites every index that carries it.
struct Flusher {
    store: Store,
    hub: HubId,
    n: usize,
    rows: usize,
    next: usize,
}

impl Flusher {
    /// Write the next batch; returns how long it took.
    fn flush(&mut self) -> Duration {
        let now = unix_now();
        let batch: Vec<LivenessUpdate> = (0..self.rows)
            .map(|k| {
                let id = (self.next + k) % self.n + 1;
                LivenessUpdate {
                    id: EndpointId(id as u64),
                    last_checkin: Some(now),
                    addr: "198.18.0.3:4433".into(),
                    migrations: 0,
                    connected: connected(id),
                    claim: false,
                    wire_ended: None,
                    path_ended: None,
                    path_mtu: None,
                }
            })
            .collect();
        self.next = (self.next + self.rows) % self.n;
        let started = Instant::now();
        liveness::write_liveness(&mut self.store.lock(), self.hub, &batch).unwrap();
        started.elapsed()
    }
}

/// The heavy flush while the queries run: one batch every 5 s until `stop` is set. It runs
/// through the store library on the hub's store, so it contends for the write lock and the disk
/// as the hub's own flush does.
fn flush_load(mut flusher: Flusher, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut flushes = 0;
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_secs(5));
            flusher.flush();
            flushes += 1;
        }
        flushes
    })
}

/// A query string of the mix (`sort=name&page=3`) as the client's query.
fn list_query(text: &str) -> ListQuery {
    let pairs: serde_json::Map<String, Value> = text
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.to_owned(), Value::from(value)))
        .collect();
    serde_json::from_value(Value::Object(pairs)).unwrap()
}

/// The query mix: (kind, query string).
fn queries(n: usize) -> Vec<(&'static str, String)> {
    let last_page = n.div_ceil(100);
    vec![
        ("first page (created)", "per_page=100".into()),
        (
            "deep page (created)",
            format!("per_page=100&page={last_page}"),
        ),
        (
            "sorted by name, middle page",
            format!("sort=name&page={}", last_page / 2),
        ),
        (
            "sorted by last check-in, desc",
            "sort=last_checkin&order=desc".into(),
        ),
        ("search name \"42\"", "search=42&sort=name".into()),
        ("tag filter, by name", "tag=tag-7&sort=name".into()),
        ("tag filter, deep page", "tag=tag-7&page=20".into()),
        (
            "group filter, last check-in",
            "group=group-3&sort=last_checkin&order=desc".into(),
        ),
        ("status online, by name", "status=online&sort=name".into()),
        (
            "status online, deep page by name",
            format!("status=online&sort=name&page={}", last_page / 2),
        ),
        ("status offline", "status=offline".into()),
        (
            "online + tag + search",
            "status=online&tag=tag-4&search=kiosk".into(),
        ),
        ("1000 per page", "per_page=1000&sort=name".into()),
    ]
}

/// One query kind's answers: latencies (µs), the last total and row count.
struct Answers {
    latency: Histogram<u64>,
    total: u64,
    rows: usize,
}

/// What one store's run measured.
struct Run {
    kind: StoreKind,
    fill: Duration,
    answers: Vec<Answers>,
    concurrent_flushes: usize,
    /// Each timed flush batch, µs.
    flush: Histogram<u64>,
    /// The hub's resident memory before and after the queries, KiB.
    rss_before: u64,
    rss_after: u64,
    /// CPU seconds over the query phase: the hub's, and the PostgreSQL server's.
    hub_cpu: f64,
    postgres_cpu: f64,
    requests: usize,
}

async fn run(kind: StoreKind, options: &Options) -> Run {
    let n = options.endpoints;
    eprintln!("== {kind}: filling {n} endpoints");
    let tmp = tempfile::tempdir().unwrap();
    let hub_dir = tmp.path().join("hub");
    std::fs::create_dir_all(&hub_dir).unwrap();
    let place = BenchStore::create(kind, &hub_dir);
    let store = place.open();
    let started = Instant::now();
    fill(&store, n);
    let fill_time = started.elapsed();
    let flags = place.serve_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let hub = Hub::start_with(hub_dir, "127.0.0.1:0", "127.0.0.1:0", &flags);
    // After the start, which clears the connected flags a previous run of the hub left.
    liveness(&store, n);
    let flusher = |store: &Store| Flusher {
        store: store.clone(),
        hub: running_hub(store),
        n,
        rows: options.flush_rows,
        next: 0,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let load = (options.flush_rows > 0).then(|| flush_load(flusher(&place.open()), stop.clone()));
    let api = hub.api();
    let parsed: Vec<ListQuery> = queries(n)
        .iter()
        .map(|(_, text)| list_query(text))
        .collect();
    for query in &parsed {
        api.list(query).await.unwrap(); // warm the connection and the page cache
    }

    eprintln!(
        "== {kind}: {} rounds of {} queries",
        options.rounds,
        parsed.len()
    );
    let sample = || ProcSample::take(hub.pid()).unwrap();
    let (before, postgres_before) = (sample(), postgres_cpu_seconds());
    let answers = ask(&api, &parsed, options.rounds).await;
    let (after, postgres_after) = (sample(), postgres_cpu_seconds());
    stop.store(true, Ordering::Relaxed);
    let concurrent_flushes = load.map_or(0, |l| l.join().unwrap());

    eprintln!("== {kind}: {} timed flushes", options.flush_samples);
    let mut flush = Histogram::new_with_bounds(1, 600_000_000, 3).unwrap();
    let mut flusher = flusher(&store);
    for _ in 0..options
        .flush_samples
        .min(usize::from(options.flush_rows > 0) * usize::MAX)
    {
        flush.record(flusher.flush().as_micros() as u64).unwrap();
    }
    Run {
        kind,
        fill: fill_time,
        answers,
        concurrent_flushes,
        flush,
        rss_before: before.rss_kib,
        rss_after: after.rss_kib,
        hub_cpu: after.cpu_since(&before),
        postgres_cpu: postgres_after - postgres_before,
        requests: options.rounds * parsed.len(),
    }
}

/// Ask each query `rounds` times, the kinds interleaved.
async fn ask(api: &ApiClient, queries: &[ListQuery], rounds: usize) -> Vec<Answers> {
    let mut answers: Vec<Answers> = queries
        .iter()
        .map(|_| Answers {
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap(),
            total: 0,
            rows: 0,
        })
        .collect();
    for _ in 0..rounds {
        for (query, answer) in queries.iter().zip(&mut answers) {
            let start = Instant::now();
            let page = api.list(query).await.unwrap();
            answer
                .latency
                .record(start.elapsed().as_micros() as u64)
                .unwrap();
            (answer.total, answer.rows) = (page.total, page.items.len());
        }
    }
    answers
}

#[tokio::main]
async fn main() {
    let options = options();
    let mut runs = Vec::new();
    for kind in &options.stores {
        runs.push(run(*kind, &options).await);
    }
    report(&options, &runs);
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn report(options: &Options, runs: &[Run]) {
    println!(
        "\n{} endpoints; {} rounds of each query over one HTTPS connection; meanwhile one \
         liveness flush of {} rows every 5 s",
        options.endpoints, options.rounds, options.flush_rows
    );
    let stores: Vec<String> = runs.iter().map(|r| r.kind.to_string()).collect();
    println!(
        "\n| query | matches | rows | {} |",
        stores
            .iter()
            .map(|s| format!("{s} p50 / p99 / max ms"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|---:|---:|{}", "---:|".repeat(runs.len()));
    for (k, (kind, query)) in queries(options.endpoints).iter().enumerate() {
        let first = &runs[0].answers[k];
        let cells: Vec<String> = runs
            .iter()
            .map(|r| {
                let h = &r.answers[k].latency;
                let p = |q| ms(h.value_at_quantile(q));
                format!("{:.2} / {:.2} / {:.2}", p(0.5), p(0.99), ms(h.max()))
            })
            .collect();
        let same = runs.iter().all(|r| r.answers[k].total == first.total);
        println!(
            "| {kind} (`{query}`) | {}{} | {} | {} |",
            first.total,
            if same { "" } else { " (DIFFERS)" },
            first.rows,
            cells.join(" | ")
        );
    }
    println!();
    for run in runs {
        let worst = run
            .answers
            .iter()
            .map(|a| ms(a.latency.value_at_quantile(0.99)))
            .fold(0.0, f64::max);
        let verdict = if worst < TARGET_P99_MS {
            "met"
        } else {
            "MISSED"
        };
        println!(
            "{}: store filled in {:.1} s; worst p99 {worst:.2} ms (target < {TARGET_P99_MS} ms): {verdict}; {} concurrent flushes",
            run.kind,
            run.fill.as_secs_f64(),
            run.concurrent_flushes
        );
    }
    println!(
        "\n| store | liveness flush of {} rows: batches | p50 ms | p99 ms | max ms | per row µs (p50) |",
        options.flush_rows
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for run in runs {
        let h = &run.flush;
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            run.kind,
            h.len(),
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
            h.value_at_quantile(0.5) as f64 / options.flush_rows.max(1) as f64,
        );
    }
    println!("\n| store | hub RSS before the queries | after | hub CPU over the queries | per request | PostgreSQL server CPU over the queries |");
    println!("|---|---:|---:|---:|---:|---:|");
    for run in runs {
        println!(
            "| {} | {:.1} MiB | {:.1} MiB | {:.2} s | {:.2} ms | {:.2} s |",
            run.kind,
            run.rss_before as f64 / 1024.0,
            run.rss_after as f64 / 1024.0,
            run.hub_cpu,
            run.hub_cpu * 1000.0 / run.requests as f64,
            run.postgres_cpu,
        );
    }
}

//! A real Prometheus server — Debian's `prometheus`, which `scripts/metrics-setup.sh` installs —
//! scraping one target on loopback every second, with its own configuration and data in a
//! temporary directory, killed when its handle drops; and its HTTP query API, so a test asks what
//! a real scraper stored rather than parsing the exposition itself.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::wait_for;

/// How often Prometheus scrapes the target.
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

/// A running Prometheus.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    /// `http://127.0.0.1:PORT`, its web and query API.
    pub url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Start Prometheus scraping `target` (`host:port`, path `/metrics`) every
    /// [`SCRAPE_INTERVAL`], and wait until it is ready.
    pub fn scraping(target: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_for(target)).expect("prometheus config");
        let log = dir.path().join("prometheus.log");
        let listen = format!("127.0.0.1:{}", free_port());
        let child = Command::new(binary())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("prometheus log"))
            .spawn()
            .expect("start prometheus (scripts/metrics-setup.sh installs it)");
        let prometheus = Self {
            child,
            url: format!("http://{listen}"),
            log,
            _dir: dir,
        };
        wait_for(Duration::from_secs(30), "Prometheus to be ready", || {
            prometheus
                .get("/-/ready", &[])
                .ok()
                .filter(|(status, _)| *status == 200)
        });
        prometheus
    }

    /// What Prometheus has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An instant query: each series' labels and value.
    pub fn query(&self, promql: &str) -> Vec<(Value, f64)> {
        let (status, body) = self
            .get("/api/v1/query", &[("query", promql)])
            .expect("the query API answers");
        let answer: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(status, 200, "query {promql}: {answer}");
        let result = answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        result
            .into_iter()
            .map(|series| {
                let value = series["value"][1].as_str().and_then(|v| v.parse().ok());
                (series["metric"].clone(), value.expect("a sample value"))
            })
            .collect()
    }

    /// The value of a query that yields one series, if it does yet.
    pub fn value(&self, promql: &str) -> Option<f64> {
        let result = self.query(promql);
        (result.len() == 1).then(|| result[0].1)
    }

    /// Wait until `promql` yields one value that `holds`, and return it.
    pub fn wait_value(&self, promql: &str, timeout: Duration, holds: impl Fn(f64) -> bool) -> f64 {
        let found = crate::wait_for_result(timeout, || self.value(promql).filter(|v| holds(*v)));
        found.unwrap_or_else(|| {
            panic!(
                "{promql} did not reach the expected value within {timeout:?}: now {:?}\n{}",
                self.query(promql),
                self.log()
            )
        })
    }

    fn get(&self, path: &str, query: &[(&str, &str)]) -> reqwest::Result<(u16, String)> {
        let url = format!("{}{path}", self.url);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let response = reqwest::Client::new()
                .get(&url)
                .query(query)
                .timeout(Duration::from_secs(10))
                .send()
                .await?;
            Ok((response.status().as_u16(), response.text().await?))
        })
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_for(target: &str) -> String {
    let every = SCRAPE_INTERVAL.as_secs();
    format!(
        "global:\n  scrape_interval: {every}s\n  scrape_timeout: {every}s\n\
         scrape_configs:\n  - job_name: outpost-hub\n    static_configs:\n      - targets: ['{target}']\n"
    )
}

/// The binary: `prometheus` on PATH, else Debian's path.
fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| candidate.is_file());
    on_path.unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"))
}

/// A loopback port free now (Prometheus takes no port 0 it would tell us).
fn free_port() -> u16 {
    let probe = TcpListener::bind("127.0.0.1:0").expect("a free port");
    probe.local_addr().expect("its address").port()
}

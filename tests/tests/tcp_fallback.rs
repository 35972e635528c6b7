//! Where UDP is blocked: the agent reaches the hub over TCP (QUIC in a TLS tunnel), directly or
//! through a real HTTP proxy (Debian's tinyproxy), and moves back to UDP when UDP answers again.
//!
//! In the netns rig (hub and agent in namespaces of their own, the emulated link between them),
//! nftables in the agent's namespace drops every UDP packet to the hub, as a hotel or corporate
//! network does, before the agent starts.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use outpost_tests::docker::{
    chatter, direct_logs, numbered_lines, random_bytes, require_engine, sha256_bytes, sha256_of,
    DockerCli, DOCKER_SOCKET,
};
use outpost_tests::rig::{Rig, HUB_IP};
use outpost_tests::{wait_for, wait_for_result, Agent, AgentOptions, Hub};
use tokio::time::Instant;

/// A short, clean link: 5 ms each way at 20 Mbit/s, so the test measures the fallback, not the link.
const PROFILE: &str = "description = \"tcp fallback test\"\n[both]\ndelay = \"5ms\"\nrate = \"20mbit\"\nqueue = \"256KB\"\n";

/// The nftables table that drops UDP between the agent and the hub, both ways.
const BLOCK_UDP: &str = "table inet outpost_block_udp {\n  chain out {\n    type filter hook output priority 0; policy accept;\n    ip daddr 198.18.0.1 udp dport 4433 drop\n  }\n  chain in {\n    type filter hook input priority 0; policy accept;\n    ip saddr 198.18.0.1 udp sport 4433 drop\n  }\n}\n";

/// Run `nft` in `netns` with `args`, feeding `input`; it must succeed.
fn nft(netns: &str, args: &[&str], input: &str) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns, "nft"])
        .args(args)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nft (scripts/fallback-setup.sh installs it)");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn block_udp(netns: &str) {
    nft(netns, &["-f", "-"], BLOCK_UDP);
}

fn unblock_udp(netns: &str) {
    nft(netns, &["delete", "table", "inet", "outpost_block_udp"], "");
}

/// Hub in the rig, UDP from the agent's namespace to it dropped. Fields drop in order.
struct Blocked {
    hub: Hub,
    rig: Rig,
    tmp: tempfile::TempDir,
}

impl Blocked {
    fn start(name: &str) -> Self {
        require_engine();
        let tmp = tempfile::tempdir().unwrap();
        let profile = tmp.path().join("tcp-fallback.toml");
        std::fs::write(&profile, PROFILE).unwrap();
        let prefix = format!("otf{}{name}", std::process::id() % 100_000);
        let rig = Rig::up(&prefix, profile.to_str().unwrap());
        let agent_addr = format!("{HUB_IP}:4433");
        let hub = Hub::start_in_netns(
            &rig.netns("hub"),
            tmp.path().join("hub"),
            &agent_addr,
            &format!("{HUB_IP}:9443"),
            // Check-ins 3 s apart, longer than the agent's ack timeout on `lan` (1.2 s), so a
            // check-in counts as missed before the next one is due.
            &[
                "--public-addr",
                agent_addr.as_str(),
                "--checkin-interval",
                "3s",
            ],
        );
        block_udp(&rig.netns("agent"));
        Self { hub, rig, tmp }
    }

    /// Start an agent for endpoint `key` in the agent namespace with `env` added.
    fn agent(&self, key: &str, env: &[(&str, &str)]) -> Agent {
        let options = AgentOptions {
            netns: Some(self.rig.netns("agent")),
            transport: "lan",
        };
        let socket = format!("unix://{DOCKER_SOCKET}");
        let mut all = vec![("EDGE_KEY", key), ("DOCKER_HOST", socket.as_str())];
        all.extend_from_slice(env);
        Agent::start_with(&self.tmp.path().join("agent"), &options, &all)
    }
}

/// `docker exec -i` and `docker cp` both ways through the hub, checked byte for byte.
fn exec_and_cp_work(docker: &DockerCli, name: &str, dir: &Path) {
    let input = random_bytes(200_000, 9);
    let out = docker.with_stdin(&["exec", "-i", name, "cat"], &input);
    assert!(
        out.status.success(),
        "exec -i: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == input, "exec -i output differs from its input");
    let upload = dir.join("upload.bin");
    std::fs::write(&upload, random_bytes(1_000_000, 4)).unwrap();
    docker.ok(&[
        "cp",
        upload.to_str().unwrap(),
        &format!("{name}:/tmp/up.bin"),
    ]);
    let download = dir.join("download.bin");
    docker.ok(&[
        "cp",
        &format!("{name}:/tmp/up.bin"),
        download.to_str().unwrap(),
    ]);
    assert_eq!(sha256_of(&download), sha256_of(&upload));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_udp_blocked_the_device_works_over_tcp_and_moves_back_to_quic_mid_logs() {
    let b = tokio::task::block_in_place(|| Blocked::start("back"));
    let (id, key) = b.hub.create_endpoint("udp-blocked", &[]);
    let started = Instant::now();
    // The first UDP retry within 3 s instead of 30, so the move back comes quickly.
    let agent = b.agent(&key, &[("OUTPOST_UDP_RETRY_S", "3")]);
    let shown =
        tokio::task::block_in_place(|| b.hub.wait_status(id, "standby", Duration::from_secs(20)));
    let online_after = started.elapsed();
    println!("online over TCP {online_after:?} after the agent started: {shown}");
    assert!(
        online_after < Duration::from_secs(10),
        "online only after {online_after:?}"
    );
    assert_eq!(shown["transport"], "tcp", "{shown}");
    assert!(
        shown["transport_reason"]
            .as_str()
            .unwrap()
            .starts_with("no QUIC answer within"),
        "{shown}"
    );
    assert!(
        shown["remote_addr"]
            .as_str()
            .unwrap()
            .starts_with("198.18.1.1:"),
        "the TCP peer's real address is shown: {shown}"
    );

    let docker = DockerCli::for_endpoint(&b.hub, id);
    let ps = tokio::task::block_in_place(|| docker.ok(&["ps", "--format", "{{.ID}}"]));
    println!("docker ps over TCP: {} containers", ps.lines().count());
    let sleeper = tokio::task::block_in_place(|| docker.start("tcp-cp", &["sleep", "300"]));
    tokio::task::block_in_place(|| exec_and_cp_work(&docker, &sleeper.name, b.tmp.path()));

    // A followed log that runs while UDP comes back and the session moves to it.
    let script = chatter(120, 500, "0.2");
    let talker = tokio::task::block_in_place(|| docker.start("tcp-logs", &["sh", "-c", &script]));
    let mut follower = docker.follow(&["logs", "-f", &talker.name]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!follower.has_exited(), "logs -f ended early");
    unblock_udp(&b.rig.netns("agent"));
    let unblocked = Instant::now();
    let moved = tokio::task::block_in_place(|| {
        wait_for(
            Duration::from_secs(20),
            "the session to move to QUIC",
            || {
                let shown = b.hub.show(id);
                (shown["transport"] == "quic").then_some(shown)
            },
        )
    });
    println!(
        "back on QUIC {:?} after UDP was unblocked: {moved}",
        unblocked.elapsed()
    );
    assert!(
        moved["remote_addr"]
            .as_str()
            .unwrap()
            .starts_with("198.18.1.1:"),
        "{moved}"
    );
    assert!(!follower.has_exited(), "logs -f ended at the move");
    let followed = tokio::task::block_in_place(|| follower.finish(Duration::from_secs(60)));
    assert!(followed.status.success(), "logs -f: {}", followed.stderr);
    let numbered: Vec<String> = followed
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("line "))
        .collect();
    assert_eq!(numbered, numbered_lines(120));
    let engine = tokio::task::block_in_place(|| direct_logs(&talker.name));
    assert_eq!(sha256_bytes(&followed.stdout), sha256_bytes(&engine));
    let log = agent.log();
    assert!(log.contains("moving the session to QUIC over UDP"), "{log}");
    assert!(
        !log.contains("reconnecting after backoff"),
        "the agent reconnected instead of migrating:\n{log}"
    );
    // And the device keeps working on UDP.
    tokio::task::block_in_place(|| docker.ok(&["ps"]));

    // The network starts dropping UDP under the live session: check-ins go unanswered while the
    // hub answers over TCP, so the agent takes TCP at once instead of waiting out the idle timeout.
    block_udp(&b.rig.netns("agent"));
    let blocked = Instant::now();
    let on_tcp = tokio::task::block_in_place(|| {
        wait_for_result(Duration::from_secs(30), || {
            let shown = b.hub.show(id);
            (shown["transport"] == "tcp" && shown["status"] == "standby").then_some(shown)
        })
    })
    .unwrap_or_else(|| panic!("not back over TCP in 30 s:\n{}", agent.log()));
    println!(
        "on TCP again {:?} after UDP was blocked mid-session: {on_tcp}",
        blocked.elapsed()
    );
    tokio::task::block_in_place(|| docker.ok(&["ps"]));
    assert!(
        agent
            .log()
            .contains("check-ins go unanswered but the hub answers over TCP"),
        "{}",
        agent.log()
    );
}

/// tinyproxy in the agent's namespace on 127.0.0.1:8888, allowing CONNECT to the hub's port only
/// for `user:password`; its log is `log`.
fn start_tinyproxy(
    netns: &str,
    dir: &Path,
    user: &str,
    password: &str,
) -> (Child, std::path::PathBuf) {
    let log = dir.join("tinyproxy.log");
    let conf = dir.join("tinyproxy.conf");
    std::fs::write(
        &conf,
        format!(
            "User nobody\nGroup nogroup\nPort 8888\nListen 127.0.0.1\nTimeout 600\n\
             LogFile \"{}\"\nLogLevel Connect\nMaxClients 10\nAllow 127.0.0.1\n\
             ConnectPort 4433\nBasicAuth {user} {password}\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::write(&log, "").unwrap();
    // tinyproxy writes its log as `nobody`.
    Command::new("chmod")
        .args(["666", log.to_str().unwrap()])
        .status()
        .unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", netns, "tinyproxy", "-d", "-c"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tinyproxy (scripts/fallback-setup.sh installs it)");
    (child, log)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn with_udp_blocked_the_device_works_through_a_real_http_proxy() {
    let b = Blocked::start("proxy");
    let (proxy, proxy_log) =
        start_tinyproxy(&b.rig.netns("agent"), b.tmp.path(), "kiosk", "s3cret");
    let _proxy = Killed(proxy);
    let (id, key) = b.hub.create_endpoint("behind-proxy", &[]);
    let started = Instant::now();
    let agent = b.agent(
        &key,
        &[("HTTPS_PROXY", "http://kiosk:s3cret@127.0.0.1:8888")],
    );
    let shown = b.hub.wait_status(id, "standby", Duration::from_secs(20));
    println!(
        "online through the proxy after {:?}: {shown}",
        started.elapsed()
    );
    assert_eq!(shown["transport"], "tcp via proxy", "{shown}");
    let docker = DockerCli::for_endpoint(&b.hub, id);
    docker.ok(&["ps"]);
    let sleeper = docker.start("proxy-cp", &["sleep", "300"]);
    exec_and_cp_work(&docker, &sleeper.name, b.tmp.path());
    let log = std::fs::read_to_string(&proxy_log).unwrap();
    assert!(
        log.contains("CONNECT") && log.contains(&format!("{HUB_IP}:4433")),
        "the proxy's log shows no CONNECT to the hub:\n{log}"
    );
    assert!(
        !agent.log().contains("s3cret"),
        "the proxy password reached the log"
    );
}

#[test]
fn a_wrong_proxy_password_is_a_clear_error_in_the_agent_log() {
    let b = Blocked::start("badpw");
    let (proxy, _log) = start_tinyproxy(&b.rig.netns("agent"), b.tmp.path(), "kiosk", "s3cret");
    let _proxy = Killed(proxy);
    let (id, key) = b.hub.create_endpoint("wrong-password", &[]);
    let agent = b.agent(
        &key,
        &[
            ("HTTPS_PROXY", "http://kiosk:wrong@127.0.0.1:8888"),
            ("OUTPOST_TCP_FALLBACK", "always"),
        ],
    );
    let line = wait_for(
        Duration::from_secs(20),
        "the agent to report the refusal",
        || {
            agent
                .log()
                .lines()
                .find(|l| l.contains("refused CONNECT"))
                .map(str::to_owned)
        },
    );
    // tinyproxy answers a bad BasicAuth with 401, where RFC 9110 would have 407.
    assert!(line.contains(" 401 ") || line.contains(" 407 "), "{line}");
    assert!(
        !line.contains("wrong"),
        "the password reached the log: {line}"
    );
    assert_eq!(b.hub.show(id)["status"], "offline");
}

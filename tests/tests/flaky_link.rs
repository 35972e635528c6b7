//! Sessions over a misbehaving path (first slice of the flaky-link work): the agent sits behind the
//! netem relay, which acts as a NAT, and the NAT moves the device to a new port while a
//! `docker logs -f` is streaming. QUIC migrates; the hub counts it; nothing is lost.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::io::{BufRead, BufReader};
use std::time::Duration;

use outpost_common::token::JoinToken;
use outpost_netem::control::Controllable;
use outpost_netem::{Profile, Relay};
use outpost_tests::docker::{require_engine, DockerCli};
use outpost_tests::{Agent, Hub};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nat_rebinding_during_logs_follow_loses_nothing_and_is_counted() {
    require_engine();
    let mut hub = tokio::task::spawn_blocking(Hub::start).await.unwrap();
    let relay = Relay::bind(
        "127.0.0.1:0".parse().unwrap(),
        hub.agent_addr.parse().unwrap(),
        Profile::transparent(),
        1,
    )
    .await
    .unwrap();
    let nat = relay.control();
    let relay_addr = relay.local_addr().to_string();
    // Devices reach this hub only through the NAT: that is the address its tokens and welcomes give.
    tokio::task::block_in_place(|| hub.restart_with(&["--public-addr", &relay_addr]));

    let (id, docker, _agent) = tokio::task::block_in_place(|| {
        let (id, key) = hub.create_endpoint("roaming", &[]);
        assert_eq!(
            JoinToken::decode(&key).unwrap().hub_addrs,
            vec![relay_addr.clone()]
        );
        let dir = hub.data_dir.parent().unwrap().join("roaming");
        let agent = Agent::start(
            &dir,
            &[
                ("EDGE_KEY", &key),
                ("DOCKER_HOST", "unix:///var/run/docker.sock"),
            ],
        );
        hub.wait_status(id, "standby", Duration::from_secs(20));
        (id, DockerCli::for_endpoint(&hub, id), agent)
    });
    let container = tokio::task::block_in_place(|| {
        docker.start(
            "roam",
            &[
                "sh",
                "-c",
                "i=0; while [ $i -lt 60 ]; do echo line $i; i=$((i+1)); sleep 0.1; done",
            ],
        )
    });

    let mut follower = docker.spawn(&["logs", "-f", &container.name]);
    let stdout = follower.stdout.take().unwrap();
    let reader = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map(Result::unwrap)
            .collect::<Vec<_>>()
    });
    let mut rebinds = 0;
    while !reader.is_finished() && rebinds < 10 {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        nat.rebind();
        rebinds += 1;
    }
    let lines = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .unwrap()
        .unwrap();
    follower.wait().unwrap();
    let expected: Vec<String> = (0..60).map(|i| format!("line {i}")).collect();
    assert_eq!(
        lines, expected,
        "the followed log lost or reordered lines across {rebinds} rebinds"
    );
    let moved = nat.counters().nat.rebinds;
    assert!(
        moved >= 3,
        "the NAT moved the device only {moved} times during the log ({rebinds} commands)"
    );

    // The hub saw the device come from new ports (counted at check-ins, every second here).
    let shown = tokio::task::block_in_place(|| {
        outpost_tests::wait_for(
            Duration::from_secs(10),
            "the migrations to be counted",
            || {
                let shown = hub.show(id);
                (shown["migrations"].as_u64().unwrap() + 1 >= moved).then_some(shown)
            },
        )
    });
    assert_ne!(shown["status"], "offline");
    drop(relay);
}

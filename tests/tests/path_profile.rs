//! `--transport auto`: the agent measures its path to the hub and dials with the profile that
//! fits it. Behind a 600 ms link (a geostationary round trip, no loss) an agent that starts from
//! its first guess (cellular) finds the satellite profile on its first connection, remembers it,
//! and after a restart dials with it from the start.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::Duration;

use outpost_netem::Profile;
use outpost_tests::link::{DeviceOptions, RelayedDevice};
use outpost_tests::{wait_for, Agent, AgentOptions};

fn geostationary() -> Profile {
    let mut profile = Profile::transparent();
    profile.up.delay.base = Duration::from_millis(300);
    profile.down.delay.base = Duration::from_millis(300);
    profile
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_on_a_satellite_path_measures_its_way_to_the_satellite_profile() {
    let options = DeviceOptions {
        profile: geostationary(),
        transport: "auto",
        ready_within: Duration::from_secs(60),
        ..DeviceOptions::default()
    };
    let mut d = RelayedDevice::start("dish", options).await;
    let dir = d.agent.data_dir.clone();
    let log = d.agent.log();
    assert!(
        log.contains(r#"transport profile transport="cellular" measured=false"#),
        "{log}"
    );
    assert!(
        log.contains("the path fits another transport profile")
            && log.contains(r#"to="satellite""#),
        "{log}"
    );
    let remembered = std::fs::read_to_string(dir.join("transport")).unwrap();
    assert_eq!(remembered.trim(), "satellite");

    d.agent.kill();
    let options = AgentOptions {
        netns: None,
        transport: "auto",
    };
    let agent = Agent::start_with(&dir, &options, &[]);
    let log = tokio::task::block_in_place(|| {
        wait_for(Duration::from_secs(60), "a new session", || {
            Some(agent.log()).filter(|log| log.contains("session established"))
        })
    });
    assert!(
        log.contains(r#"transport profile transport="satellite" measured=true"#),
        "{log}"
    );
    assert!(
        !log.contains("the path fits another transport profile"),
        "the remembered profile already fits: {log}"
    );
}

//! The stack engine on the machine's real dockerd (run scripts/docker-setup.sh as root first):
//! what a fleet user sees on a device when the hub applies a stack, updates it, sends a broken
//! version, loses the agent half-way, and removes it.
//!
//! Each test has a project of its own (its name and the test process's id) and a guard that
//! removes the project's containers, network and volumes when the test ends, passed or not.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

#[path = "stack_apply/harness.rs"]
mod harness;

use harness::{assert_compose_labels, broken, docker, recorder, TestStack};
use outpost_agent::stack::names::network_name;
use outpost_agent::stack::{
    apply, last_applied, observe, recover, remove, ApplyError, ContainerState, Progress, Recovered,
    RemoveVolumes,
};

#[tokio::test]
async fn a_two_service_stack_is_applied_as_a_compose_project_and_becomes_healthy() {
    let stack = TestStack::new("apply").await;
    let spec = stack.v1();
    let (events, progress) = recorder();

    let applied = apply(&stack.docker, stack.dir(), &spec, None, progress)
        .await
        .unwrap();

    assert_eq!(applied.started, ["db", "web"]);
    assert!(applied.kept.is_empty() && applied.removed.is_empty());
    let seen = events.lock().unwrap().clone();
    assert!(seen.contains(&Progress::Started {
        service: "db".to_owned()
    }));
    assert!(seen.contains(&Progress::Started {
        service: "web".to_owned()
    }));
    for service in &spec.services {
        let container = stack.inspect(&service.name).await.unwrap();
        assert_eq!(container.state.as_ref().unwrap().running, Some(true));
        assert_compose_labels(&container, &spec, service, stack.dir());
        let networks = container.network_settings.unwrap().networks.unwrap();
        let endpoint = &networks[&network_name(&stack.project)];
        assert!(endpoint
            .aliases
            .iter()
            .flatten()
            .any(|a| *a == service.name));
    }
    let web = stack.inspect("web").await.unwrap();
    let published = web.host_config.unwrap().port_bindings.unwrap()["80/tcp"].clone();
    let binding = &published.unwrap()[0];
    assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(binding.host_port, Some(stack.port.to_string()));
    let volume = stack
        .docker
        .inspect_volume(&spec.volume_name("data"))
        .await
        .unwrap();
    assert_eq!(volume.labels["com.docker.compose.project"], stack.project);
    assert_eq!(volume.labels["com.docker.compose.volume"], "data");
    stack.wait_healthy(&spec, "db").await;
    assert!(!observe(&stack.docker, &spec).await.unwrap().drifted());
    assert_eq!(
        last_applied(stack.dir(), &stack.project).unwrap(),
        Some(spec)
    );
    stack.assert_compose_lists(&["db", "web"]);
}

#[tokio::test]
async fn changing_one_service_of_a_stack_keeps_the_others_container() {
    let stack = TestStack::new("update").await;
    apply(&stack.docker, stack.dir(), &stack.v1(), None, |_| {})
        .await
        .unwrap();
    let before = stack.ids().await;
    let mut v2 = stack.v1();
    v2.version = 2;
    v2.services[1]
        .environment
        .push(("MODE".to_owned(), "v2".to_owned()));

    let applied = apply(&stack.docker, stack.dir(), &v2, None, |_| {})
        .await
        .unwrap();

    assert_eq!(applied.kept, ["db"]);
    assert_eq!(applied.started, ["web"]);
    let after = stack.ids().await;
    assert_eq!(after["db"], before["db"], "db's container is left alone");
    assert_ne!(after["web"], before["web"], "web's container is replaced");
    let web = stack.inspect("web").await.unwrap();
    let hash = &web.config.unwrap().labels.unwrap()["com.docker.compose.config-hash"];
    assert_eq!(*hash, v2.services[1].config_hash());
    assert_eq!(
        stack.containers().await,
        stack.names(&["db", "web"]),
        "no set-aside left"
    );
    assert!(stack.all_running().await);
}

#[tokio::test]
async fn a_service_dropped_from_a_stack_is_removed() {
    let stack = TestStack::new("drop").await;
    apply(&stack.docker, stack.dir(), &stack.v1(), None, |_| {})
        .await
        .unwrap();
    let before = stack.ids().await;
    let mut v2 = stack.v1();
    v2.version = 2;
    v2.services.truncate(1);

    let applied = apply(&stack.docker, stack.dir(), &v2, None, |_| {})
        .await
        .unwrap();

    assert_eq!(applied.kept, ["db"]);
    assert_eq!(applied.removed, [stack.name("web")]);
    assert_eq!(stack.containers().await, stack.names(&["db"]));
    assert_eq!(stack.ids().await["db"], before["db"]);
    assert!(!observe(&stack.docker, &v2).await.unwrap().drifted());
}

#[tokio::test]
async fn a_stack_version_with_a_missing_image_fails_with_the_engines_message_and_keeps_v1() {
    let stack = TestStack::new("pull").await;
    let v1 = stack.v1();
    apply(&stack.docker, stack.dir(), &v1, None, |_| {})
        .await
        .unwrap();
    let before = stack.ids().await;
    let mut v2 = stack.v1();
    v2.version = 2;
    v2.services[1].image = "outpost-test/does-not-exist:1".to_owned();

    let err = apply(&stack.docker, stack.dir(), &v2, None, |_| {})
        .await
        .unwrap_err();

    let ApplyError::Pull { image, message } = &err else {
        panic!("not a pull failure: {err}");
    };
    assert_eq!(image, "outpost-test/does-not-exist:1");
    let cli = docker(&["pull", "outpost-test/does-not-exist:1"]);
    assert!(
        !message.is_empty() && cli.contains(message.as_str()),
        "the engine's own words: {message:?}; the docker CLI said {cli:?}"
    );
    assert_eq!(stack.ids().await, before, "no container touched");
    assert!(stack.all_running().await);
    assert_eq!(last_applied(stack.dir(), &stack.project).unwrap(), Some(v1));
}

#[tokio::test]
async fn a_stack_version_whose_second_service_cannot_start_is_rolled_back() {
    let stack = TestStack::new("rollback").await;
    let v1 = stack.v1();
    apply(&stack.docker, stack.dir(), &v1, None, |_| {})
        .await
        .unwrap();
    let before = stack.ids().await;
    let mut v2 = broken(&v1);
    v2.services[0]
        .environment
        .push(("MODE".to_owned(), "v2".to_owned()));
    let (events, progress) = recorder();

    let err = apply(&stack.docker, stack.dir(), &v2, None, progress)
        .await
        .unwrap_err();

    let ApplyError::Engine {
        action,
        target,
        message,
    } = &err
    else {
        panic!("not an engine refusal: {err}");
    };
    assert_eq!(
        (*action, target.as_str()),
        ("start container", stack.name("web").as_str())
    );
    assert!(message.contains("/no/such/program"), "{message}");
    let seen = events.lock().unwrap().clone();
    assert!(
        seen.contains(&Progress::Started {
            service: "db".to_owned()
        }),
        "db was replaced"
    );
    assert!(
        matches!(seen.last(), Some(Progress::RollingBack { .. })),
        "{seen:?}"
    );
    assert_eq!(stack.ids().await, before, "v1's own containers run again");
    assert!(stack.all_running().await);
    assert_eq!(
        stack.containers().await,
        stack.names(&["db", "web"]),
        "nothing new or set aside"
    );
    assert_eq!(last_applied(stack.dir(), &stack.project).unwrap(), Some(v1));
    assert!(
        recover(&stack.docker, stack.dir())
            .await
            .unwrap()
            .is_empty(),
        "no journal left"
    );
}

#[tokio::test]
async fn a_first_stack_version_that_fails_leaves_nothing_behind() {
    let stack = TestStack::new("first").await;
    let spec = broken(&stack.v1());

    let err = apply(&stack.docker, stack.dir(), &spec, None, |_| {})
        .await
        .unwrap_err();

    assert!(
        matches!(
            err,
            ApplyError::Engine {
                action: "start container",
                ..
            }
        ),
        "{err}"
    );
    assert!(stack.containers().await.is_empty());
    assert!(!stack.network_exists().await, "the network it made is gone");
    assert_eq!(last_applied(stack.dir(), &stack.project).unwrap(), None);
}

#[tokio::test]
async fn an_agent_killed_mid_stack_apply_recovers_the_old_version() {
    let stack = TestStack::new("crash").await;
    apply(&stack.docker, stack.dir(), &stack.v1(), None, |_| {})
        .await
        .unwrap();
    let before = stack.ids().await;
    let mut v2 = stack.v1();
    v2.version = 2;
    for service in &mut v2.services {
        service
            .environment
            .push(("MODE".to_owned(), "v2".to_owned()));
    }

    // Killed right after db's new container started: web's is still v1's, db's old one is set aside.
    let crashed = stack.apply_until_killed(
        &v2,
        Progress::Started {
            service: "db".to_owned(),
        },
    );
    assert!(crashed.await.unwrap_err().is_panic());
    assert_ne!(
        stack.ids().await.get("db"),
        before.get("db"),
        "db was replaced when it died"
    );

    let recovered = recover(&stack.docker, stack.dir()).await.unwrap();

    let project = stack.project.clone();
    assert_eq!(
        recovered,
        [Recovered::RolledBack {
            project,
            version: 2
        }]
    );
    assert_eq!(stack.ids().await, before, "v1's containers, and only them");
    assert_eq!(stack.containers().await, stack.names(&["db", "web"]));
    assert!(stack.all_running().await);
    assert!(recover(&stack.docker, stack.dir())
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_agent_killed_after_a_stack_apply_committed_finishes_it() {
    let stack = TestStack::new("commit").await;
    apply(&stack.docker, stack.dir(), &stack.v1(), None, |_| {})
        .await
        .unwrap();
    let mut v2 = stack.v1();
    v2.version = 2;
    v2.services[1]
        .environment
        .push(("MODE".to_owned(), "v2".to_owned()));

    let crashed = stack.apply_until_killed(&v2, Progress::Committed);
    assert!(crashed.await.unwrap_err().is_panic());
    let recovered = recover(&stack.docker, stack.dir()).await.unwrap();

    let project = stack.project.clone();
    assert_eq!(
        recovered,
        [Recovered::Completed {
            project,
            version: 2
        }]
    );
    assert_eq!(
        stack.containers().await,
        stack.names(&["db", "web"]),
        "set-aside v1 web removed"
    );
    assert!(
        !observe(&stack.docker, &v2).await.unwrap().drifted(),
        "v2 runs"
    );
    assert_eq!(last_applied(stack.dir(), &stack.project).unwrap(), Some(v2));
}

#[tokio::test]
async fn observe_reports_stack_drift_when_a_container_is_removed_or_stopped_by_hand() {
    let stack = TestStack::new("drift").await;
    let spec = stack.v1();
    apply(&stack.docker, stack.dir(), &spec, None, |_| {})
        .await
        .unwrap();
    assert!(!observe(&stack.docker, &spec).await.unwrap().drifted());

    docker(&["rm", "-f", &stack.name("web")]);
    docker(&["stop", "-t", "1", &stack.name("db")]);

    let seen = observe(&stack.docker, &spec).await.unwrap();
    assert!(seen.drifted());
    assert_eq!(
        seen.services[0].state,
        ContainerState::NotRunning("exited".to_owned())
    );
    assert!(seen.services[0].current, "still db's version, only stopped");
    assert_eq!(seen.services[1].state, ContainerState::Missing);
    let applied = apply(&stack.docker, stack.dir(), &spec, None, |_| {})
        .await
        .unwrap();
    assert_eq!(
        applied.started,
        ["db", "web"],
        "a stopped container is replaced too"
    );
    assert!(!observe(&stack.docker, &spec).await.unwrap().drifted());
}

#[tokio::test]
async fn remove_takes_a_stack_away_and_keeps_its_data_unless_asked() {
    let stack = TestStack::new("remove").await;
    let spec = stack.v1();
    apply(&stack.docker, stack.dir(), &spec, None, |_| {})
        .await
        .unwrap();
    let volume = spec.volume_name("data");

    remove(
        &stack.docker,
        stack.dir(),
        &stack.project,
        RemoveVolumes::No,
    )
    .await
    .unwrap();

    assert!(stack.containers().await.is_empty());
    assert!(!stack.network_exists().await);
    assert!(
        stack.docker.inspect_volume(&volume).await.is_ok(),
        "data is kept"
    );
    assert_eq!(last_applied(stack.dir(), &stack.project).unwrap(), None);
    remove(
        &stack.docker,
        stack.dir(),
        &stack.project,
        RemoveVolumes::Yes,
    )
    .await
    .unwrap();
    assert!(
        stack.docker.inspect_volume(&volume).await.is_err(),
        "data removed when asked"
    );
}

use std::path::Path;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use tokio::time::Instant;

use outpost_protocol::wire::{self, AgentMessage, MAX_CONTROL_FRAME};

use super::*;

const SHORT: Duration = Duration::from_secs(1);
const PROMPT: Duration = Duration::from_secs(5);

fn engine_summary(
    id: &str,
    names: &[&str],
    state: ContainerSummaryStateEnum,
) -> models::ContainerSummary {
    models::ContainerSummary {
        id: Some(id.to_owned()),
        names: Some(names.iter().map(|n| (*n).to_owned()).collect()),
        image: Some("busybox".to_owned()),
        state: Some(state),
        status: Some("Up 3 hours".to_owned()),
        ..Default::default()
    }
}

#[test]
fn containers_are_counted_shortened_and_bounded() {
    let long_name = format!("/{}", "n".repeat(1000));
    let mut engine = vec![
        engine_summary(
            &"e".repeat(64),
            &["/stopped"],
            ContainerSummaryStateEnum::EXITED,
        ),
        engine_summary(
            &"a".repeat(64),
            &["/web", "/proxy/web"],
            ContainerSummaryStateEnum::RUNNING,
        ),
        engine_summary("b", &[&long_name], ContainerSummaryStateEnum::PAUSED),
    ];
    engine.extend((0..MAX_LISTED_CONTAINERS).map(|i| {
        engine_summary(
            &format!("x{i}"),
            &["/x"],
            ContainerSummaryStateEnum::CREATED,
        )
    }));
    let snapshot = summarize(engine);
    assert_eq!(snapshot.containers_running, 2);
    assert_eq!(
        snapshot.containers_stopped,
        1 + MAX_LISTED_CONTAINERS as u32
    );
    assert_eq!(snapshot.containers.len(), MAX_LISTED_CONTAINERS);
    let first = &snapshot.containers[0];
    assert_eq!(first.id, "a".repeat(12));
    assert_eq!(first.names, ["web", "proxy/web"]);
    assert_eq!(first.state, "running");
    let long = &snapshot.containers[1].names[0];
    assert_eq!(long.chars().count(), MAX_TEXT_CHARS);
    assert!(long.ends_with('…'));
    assert_eq!(
        snapshot.containers[2].id,
        "e".repeat(12),
        "up ones first, then the rest in order"
    );
}

/// Reads as a big engine answers them: `containers` containers, each with eight 256-character
/// names, nothing else failing.
fn big_engine(containers: usize) -> Reads {
    let names: Vec<String> = (0..MAX_NAMES)
        .map(|i| format!("/{i}{}", "n".repeat(300)))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let list = (0..containers)
        .map(|i| {
            let state = if i % 2 == 0 {
                ContainerSummaryStateEnum::EXITED
            } else {
                ContainerSummaryStateEnum::RUNNING
            };
            let mut c = engine_summary(&format!("{i:064}"), &names, state);
            c.image = Some(format!("registry.example.com/{}", "i".repeat(300)));
            c
        })
        .collect();
    Reads {
        version: Ok(models::SystemVersion {
            version: Some("27.3.1\u{1b}[31m".to_owned()),
            ..Default::default()
        }),
        containers: Ok(list),
        images: Ok(Vec::new()),
        volumes: Ok(models::VolumeListResponse::default()),
        networks: Ok(Vec::new()),
    }
}

#[test]
fn a_big_engine_is_trimmed_to_the_budget_running_containers_first() {
    let host = DockerHost::Unix("/run/docker.sock".into());
    let reads = big_engine(2 * MAX_LISTED_CONTAINERS);
    let untrimmed = reads
        .containers
        .as_ref()
        .map(|c| summarize(c.clone()))
        .unwrap();
    let frame = wire::encode_frame(&AgentMessage::Snapshot(untrimmed));
    assert!(
        frame.len() > MAX_CONTROL_FRAME,
        "the test engine needs trimming: {}",
        frame.len()
    );

    let snapshot = reads.into_snapshot(Failures::new(&host, SHORT), 1);
    let sent = wire::encode_frame(&AgentMessage::Snapshot(snapshot.clone()));
    println!(
        "{} of {} containers listed in {} bytes",
        snapshot.containers.len(),
        2 * MAX_LISTED_CONTAINERS,
        sent.len()
    );
    assert!(snapshot.encoded_len() <= SNAPSHOT_BUDGET);
    assert!(sent.len() < MAX_CONTROL_FRAME / 2, "{}", sent.len());
    let listed = snapshot.containers.len();
    assert!(listed > 0 && listed < MAX_LISTED_CONTAINERS / 2, "{listed}");
    assert_eq!(
        (snapshot.containers_running, snapshot.containers_stopped),
        (MAX_LISTED_CONTAINERS as u32, MAX_LISTED_CONTAINERS as u32),
        "counts stay exact, so the shorter list shows it was trimmed"
    );
    assert!(snapshot.containers.iter().all(|c| c.state == "running"));
    assert_eq!(snapshot.engine_version, "27.3.1\u{fffd}[31m", "sanitized");
}

#[tokio::test]
async fn a_missing_socket_is_a_snapshot_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let host = DockerHost::Unix(dir.path().join("docker.sock"));
    assert!(matches!(
        engine_client(&host),
        Err(SnapshotError::SocketMissing { .. })
    ));
    let snapshot = take_from(&host, 1_700_000_000).await;
    let error = snapshot.error.as_deref().unwrap();
    assert!(error.contains(&host.to_string()), "{error}");
    assert!(error.contains("no socket"), "{error}");
    assert_eq!(snapshot.taken_at, 1_700_000_000);
    assert_eq!((snapshot.containers_running, snapshot.images), (0, 0));
}

#[tokio::test]
async fn a_dead_socket_is_reported_promptly_with_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docker.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap()); // the file stays, nobody listens
    let host = DockerHost::Unix(path);
    let docker = engine_client(&host).unwrap().with_timeout(SHORT);
    let started = Instant::now();
    let snapshot = take(&docker, &host, 7).await;
    assert!(started.elapsed() < PROMPT, "took {:?}", started.elapsed());
    let error = snapshot.error.as_deref().unwrap();
    println!("dead socket: {error}");
    assert!(error.contains(&host.to_string()), "{error}");
    assert!(error.contains("refused"), "the cause is given: {error}");
    assert_eq!(snapshot.taken_at, 7);
    assert_eq!((snapshot.containers_running, snapshot.networks), (0, 0));
    assert!(snapshot.containers.is_empty());
}

#[tokio::test]
async fn a_silent_engine_is_cut_off_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docker.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream); // accepted, never answered
        }
    });
    let host = DockerHost::Unix(path);
    let docker = engine_client(&host).unwrap().with_timeout(SHORT);
    let started = Instant::now();
    let snapshot = take(&docker, &host, 7).await;
    assert!(started.elapsed() < PROMPT, "took {:?}", started.elapsed());
    let error = snapshot.error.as_deref().unwrap();
    println!("silent engine: {error}");
    assert!(error.contains(&host.to_string()), "{error}");
    assert!(error.contains("no answer within 1 s"), "{error}");
    silent.abort();
}

const REAL_SOCKET: &str = "/var/run/docker.sock";
const TEST_IMAGE: &str = "outpost-test/busybox:latest";

/// Against the machine's real engine (scripts/docker-setup.sh brings it up): a container we
/// start shows up, and the counts agree with the `docker` CLI's. Without that engine and its
/// test image this fails with the set-up advice, as the end-to-end tests do, rather than pass
/// having checked nothing.
#[tokio::test]
async fn the_real_engine_is_summarized() {
    let advice = "run scripts/docker-setup.sh (as root) first";
    assert!(
        Path::new(REAL_SOCKET).exists(),
        "no Docker engine at {REAL_SOCKET}: {advice}"
    );
    let host = DockerHost::Unix(REAL_SOCKET.into());
    let docker = engine_client(&host).unwrap();
    let image = docker.inspect_image(TEST_IMAGE).await;
    assert!(image.is_ok(), "no {TEST_IMAGE} on the engine: {advice}");
    let ours = start_test_container(&docker).await;
    let checked = check_against_cli(&docker, &host, &ours).await;
    let force = RemoveContainerOptionsBuilder::default().force(true).build();
    docker.remove_container(&ours.0, Some(force)).await.unwrap();
    checked.unwrap();
}

/// Starts a sleeping container; returns its id and name.
async fn start_test_container(docker: &Docker) -> (String, String) {
    let name = format!("outpost-snapshot-test-{}", std::process::id());
    let force = RemoveContainerOptionsBuilder::default().force(true).build();
    let _ = docker.remove_container(&name, Some(force)).await; // a leftover from a killed run
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    let body = ContainerCreateBody {
        image: Some(TEST_IMAGE.to_owned()),
        cmd: Some(vec!["sleep".to_owned(), "600".to_owned()]),
        host_config: Some(HostConfig {
            network_mode: Some("none".to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = docker.create_container(Some(options), body).await.unwrap();
    docker.start_container(&created.id, None).await.unwrap();
    (created.id, name)
}

/// Other tests share the engine, so counts may move between our snapshot and the CLI's: retry
/// a few times until both saw the same engine.
async fn check_against_cli(
    docker: &Docker,
    host: &DockerHost,
    ours: &(String, String),
) -> anyhow::Result<()> {
    let mut last = String::new();
    for _ in 0..5 {
        let snapshot = take(docker, host, 1).await;
        anyhow::ensure!(
            snapshot.error.is_none(),
            "engine unread: {:?}",
            snapshot.error
        );
        let seen = [
            snapshot.containers_running,
            snapshot.containers_stopped + snapshot.containers_running,
            snapshot.images,
            snapshot.volumes,
            snapshot.networks,
        ];
        let cli = cli_counts().await?;
        if seen == cli {
            println!(
                "engine {}: {seen:?} (running, all, images, volumes, networks)",
                snapshot.engine_version
            );
            anyhow::ensure!(!snapshot.engine_version.is_empty(), "no engine version");
            return check_ours(&snapshot, ours);
        }
        last = format!("snapshot {seen:?} vs docker CLI {cli:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    anyhow::bail!("counts never agreed: {last}")
}

fn check_ours(snapshot: &EngineSnapshot, (id, name): &(String, String)) -> anyhow::Result<()> {
    anyhow::ensure!(snapshot.containers_running >= 1, "our container is running");
    let listed = snapshot.containers.iter().find(|c| id.starts_with(&c.id));
    let listed = listed.ok_or_else(|| anyhow::anyhow!("{id} not listed"))?;
    anyhow::ensure!(listed.id.len() == 12, "short id: {listed:?}");
    anyhow::ensure!(listed.names == [name.clone()], "names: {listed:?}");
    anyhow::ensure!(listed.image == TEST_IMAGE, "image: {listed:?}");
    anyhow::ensure!(listed.state == "running", "state: {listed:?}");
    anyhow::ensure!(listed.status.starts_with("Up"), "status: {listed:?}");
    Ok(())
}

/// Running, all, images (distinct ids), volumes, networks, as the `docker` CLI counts them.
async fn cli_counts() -> anyhow::Result<[u32; 5]> {
    let mut counts = [0; 5];
    let queries: [&[&str]; 5] = [
        &["ps", "-q"],
        &["ps", "-aq"],
        &["images", "-q", "--no-trunc"],
        &["volume", "ls", "-q"],
        &["network", "ls", "-q"],
    ];
    for (count, args) in counts.iter_mut().zip(queries) {
        let out = tokio::process::Command::new("docker")
            .args(["-H", &format!("unix://{REAL_SOCKET}")])
            .args(args)
            .output()
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut lines: Vec<&str> = std::str::from_utf8(&out.stdout)?.lines().collect();
        lines.sort_unstable();
        lines.dedup();
        *count = u32::try_from(lines.len())?;
    }
    Ok(counts)
}

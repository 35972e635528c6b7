use outpost_protocol::stack::{DeviceMapping, PortProtocol};

use super::*;

fn pos() -> StackSpec {
    StackSpec {
        project: "pos".to_owned(),
        version: 3,
        services: vec![till()],
        volumes: vec!["data".to_owned()],
    }
}

/// A service that uses every field.
fn till() -> ServiceSpec {
    let port = |host_ip: Option<&str>, host_port, container_port, protocol| PortBinding {
        host_ip: host_ip.map(str::to_owned),
        host_port,
        container_port,
        protocol,
    };
    let mount = |source, target: &str, read_only| Mount {
        source,
        target: target.to_owned(),
        read_only,
    };
    ServiceSpec {
        name: "till".to_owned(),
        image: "registry.example/till:4".to_owned(),
        command: Some(vec!["serve".to_owned(), "--fast".to_owned()]),
        entrypoint: Some(vec![]),
        environment: vec![
            ("MODE".to_owned(), "kiosk".to_owned()),
            ("TOKEN".to_owned(), "a=b".to_owned()),
        ],
        ports: vec![
            port(Some("127.0.0.1"), Some(8080), 80, PortProtocol::Tcp),
            port(None, Some(8081), 80, PortProtocol::Tcp),
            port(None, None, 53, PortProtocol::Udp),
        ],
        mounts: vec![
            mount(MountSource::Volume("data".to_owned()), "/data", false),
            mount(MountSource::Anonymous, "/cache", false),
            mount(MountSource::Bind("/etc/till".to_owned()), "/config", true),
            mount(MountSource::Bind("/odd:path".to_owned()), "/odd", false),
        ],
        restart: RestartPolicy::OnFailure { max_retries: 5 },
        healthcheck: Some(Healthcheck {
            test: vec!["CMD-SHELL".to_owned(), "true".to_owned()],
            interval_ms: Some(500),
            timeout_ms: Some(2_000),
            start_period_ms: None,
            retries: Some(3),
        }),
        labels: vec![
            (
                "com.docker.compose.project".to_owned(),
                "spoofed".to_owned(),
            ),
            ("shop".to_owned(), "12".to_owned()),
        ],
        depends_on: vec![],
        user: Some("1000:1000".to_owned()),
        working_dir: Some("/srv".to_owned()),
        devices: vec![DeviceMapping {
            host: "/dev/ttyUSB0".to_owned(),
            container: "/dev/printer".to_owned(),
            permissions: "rwm".to_owned(),
        }],
        privileged: true,
        logging: Some(Logging {
            driver: "local".to_owned(),
            options: vec![("max-size".to_owned(), "10m".to_owned())],
        }),
    }
}

fn body() -> ContainerCreateBody {
    let spec = pos();
    container_body(
        &spec,
        &spec.services[0],
        Path::new("/var/lib/outpost/stacks"),
    )
}

#[test]
fn process_fields_are_passed_as_written() {
    let body = body();
    assert_eq!(body.image.as_deref(), Some("registry.example/till:4"));
    assert_eq!(
        body.cmd,
        Some(vec!["serve".to_owned(), "--fast".to_owned()])
    );
    assert_eq!(body.entrypoint, Some(vec![]), "Some([]) clears the image's");
    assert_eq!(
        body.env,
        Some(vec!["MODE=kiosk".to_owned(), "TOKEN=a=b".to_owned()])
    );
    assert_eq!(body.user.as_deref(), Some("1000:1000"));
    assert_eq!(body.working_dir.as_deref(), Some("/srv"));
}

#[test]
fn an_absent_command_or_entrypoint_keeps_the_images() {
    let mut spec = pos();
    spec.services[0].command = None;
    spec.services[0].entrypoint = None;
    spec.services[0].healthcheck = None;
    let body = container_body(&spec, &spec.services[0], Path::new("/s"));
    assert_eq!(body.cmd, None);
    assert_eq!(body.entrypoint, None);
    assert_eq!(body.healthcheck, None);
}

#[test]
fn ports_are_exposed_once_and_published_per_binding() {
    let body = body();
    assert_eq!(
        body.exposed_ports,
        Some(vec!["53/udp".to_owned(), "80/tcp".to_owned()])
    );
    let bindings = body.host_config.unwrap().port_bindings.unwrap();
    let web = bindings["80/tcp"].clone().unwrap();
    assert_eq!(web.len(), 2);
    assert_eq!(web[0].host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(web[0].host_port.as_deref(), Some("8080"));
    assert_eq!(web[1].host_ip, None);
    assert_eq!(web[1].host_port.as_deref(), Some("8081"));
    let dns = bindings["53/udp"].clone().unwrap();
    assert_eq!(dns[0].host_port.as_deref(), Some(""), "the engine picks");
}

#[test]
fn the_healthcheck_is_in_nanoseconds() {
    let check = body().healthcheck.unwrap();
    assert_eq!(
        check.test,
        Some(vec!["CMD-SHELL".to_owned(), "true".to_owned()])
    );
    assert_eq!(check.interval, Some(500_000_000));
    assert_eq!(check.timeout, Some(2_000_000_000));
    assert_eq!(check.start_period, None);
    assert_eq!(check.retries, Some(3));
}

#[test]
fn composes_labels_are_added_over_the_services_own() {
    let labels = body().labels.unwrap();
    let hash = pos().services[0].config_hash();
    let expected = [
        ("com.docker.compose.project", "pos"),
        ("com.docker.compose.service", "till"),
        ("com.docker.compose.config-hash", hash.as_str()),
        ("com.docker.compose.container-number", "1"),
        ("com.docker.compose.oneoff", "False"),
        (
            "com.docker.compose.project.working_dir",
            "/var/lib/outpost/stacks",
        ),
        ("com.docker.compose.version", "1.29.2"),
        ("shop", "12"),
    ];
    for (key, value) in expected {
        assert_eq!(labels.get(key).map(String::as_str), Some(value), "{key}");
    }
    assert_eq!(labels.len(), expected.len());
}

#[test]
fn binds_volumes_and_anonymous_volumes_are_mounted() {
    let host = body().host_config.unwrap();
    assert_eq!(host.binds, Some(vec!["/etc/till:/config:ro".to_owned()]));
    let mounts = host.mounts.unwrap();
    let summary: Vec<_> = mounts
        .iter()
        .map(|m| (m.typ, m.source.as_deref(), m.target.as_deref(), m.read_only))
        .collect();
    assert_eq!(
        summary,
        [
            (
                Some(MountType::VOLUME),
                Some("pos_data"),
                Some("/data"),
                Some(false)
            ),
            (Some(MountType::VOLUME), None, Some("/cache"), Some(false)),
            (
                Some(MountType::BIND),
                Some("/odd:path"),
                Some("/odd"),
                Some(false)
            ),
        ]
    );
}

#[test]
fn host_settings_are_mapped() {
    let host = body().host_config.unwrap();
    let restart = host.restart_policy.unwrap();
    assert_eq!(restart.name, Some(RestartPolicyNameEnum::ON_FAILURE));
    assert_eq!(restart.maximum_retry_count, Some(5));
    let devices = host.devices.unwrap();
    assert_eq!(devices[0].path_on_host.as_deref(), Some("/dev/ttyUSB0"));
    assert_eq!(
        devices[0].path_in_container.as_deref(),
        Some("/dev/printer")
    );
    assert_eq!(devices[0].cgroup_permissions.as_deref(), Some("rwm"));
    assert_eq!(host.privileged, Some(true));
    let log = host.log_config.unwrap();
    assert_eq!(log.typ.as_deref(), Some("local"));
    assert_eq!(log.config.unwrap()["max-size"], "10m");
}

#[test]
fn every_restart_policy_has_the_engines_name() {
    let names = [
        (RestartPolicy::No, "no"),
        (RestartPolicy::Always, "always"),
        (RestartPolicy::UnlessStopped, "unless-stopped"),
        (RestartPolicy::OnFailure { max_retries: 0 }, "on-failure"),
    ];
    for (policy, name) in names {
        let engine = restart_policy(policy);
        assert_eq!(engine.name.map(|n| n.to_string()).as_deref(), Some(name));
    }
}

#[test]
fn the_service_joins_the_project_network_under_its_name() {
    let body = body();
    let host = body.host_config.as_ref().unwrap();
    assert_eq!(host.network_mode.as_deref(), Some("pos_default"));
    let endpoints = body.networking_config.unwrap().endpoints_config.unwrap();
    assert_eq!(
        endpoints["pos_default"].aliases,
        Some(vec!["till".to_owned()])
    );
}

/// The shape the engine reads: exposed ports as an object of empty objects, durations as numbers.
#[test]
fn the_body_serializes_as_the_engine_expects() {
    let json = serde_json::to_value(body()).unwrap();
    assert_eq!(
        json["ExposedPorts"],
        serde_json::json!({"53/udp": {}, "80/tcp": {}})
    );
    assert_eq!(json["Healthcheck"]["Interval"], 500_000_000);
    assert_eq!(json["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(json["HostConfig"]["Mounts"][0]["Type"], "volume");
}

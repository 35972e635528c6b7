use super::*;

fn service(name: &str) -> ServiceSpec {
    ServiceSpec {
        environment: vec![("MODE".to_owned(), "kiosk".to_owned())],
        ports: vec![PortBinding {
            host_ip: None,
            host_port: Some(8080),
            container_port: 80,
            protocol: PortProtocol::Tcp,
        }],
        restart: RestartPolicy::UnlessStopped,
        ..ServiceSpec::new(name, "nginx:1.27")
    }
}

fn stack() -> StackSpec {
    let mut web = service("web");
    web.depends_on = vec!["db".to_owned()];
    web.mounts = vec![Mount {
        source: MountSource::Volume("data".to_owned()),
        target: "/data".to_owned(),
        read_only: false,
    }];
    StackSpec {
        project: "pos".to_owned(),
        version: 1,
        services: vec![service("db"), web],
        volumes: vec!["data".to_owned()],
    }
}

#[test]
fn a_well_formed_stack_passes_and_round_trips() {
    let spec = stack();
    assert_eq!(spec.check(), Ok(()));
    let decoded: StackSpec = wire::decode(&wire::encode(&spec)).unwrap();
    assert_eq!(decoded, spec);
    assert_eq!(spec.volume_name("data"), "pos_data");
}

#[test]
fn start_order_and_volumes_are_checked() {
    let mut spec = stack();
    spec.services.reverse();
    assert_eq!(
        spec.check(),
        Err(StackError::StartOrder {
            service: "web".to_owned(),
            dependency: "db".to_owned()
        })
    );
    let mut spec = stack();
    spec.volumes.clear();
    assert!(matches!(
        spec.check(),
        Err(StackError::UndeclaredVolume { volume, .. }) if volume == "data"
    ));
    let mut spec = stack();
    spec.services[1].name = "db".to_owned();
    spec.services[1].depends_on.clear();
    assert_eq!(
        spec.check(),
        Err(StackError::DuplicateService("db".to_owned()))
    );
}

#[test]
fn names_the_engine_would_refuse_are_refused() {
    for bad in [
        "",
        "Pos",
        "-pos",
        "pos/evil",
        "pos stack",
        &"p".repeat(MAX_NAME + 1),
    ] {
        let mut spec = stack();
        spec.project = bad.to_owned();
        assert!(
            matches!(
                spec.check(),
                Err(StackError::BadName {
                    what: "project",
                    ..
                })
            ),
            "{bad:?}"
        );
    }
    let mut spec = stack();
    spec.services[0].name = "../db".to_owned();
    assert!(matches!(
        spec.check(),
        Err(StackError::BadName {
            what: "service",
            ..
        })
    ));
}

#[test]
fn service_count_and_size_are_bounded() {
    let mut spec = stack();
    spec.services.clear();
    assert_eq!(spec.check(), Err(StackError::ServiceCount(0)));
    let mut spec = stack();
    spec.services[0].environment = vec![("BIG".to_owned(), "x".repeat(MAX_STACK_BYTES))];
    assert!(matches!(spec.check(), Err(StackError::TooLarge(n)) if n > MAX_STACK_BYTES));
}

#[test]
fn config_hash_changes_with_the_service_only() {
    let spec = stack();
    let mut changed = spec.clone();
    changed.version = 2;
    changed.services[1].image = "nginx:1.28".to_owned();
    assert_eq!(
        spec.services[0].config_hash(),
        changed.services[0].config_hash()
    );
    assert_ne!(
        spec.services[1].config_hash(),
        changed.services[1].config_hash()
    );
    assert_eq!(spec.services[0].config_hash().len(), 64);
}

#[test]
fn desired_state_digest_names_the_content() {
    let empty = DesiredState::default();
    let one = DesiredState {
        stacks: vec![stack()],
    };
    let mut other = one.clone();
    other.stacks[0].version = 2;
    assert_ne!(empty.digest(), one.digest());
    assert_ne!(one.digest(), other.digest());
    assert_eq!(one.digest(), one.clone().digest());
}

#[test]
fn a_full_desired_state_fits_one_control_frame() {
    let mut big = stack();
    // One service carrying as much as a stack may: MAX_STACK_BYTES less a little.
    big.services[0].environment = vec![("FILL".to_owned(), "x".repeat(MAX_STACK_BYTES - 400))];
    assert_eq!(big.check(), Ok(()));
    let stacks: Vec<StackSpec> = (0..MAX_STACKS_PER_DEVICE)
        .map(|i| StackSpec {
            project: format!("p{i}"),
            ..big.clone()
        })
        .collect();
    let state = DesiredState { stacks };
    assert_eq!(state.check(), Ok(()));
    let frame = wire::encode_frame(&wire::HubMessage::Desired(state.clone()));
    assert!(
        frame.len() <= wire::MAX_CONTROL_FRAME,
        "{} bytes",
        frame.len()
    );
    let every_stack_reported = DesiredOrder {
        report_drift: state.stacks.iter().map(|s| s.project.clone()).collect(),
        state: state.clone(),
    };
    assert_eq!(every_stack_reported.check(), Ok(()));
    let frame = wire::encode_frame(&wire::HubMessage::DesiredOrder(every_stack_reported));
    assert!(
        frame.len() <= wire::MAX_CONTROL_FRAME,
        "{} bytes",
        frame.len()
    );

    let mut seven = state.clone();
    seven.stacks.push(StackSpec {
        project: "p7".to_owned(),
        ..stack()
    });
    assert_eq!(seven.check(), Err(StackError::TooManyStacks));
    let mut twice = state;
    twice.stacks.truncate(2);
    twice.stacks[1].project = "p0".to_owned();
    assert_eq!(twice.check(), Err(StackError::TooManyStacks));
}

#[test]
fn an_order_that_reapplies_everything_has_the_states_digest() {
    let state = DesiredState {
        stacks: vec![stack()],
    };
    let reapply = DesiredOrder::from(state.clone());
    assert_eq!(
        reapply.digest(),
        state.digest(),
        "what a version-3 agent names"
    );
    let report = DesiredOrder {
        state: state.clone(),
        report_drift: vec!["pos".to_owned()],
    };
    assert_ne!(
        report.digest(),
        state.digest(),
        "the policy alone is a change"
    );
    assert!(report.reports_drift("pos") && !reapply.reports_drift("pos"));
    let decoded: DesiredOrder = wire::decode(&wire::encode(&report)).unwrap();
    assert_eq!(decoded, report);
}

#[test]
fn a_drift_policy_names_each_stack_of_the_state_once_in_order() {
    let other = StackSpec {
        project: "signage".to_owned(),
        ..stack()
    };
    let state = DesiredState {
        stacks: vec![stack(), other],
    };
    let order = |names: &[&str]| DesiredOrder {
        state: state.clone(),
        report_drift: names.iter().map(|n| (*n).to_owned()).collect(),
    };
    assert_eq!(order(&["pos", "signage"]).check(), Ok(()));
    assert_eq!(
        order(&["kiosk"]).check(),
        Err(StackError::DriftPolicy("kiosk".to_owned())),
        "not a stack of the state"
    );
    assert_eq!(
        order(&["pos", "pos"]).check(),
        Err(StackError::DriftPolicy("pos".to_owned()))
    );
    assert_eq!(
        order(&["signage", "pos"]).check(),
        Err(StackError::DriftPolicy("pos".to_owned()))
    );
    let mut seven = order(&[]);
    seven.state.stacks = (0..=MAX_STACKS_PER_DEVICE)
        .map(|i| StackSpec {
            project: format!("p{i}"),
            ..stack()
        })
        .collect();
    assert_eq!(
        seven.check(),
        Err(StackError::TooManyStacks),
        "the state's rules too"
    );
}

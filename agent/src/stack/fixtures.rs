//! Specs for the unit tests.

use outpost_protocol::stack::{RestartPolicy, ServiceSpec, StackSpec};

/// A service with nothing but a name and an image.
pub(crate) fn service(name: &str) -> ServiceSpec {
    ServiceSpec {
        name: name.to_owned(),
        image: "busybox".to_owned(),
        command: None,
        entrypoint: None,
        environment: vec![],
        ports: vec![],
        mounts: vec![],
        restart: RestartPolicy::No,
        healthcheck: None,
        labels: vec![],
        depends_on: vec![],
        user: None,
        working_dir: None,
        devices: vec![],
        privileged: false,
        logging: None,
    }
}

/// Version 2 of project `pos` with services `db`, `web` and `new`.
pub(crate) fn spec() -> StackSpec {
    StackSpec {
        project: "pos".to_owned(),
        version: 2,
        services: vec![service("db"), service("web"), service("new")],
        volumes: vec![],
    }
}

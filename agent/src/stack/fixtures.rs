//! Specs for the unit tests.

use outpost_protocol::stack::{ServiceSpec, StackSpec};

/// A service with nothing but a name and an image.
pub(crate) fn service(name: &str) -> ServiceSpec {
    ServiceSpec::new(name, "busybox")
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

//! What a request needs, from its method and path alone: a least [`Role`] and how far it reaches
//! ([`Reach`]). Unknown routes need an unscoped `admin`, so a route added without a line here is
//! closed rather than open.

use axum::http::Method;
use outpost_protocol::EndpointId;

use super::Role;
use crate::api::id::parse_canonical;

/// How far a request reaches into the fleet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Nothing device-specific (stack templates, the registry mirror): any scope may.
    Anywhere,
    /// The whole fleet (credentials, fleet-wide metrics, endpoint creation): unscoped only.
    Fleet,
    /// One device: it must be in the credential's scope.
    Device(EndpointId),
    /// Work over a selection (the endpoint list, jobs, rollouts): the handler narrows it to the
    /// credential's scope.
    Selection,
}

/// What a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    /// The least role.
    pub role: Role,
    /// How far it reaches.
    pub reach: Reach,
}

const fn need(role: Role, reach: Reach) -> Need {
    Need { role, reach }
}

/// What `method` on `path` needs.
pub fn of(method: &Method, path: &str) -> Need {
    let reads = *method == Method::GET || *method == Method::HEAD;
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let read_or = |writer: Role| if reads { Role::Viewer } else { writer };
    match segments.as_slice() {
        ["api", "endpoints"] if reads => need(Role::Viewer, Reach::Selection),
        ["api", "endpoints", id, rest @ ..] => device(method, reads, id, rest),
        ["api", "stacks", ..] if reads => need(Role::Viewer, Reach::Anywhere),
        ["api", "stacks", ..] => need(Role::Operator, Reach::Fleet),
        ["api", "rollouts" | "jobs"] | ["api", "rollouts" | "jobs", _] => {
            need(read_or(Role::Operator), Reach::Selection)
        }
        ["api", "rollouts", _, _] | ["api", "jobs", _, "cancel"] if !reads => {
            need(Role::Operator, Reach::Selection)
        }
        ["api", "jobs", _, "devices", endpoint] if reads => match parse_canonical(endpoint) {
            Some(id) => need(Role::Viewer, Reach::Device(EndpointId(id))),
            None => need(Role::Admin, Reach::Fleet),
        },
        ["metrics"] if reads => need(Role::Viewer, Reach::Fleet),
        // A pushed image is served to every device that names it: the catalog is read by
        // viewers, changed by admins.
        ["api", "images"] => need(read_or(Role::Admin), Reach::Fleet),
        // Which groups check in minutes apart: fleet-wide, read by viewers, set by admins.
        ["api", "quiet"] => need(read_or(Role::Admin), Reach::Fleet),
        ["api", "hubs"] if reads => need(Role::Viewer, Reach::Fleet),
        ["v2", ..] if reads => need(Role::Viewer, Reach::Anywhere),
        _ => need(Role::Admin, Reach::Fleet),
    }
}

/// `/api/endpoints/{id}/…`: reading is a viewer's, the proxy's writes and summons an operator's,
/// the device's own record (approve, labels, reset, delete) an admin's.
fn device(method: &Method, reads: bool, id: &str, rest: &[&str]) -> Need {
    let Some(id) = parse_canonical(id) else {
        return need(Role::Admin, Reach::Fleet);
    };
    let role = match rest {
        [] if reads => Role::Viewer,
        ["docker", ..] if reads => Role::Viewer,
        ["docker", ..] => Role::Operator,
        ["summon"] if *method == Method::POST => Role::Operator,
        _ => Role::Admin,
    };
    need(role, Reach::Device(EndpointId(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: Method, path: &str, role: Role, reach: Reach) {
        assert_eq!(of(&method, path), need(role, reach), "{method} {path}");
    }

    const SEVEN: Reach = Reach::Device(EndpointId(7));

    #[test]
    fn reading_a_device_is_a_viewers_and_writing_through_its_proxy_an_operators() {
        check(Method::GET, "/api/endpoints/7", Role::Viewer, SEVEN);
        check(
            Method::GET,
            "/api/endpoints/7/docker/v1.41/containers/json",
            Role::Viewer,
            SEVEN,
        );
        check(
            Method::HEAD,
            "/api/endpoints/7/docker/_ping",
            Role::Viewer,
            SEVEN,
        );
        check(
            Method::POST,
            "/api/endpoints/7/docker/v1.41/containers/x/start",
            Role::Operator,
            SEVEN,
        );
        check(
            Method::DELETE,
            "/api/endpoints/7/docker/v1.41/containers/x",
            Role::Operator,
            SEVEN,
        );
        check(
            Method::POST,
            "/api/endpoints/7/summon",
            Role::Operator,
            SEVEN,
        );
    }

    #[test]
    fn a_devices_own_record_is_an_admins() {
        check(Method::PATCH, "/api/endpoints/7", Role::Admin, SEVEN);
        check(Method::DELETE, "/api/endpoints/7", Role::Admin, SEVEN);
        check(Method::POST, "/api/endpoints/7/approve", Role::Admin, SEVEN);
        check(Method::POST, "/api/endpoints/7/reset", Role::Admin, SEVEN);
        check(Method::POST, "/api/endpoints/7/tags", Role::Admin, SEVEN);
        check(
            Method::DELETE,
            "/api/endpoints/7/tags/x",
            Role::Admin,
            SEVEN,
        );
        check(Method::GET, "/api/endpoints/7/summon", Role::Admin, SEVEN);
    }

    #[test]
    fn credentials_and_endpoint_creation_need_an_unscoped_admin_even_to_read() {
        for path in [
            "/api/tokens",
            "/api/tokens/ci",
            "/api/admin-certs",
            "/api/admin-certs/x",
            "/api/audit",
        ] {
            check(Method::GET, path, Role::Admin, Reach::Fleet);
            check(Method::DELETE, path, Role::Admin, Reach::Fleet);
        }
        check(
            Method::POST,
            "/api/admin-token/rotate",
            Role::Admin,
            Reach::Fleet,
        );
        check(Method::POST, "/api/endpoints", Role::Admin, Reach::Fleet);
        check(Method::GET, "/metrics", Role::Viewer, Reach::Fleet);
    }

    #[test]
    fn fleet_work_is_an_operators_and_narrowed_to_the_scope() {
        check(
            Method::GET,
            "/api/endpoints",
            Role::Viewer,
            Reach::Selection,
        );
        for kind in ["jobs", "rollouts"] {
            check(
                Method::GET,
                &format!("/api/{kind}"),
                Role::Viewer,
                Reach::Selection,
            );
            check(
                Method::POST,
                &format!("/api/{kind}"),
                Role::Operator,
                Reach::Selection,
            );
            check(
                Method::GET,
                &format!("/api/{kind}/3"),
                Role::Viewer,
                Reach::Selection,
            );
        }
        check(
            Method::POST,
            "/api/rollouts/3/pause",
            Role::Operator,
            Reach::Selection,
        );
        check(
            Method::POST,
            "/api/jobs/3/cancel",
            Role::Operator,
            Reach::Selection,
        );
        check(Method::GET, "/api/jobs/3/devices/7", Role::Viewer, SEVEN);
        check(
            Method::GET,
            "/api/stacks/web",
            Role::Viewer,
            Reach::Anywhere,
        );
        check(Method::POST, "/api/stacks", Role::Operator, Reach::Fleet);
        check(
            Method::DELETE,
            "/api/stacks/web",
            Role::Operator,
            Reach::Fleet,
        );
        check(
            Method::GET,
            "/v2/library/app/manifests/v1",
            Role::Viewer,
            Reach::Anywhere,
        );
    }

    #[test]
    fn pushing_an_image_into_the_mirror_is_an_unscoped_admins() {
        check(Method::POST, "/api/images", Role::Admin, Reach::Fleet);
        // So is removing one; reading the catalog is a viewer's.
        check(Method::DELETE, "/api/images", Role::Admin, Reach::Fleet);
        check(Method::GET, "/api/images", Role::Viewer, Reach::Fleet);
        // Pulling what was pushed stays a viewer's, through the mirror.
        check(
            Method::HEAD,
            "/v2/outpost/app/manifests/1",
            Role::Viewer,
            Reach::Anywhere,
        );
    }

    #[test]
    fn the_hubs_are_listed_to_unscoped_viewers() {
        check(Method::GET, "/api/hubs", Role::Viewer, Reach::Fleet);
        check(Method::POST, "/api/hubs", Role::Admin, Reach::Fleet);
    }

    #[test]
    fn the_quiet_policy_is_read_by_viewers_and_set_by_unscoped_admins() {
        check(Method::GET, "/api/quiet", Role::Viewer, Reach::Fleet);
        check(Method::PUT, "/api/quiet", Role::Admin, Reach::Fleet);
        check(Method::GET, "/api/quiet/x", Role::Admin, Reach::Fleet);
    }

    #[test]
    fn anything_unknown_or_oddly_spelled_needs_an_unscoped_admin() {
        for (method, path) in [
            (Method::GET, "/api/webhooks"),
            (Method::POST, "/api/nothing"),
            (Method::GET, "/api/endpoints/07/docker/_ping"),
            (Method::GET, "/api/endpoints/x"),
            (Method::GET, "/api/jobs/3/devices/07"),
            (Method::PUT, "/v2/library/app/blobs/uploads/"),
            (Method::POST, "/metrics"),
        ] {
            check(method, path, Role::Admin, Reach::Fleet);
        }
    }
}

//! The device's loopback registry (issue #16 item 2): the engine pulls `127.0.0.1:PORT/<name>`
//! from the agent, and the agent fetches what the engine lacks from the hub's mirror over QUIC
//! fetch streams ([`outpost_protocol::fetch`]), resuming cut blobs from the byte they stopped at.
//!
//! Why a registry and not an image load: the engine then pulls as usual, asks only for the layers
//! it does not have, verifies them itself, and every tool on the device (`docker pull`, compose)
//! works unchanged; the agent only has to be a small, read-only distribution API server.
//!
//! - [`http`]: the distribution API routes the engine calls.
//! - [`fetch`]: fetch streams over the current session ([`HubLink`]), with resume and retry.
//! - [`resume`]: where to ask from and whether to try again, without I/O.
//! - [`store`]: blobs on disk, `.partial` while they arrive, verified before they are served.
//!
//! On by default at [`DEFAULT_LISTEN`] (`--registry-listen`, `off` to disable): a fixed, documented
//! address means a stack or an operator can name `127.0.0.1:5380/<image>` on every device without
//! asking each agent where it listens. An agent whose port is taken logs it and runs without one;
//! a hub without a mirror grants no fetch streams, and the registry answers the engine 503.

pub mod fetch;
mod http;
mod recent;
pub mod resume;
pub mod store;
mod window;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use outpost_protocol::registry::name::{is_docker_hub, split_host};

pub use fetch::HubLink;
use recent::RecentManifests;
use store::LocalBlobs;
use tracing::{info, warn};

/// Where the registry listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5380";

/// The name `image` is pulled by through the registry at `listen` when the hub's default
/// upstream is `default_host`: `127.0.0.1:5380/pos/web:4` for `registry.example/pos/web:4`. When
/// that upstream is Docker Hub, its names without a host are its (`nginx:1.25`,
/// `docker.io/library/nginx:1.25` and `grafana/agent` too; the hub asks Docker Hub for
/// `library/nginx`). `None` for an image from another registry (the hub would route its name
/// elsewhere) or named by digest (it could not be tagged with its own name afterwards).
pub fn loopback_name(image: &str, default_host: &str, listen: SocketAddr) -> Option<String> {
    if image.contains('@') {
        return None;
    }
    let requested = split_host(image).ok()?;
    let docker_hub = is_docker_hub(default_host);
    let ours = match requested.host {
        Some(host) => host == default_host || (docker_hub && is_docker_hub(host)),
        None => docker_hub,
    };
    ours.then(|| format!("{listen}/{}", requested.rest))
}

/// What the registry's requests share.
#[derive(Debug)]
struct Loopback {
    link: HubLink,
    blobs: LocalBlobs,
    recent: Mutex<RecentManifests>,
}

/// Bind `addr` and serve the registry from `<data_dir>/registry` in the background; the returned
/// link is handed to each session. `None` (logged) when the address or the directory is unusable.
pub fn start(addr: SocketAddr, data_dir: &Path) -> Option<HubLink> {
    let blobs = LocalBlobs::open(data_dir)
        .inspect_err(|e| warn!("this device runs no loopback registry: {e}"))
        .ok()?;
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(tokio::net::TcpListener::from_std)
        .inspect_err(|e| warn!(%addr, "this device runs no loopback registry: {e}"))
        .ok()?;
    let link = HubLink::new(addr);
    let registry = Arc::new(Loopback {
        link: link.clone(),
        blobs,
        recent: Mutex::default(),
    });
    info!(%addr, "loopback registry listening");
    let sweeping = registry.clone();
    tokio::spawn(async move {
        if let Err(e) = sweeping.blobs.sweep(std::time::SystemTime::now()).await {
            warn!("cannot sweep the registry's blobs: {e}");
        }
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, http::router(registry)).await {
            warn!("loopback registry stopped: {e}");
        }
    });
    Some(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_images_of_the_default_upstream_go_through_the_registry() {
        let listen: SocketAddr = DEFAULT_LISTEN.parse().unwrap();
        let host = "198.18.0.1:5000";
        assert_eq!(
            loopback_name("198.18.0.1:5000/outpost/big:1", host, listen).as_deref(),
            Some("127.0.0.1:5380/outpost/big:1")
        );
        assert_eq!(
            loopback_name("198.18.0.1:5000/outpost/big@sha256:00", host, listen),
            None
        );
        assert_eq!(
            loopback_name("elsewhere.example/outpost/big:1", host, listen),
            None
        );
        // Docker Hub names carry no host: they are not the default upstream's.
        assert_eq!(loopback_name("outpost/big:1", host, listen), None);
        assert_eq!(loopback_name("busybox", host, listen), None);
    }

    #[test]
    fn a_docker_hub_upstream_takes_names_without_a_host() {
        let listen: SocketAddr = DEFAULT_LISTEN.parse().unwrap();
        let host = "registry-1.docker.io";
        let through = |image| loopback_name(image, host, listen);
        assert_eq!(
            through("nginx:1.25").as_deref(),
            Some("127.0.0.1:5380/nginx:1.25")
        );
        assert_eq!(
            through("grafana/agent:v0.40").as_deref(),
            Some("127.0.0.1:5380/grafana/agent:v0.40")
        );
        assert_eq!(
            through("docker.io/library/nginx:1.25").as_deref(),
            Some("127.0.0.1:5380/library/nginx:1.25")
        );
        assert_eq!(through("registry.example/pos/web:4"), None);
        assert_eq!(through("nginx@sha256:00"), None);
    }
}

//! The session's side of the loopback registry ([`crate::loopback`]): the registry serves the
//! device's engine across sessions, and is told by each session when its hub grants fetch
//! streams (with the upstreams it mirrors) and the transfer window it sets, and, however the
//! session ends, that it ended.

use outpost_protocol::fetch::check_upstreams;
use outpost_protocol::window::TransferWindow;
use tracing::{info, warn};

use crate::loopback::HubLink;

/// The loopback registry's link, attached while this session's hub grants fetch streams and
/// detached when the session ends, however it ends.
#[derive(Debug)]
pub(super) struct Registry(HubLink);

impl Registry {
    /// A session is up; its hub has granted nothing yet.
    pub(super) fn start(link: HubLink) -> Self {
        link.session_started();
        Self(link)
    }

    /// The hub grants `streams` fetch streams on `conn`, mirroring `upstreams`; upstreams that
    /// are no image name prefixes are dropped, all of them.
    pub(super) fn attach(&self, conn: &quinn::Connection, streams: u32, upstreams: Vec<String>) {
        let upstreams = if check_upstreams(&upstreams) {
            upstreams
        } else {
            warn!("the hub named upstream hosts that are no image name prefixes");
            Vec::new()
        };
        info!(
            streams,
            ?upstreams,
            "the hub serves its registry mirror to this device"
        );
        self.0.attach(conn.clone(), upstreams);
    }

    /// The hub set the device's transfer window, or removed it.
    pub(super) fn set_window(&self, window: Option<TransferWindow>) {
        self.0.set_window(window);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.0.detach();
    }
}

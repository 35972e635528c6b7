//! Which streams get tail repair: parity over the end of each burst, so a packet lost in a
//! transfer's last round trip is rebuilt by the receiver instead of resent a round trip later
//! (quinn-proto's `TransportConfig::tail_repair`, an Outpost patch: `vendor/README.md`).
//!
//! Only streams that carry bulk data ask for it: an image's blobs, a `docker load` body, a
//! `docker save` answer. The sender then spends an eighth of each burst's unacknowledged tail
//! on parity (bursts under 16 KB get none), and the receiver keeps the last ~45 KB it read,
//! which is why the control stream, open on every idle connection, does not ask. Both calls
//! only take effect where the connection's profile enables tail repair on both sides
//! ([`crate::profile::TransportProfile::tail_repair`]).

/// The data this side sends on `send` may be bulk: protect the end of its bursts.
pub fn send_bulk(send: &quinn::SendStream) {
    // Fails only on a stream already closed, which has nothing left to protect.
    let _ = send.set_tail_repair(true);
}

/// The data this side receives on `recv` may be bulk: keep what rebuilding needs.
pub fn receive_bulk(recv: &quinn::RecvStream) {
    // As above: a closed stream has nothing left to rebuild.
    let _ = recv.set_tail_repair(true);
}

//! `wire::decode` of every message type on the same bytes (an enrolment stream, the control
//! stream in both directions, datagrams), with the round-trip checks of `check_wire`, and the
//! restart notice a stopping hub puts in its close reason.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_protocol::wire::{
    AgentMessage, Datagram, EnrollReply, EnrollRequest, HubMessage, RestartNotice,
};
use outpost_fuzz::check_wire;

fuzz_target!(|data: &[u8]| {
    check_wire::<EnrollRequest>(data);
    check_wire::<EnrollReply>(data);
    check_wire::<HubMessage>(data);
    check_wire::<AgentMessage>(data);
    check_wire::<Datagram>(data);
    if let Some(notice) = RestartNotice::decode(data) {
        assert!(notice.spread <= RestartNotice::MAX_SPREAD);
        assert_eq!(RestartNotice::decode(notice.encode().as_bytes()), Some(notice));
    }
});

//! `wire::decode` of every message type on the same bytes (an enrolment stream, the control
//! stream in both directions, datagrams), with the round-trip checks of `check_wire`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_common::wire::{AgentMessage, Datagram, EnrollReply, EnrollRequest, HubMessage};
use outpost_fuzz::check_wire;

fuzz_target!(|data: &[u8]| {
    check_wire::<EnrollRequest>(data);
    check_wire::<EnrollReply>(data);
    check_wire::<HubMessage>(data);
    check_wire::<AgentMessage>(data);
    check_wire::<Datagram>(data);
});

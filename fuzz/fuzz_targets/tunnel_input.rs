//! What a TCP tunnel's first bytes and packets meet on the hub from anyone who completes TLS: the
//! hello decoder, and the packet reader over a stream of lengths and bodies. A hello that decodes
//! re-encodes to the same bytes; every packet read is within `MAX_PACKET` and non-empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_fuzz::block_on;
use outpost_protocol::tunnel::{self, MAX_PACKET};

fuzz_target!(|data: &[u8]| {
    if let Ok(hello) = tunnel::decode_hello(data) {
        assert_eq!(tunnel::encode_hello(&hello), data);
    }
    let mut reader = data;
    let mut buf = Vec::new();
    while block_on(tunnel::read_packet(&mut reader, &mut buf)).is_ok() {
        assert!(!buf.is_empty() && buf.len() <= MAX_PACKET);
    }
});

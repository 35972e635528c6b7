//! The fetch stream preface ([`outpost_protocol::fetch`]): `read_request` (agent → hub) and
//! `read_reply` + `check_reply` (hub → agent) over split reads. Byte 0 picks the decoder (bit 6)
//! and whether a request gets the magic bytes put in front (bit 5). Nothing panics, and an
//! accepted request encodes back to itself; `protocol/tests/hostile_fetch.rs` is the always-on
//! shadow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_fuzz::{block_on, Chunked};
use outpost_protocol::fetch::{self, FetchRequest, FetchTarget, MAGIC};

fuzz_target!(|data: &[u8]| {
    let [seed, stream @ ..] = data else {
        return;
    };
    if seed & 0x40 != 0 {
        let asked = FetchRequest {
            name: "pos/web".into(),
            target: FetchTarget::Blob {
                digest: format!("sha256:{}", "a".repeat(64)),
                offset: 7,
            },
        };
        let Ok(asked) = asked.check() else { return };
        if let Ok(reply) = block_on(fetch::read_reply(&mut Chunked::new(stream, *seed))) {
            let _ = fetch::check_reply(&asked, reply);
        }
        return;
    }
    let prefixed = [&MAGIC[..], stream].concat();
    let bytes = if seed & 0x20 != 0 { &prefixed[..] } else { stream };
    if let Ok(fetch) = block_on(fetch::read_request(&mut Chunked::new(bytes, *seed))) {
        let again = fetch::encode_request(&fetch.to_request());
        assert_eq!(block_on(fetch::read_request(&mut again.as_slice())).ok(), Some(fetch));
    }
});

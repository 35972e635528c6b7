//! What a registry request is made of, parsed and bounded: repository names and manifest
//! references ([`name`]), content digests ([`digest`]) and byte ranges ([`range`]).
//!
//! They live here, beside the wire's other decoders, because both sides read them from untrusted
//! text — the hub's mirror from registry clients and upstreams, the agent's loopback registry from
//! its engine — and because `fuzz/` covers this crate's decoders (`registry_input`).

pub mod digest;
pub mod name;
pub mod range;

//! Outpost's close codes ([`CloseCode`], defined with the protocol) as QUIC varints.
//!
//! The protocol crate names the codes without depending on quinn; this trait is the one place
//! that turns them into what `Connection::close` takes and reads them back from a
//! `ConnectionError::ApplicationClosed`.

use outpost_protocol::wire::CloseCode;
use quinn::VarInt;

/// [`CloseCode`] to and from a QUIC application error code.
pub trait CloseCodeVarint: Sized {
    /// The code for `Connection::close`.
    fn to_varint(self) -> VarInt;
    /// Interpret a received application close code; `None` for a code we do not define.
    fn from_varint(code: VarInt) -> Option<Self>;
}

impl CloseCodeVarint for CloseCode {
    fn to_varint(self) -> VarInt {
        VarInt::from_u32(self.code())
    }

    fn from_varint(code: VarInt) -> Option<Self> {
        Self::from_code(code.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_unknown_codes_are_none() {
        for code in [CloseCode::Done, CloseCode::Revoked, CloseCode::Stopping] {
            assert_eq!(CloseCode::from_varint(code.to_varint()), Some(code));
        }
        assert_eq!(CloseCode::from_varint(VarInt::from_u32(999)), None);
    }
}

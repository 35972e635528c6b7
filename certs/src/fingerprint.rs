//! Certificate fingerprints and serial numbers: the two ways the hub names a certificate.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::PkiError;

/// SHA-256 of a certificate's DER encoding.
///
/// The join token carries the fingerprint of the hub CA; agents trust only a hub that presents
/// that exact certificate. Displays as 64 lowercase hex digits and parses from hex (either case,
/// colons allowed, as `openssl x509 -fingerprint -sha256` prints it).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PkiError::BadHex {
            what: "fingerprint",
            input: s.to_owned(),
            expected: "64 hex digits (a SHA-256 digest), optionally separated by colons",
        };
        let bytes = parse_hex(&s.replace(':', "")).ok_or_else(err)?;
        bytes.try_into().map(Self).map_err(|_| err())
    }
}

/// A certificate's serial number, as the hub records it and revokes by it.
///
/// Serials the hub issues are 16 random bytes with 126 bits of entropy (the first byte is forced
/// into `0x40..=0x7f` so the DER INTEGER is exactly those 16 bytes), unique without a counter.
/// Displays as lowercase hex; leading zero bytes are dropped so the same INTEGER always has the
/// same text.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertSerial(Vec<u8>);

impl CertSerial {
    /// The serial from the big-endian bytes of the DER INTEGER (leading zeros are dropped).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        let trimmed = &bytes[start..];
        Self(if trimmed.is_empty() {
            vec![0]
        } else {
            trimmed.to_vec()
        })
    }

    /// A fresh random serial: 16 bytes whose first byte is in `0x01..=0x7f`.
    ///
    /// RFC 5280 wants a positive INTEGER of at most 20 octets; keeping the top bit clear and the
    /// first byte non-zero means the DER encoding is exactly these 16 bytes (no sign padding, no
    /// trimming), so what we record is byte-for-byte what the certificate says.
    pub(crate) fn random() -> Result<Self, PkiError> {
        let mut bytes = [0u8; 16];
        crate::pem::fill_random(&mut bytes)?;
        bytes[0] = (bytes[0] & 0x7f) | 0x40;
        Ok(Self(bytes.to_vec()))
    }

    /// The big-endian bytes of the serial.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for CertSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for CertSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertSerial({self})")
    }
}

impl FromStr for CertSerial {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let cleaned = s.replace(':', "");
        let padded = if cleaned.len() % 2 == 1 {
            format!("0{cleaned}")
        } else {
            cleaned
        };
        match parse_hex(&padded) {
            Some(bytes) if !bytes.is_empty() && bytes.len() <= 21 => Ok(Self::from_bytes(&bytes)),
            _ => Err(PkiError::BadHex {
                what: "certificate serial",
                input: s.to_owned(),
                expected: "1 to 42 hex digits",
            }),
        }
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_round_trips_through_hex() {
        let fp = Fingerprint::of(b"certificate");
        let text = fp.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text, text.to_lowercase());
        assert_eq!(text.parse::<Fingerprint>().unwrap(), fp);
        assert_eq!(text.to_uppercase().parse::<Fingerprint>().unwrap(), fp);
    }

    #[test]
    fn fingerprint_refuses_wrong_length_and_non_hex() {
        assert!(matches!(
            "abcd".parse::<Fingerprint>(),
            Err(PkiError::BadHex { .. })
        ));
        assert!("zz".repeat(32).parse::<Fingerprint>().is_err());
        assert!("é".repeat(32).parse::<Fingerprint>().is_err());
    }

    #[test]
    fn serial_is_canonical() {
        let a = CertSerial::from_bytes(&[0, 0, 0x12, 0x34]);
        assert_eq!(a.to_string(), "1234");
        assert_eq!("01234".parse::<CertSerial>().unwrap(), a);
        assert_eq!("12:34".parse::<CertSerial>().unwrap(), a);
        assert!("".parse::<CertSerial>().is_err());
        assert!("xyz".parse::<CertSerial>().is_err());
    }

    #[test]
    fn random_serial_is_positive_and_16_bytes() {
        let s = CertSerial::random().unwrap();
        assert_eq!(s.as_bytes().len(), 16);
        assert!(s.as_bytes()[0] & 0x80 == 0 && s.as_bytes()[0] != 0);
        assert_ne!(s, CertSerial::random().unwrap());
    }
}

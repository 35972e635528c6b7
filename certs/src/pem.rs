//! PEM encoding and decoding, atomic file writes, and randomness.

use std::fs::{self, OpenOptions};
use std::io::Write;
#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::PkiError;

/// All certificates in a PEM text, in order. Errors if there are none.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    certs_from_pem_named(pem, "certificate PEM")
}

pub(crate) fn certs_from_pem_named(
    pem: &str,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, e))?;
    if certs.is_empty() {
        return Err(PkiError::Pem {
            what: what.to_owned(),
            detail: "no CERTIFICATE section found".to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, SEC1 or PKCS#1) in a PEM text.
pub fn private_key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| pem_error("private key PEM", e))
}

/// PEM text (`-----BEGIN CERTIFICATE-----`, 64-column base64) for a DER certificate.
pub fn cert_to_pem(der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(body.len() + body.len() / 64 + 60);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    // base64 output is ASCII, so splitting on byte offsets is always on char boundaries.
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn pem_error(what: &str, e: rustls::pki_types::pem::Error) -> PkiError {
    PkiError::Pem {
        what: what.to_owned(),
        detail: e.to_string(),
    }
}

/// Write a secret (a private key) atomically with mode 0600.
///
/// The bytes go to a temporary file in the same directory, created with mode 0600 so the secret
/// is never readable by others even for a moment, flushed to disk, then renamed over `path`. A
/// crash leaves either the old file or the new one, never a torn one.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    write_atomic(path, bytes, 0o600)
}

/// Write a public file (a certificate) atomically with mode 0644.
pub fn write_public_file(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    write_atomic(path, bytes, 0o644)
}

fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let tmp = temp_path(path)?;
    let result = write_new(&tmp, bytes, mode)
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| PkiError::io("rename to", path, e)));
    if result.is_err() {
        // Best effort: the temporary file is garbage either way.
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_parent(path);
    Ok(())
}

fn write_new(tmp: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options
        .open(tmp)
        .map_err(|e| PkiError::io("create", tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| PkiError::io("write", tmp, e))
}

fn temp_path(path: &Path) -> Result<PathBuf, PkiError> {
    let mut suffix = [0u8; 6];
    fill_random(&mut suffix)?;
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{suffix}"));
    Ok(path.with_file_name(name))
}

/// Make the rename durable. Failure only weakens crash safety, so it is not an error.
fn sync_parent(path: &Path) {
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(dir) = fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
}

/// Read a whole text file, naming the path in the error.
pub(crate) fn read_text(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|e| PkiError::io("read", path, e))
}

/// Fill `buf` from the operating system's secure random source (through ring).
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), PkiError> {
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(buf)
        .map_err(|_| PkiError::Tls(rustls::Error::FailedToGetRandomBytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_pem_round_trips() {
        let der: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let pem = cert_to_pem(&der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        let back = certs_from_pem(&pem).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].as_ref(), der.as_slice());
    }

    #[test]
    fn empty_pem_is_an_error() {
        assert!(matches!(certs_from_pem(""), Err(PkiError::Pem { .. })));
        assert!(matches!(
            private_key_from_pem("junk"),
            Err(PkiError::Pem { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn private_file_is_0600_and_replaces_atomically() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_private_file(&path, b"one").unwrap();
        write_private_file(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp files left"
        );
    }
}

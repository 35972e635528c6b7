//! A reader in front of the tar reader that bounds what it would hold in memory.
//!
//! The `tar` crate reads a GNU long name (`L`), long link (`K`) or PAX extension (`x`, `g`)
//! entry whole into memory, however large its header says it is: a hostile archive could make
//! the hub allocate gigabytes before any of our bounds applies. This guard walks the archive's
//! 512-byte blocks as they pass, reads each header's type and size, and refuses a metadata
//! entry past [`MAX_META_BYTES`] before a byte of it is handed on. It follows entry boundaries
//! the way the tar reader does (data padded to 512 bytes; a PAX `size` record overriding the next
//! entry's size); what it cannot follow as surely it refuses, since `docker save` never writes
//! it: GNU sparse entries (extension blocks of their own) and a global PAX `size`.

use std::io::{self, Read};

/// Largest metadata entry passed on (a long path is at most a few KiB).
pub const MAX_META_BYTES: u64 = 64 << 10;
const BLOCK: usize = 512;

/// Where the guard is in the archive.
#[derive(Clone, Copy, Debug)]
enum At {
    /// At a header: the next block is read whole and checked.
    Header,
    /// Handing out the checked header block, from this offset.
    Block(usize),
    /// Inside an entry's data (padding included): this many bytes left.
    Data(u64),
}

/// The guard over `inner`.
#[derive(Debug)]
pub struct HeaderGuard<R> {
    inner: R,
    block: Box<[u8; BLOCK]>,
    at: At,
    /// The current entry's type and size as its data will run (before padding).
    kind: u8,
    size: u64,
    /// The PAX extension being passed on, kept to read its `size` record.
    pax: Option<Vec<u8>>,
    /// A `size` from the last PAX extension: the next entry's real size.
    pax_size: Option<u64>,
}

impl<R: Read> HeaderGuard<R> {
    /// Guard the archive read from `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            block: Box::new([0; BLOCK]),
            at: At::Header,
            kind: 0,
            size: 0,
            pax: None,
            pax_size: None,
        }
    }

    /// Read the next header block whole and check it; `false` at the end of the input.
    fn next_header(&mut self) -> io::Result<bool> {
        let mut filled = 0;
        while filled < BLOCK {
            match self.inner.read(&mut self.block[filled..])? {
                0 if filled == 0 => return Ok(false),
                0 => return Err(invalid("the archive ends inside a header".into())),
                n => filled += n,
            }
        }
        self.check_header()?;
        self.at = At::Block(0);
        Ok(true)
    }

    /// The entry's type and the length of its data, with metadata entries bounded.
    fn check_header(&mut self) -> io::Result<()> {
        if self.block.iter().all(|b| *b == 0) {
            (self.kind, self.size) = (0, 0);
            return Ok(());
        }
        let kind = self.block[156];
        let header_size = size_field(&self.block[124..136])?;
        let size = match kind {
            b'L' | b'K' | b'x' | b'g' if header_size > MAX_META_BYTES => {
                return Err(invalid(format!(
                    "a tar metadata entry (type {:?}) of {header_size} bytes; at most {MAX_META_BYTES}",
                    kind as char
                )));
            }
            b'L' | b'K' | b'x' | b'g' => header_size,
            b'S' => {
                return Err(invalid(
                    "a sparse tar entry (docker save writes none)".into(),
                ))
            }
            _ => self.pax_size.take().unwrap_or(header_size),
        };
        if kind == b'x' || kind == b'g' {
            self.pax = Some(Vec::with_capacity(size as usize));
        }
        (self.kind, self.size) = (kind, size);
        Ok(())
    }

    /// An entry's data has passed: a PAX extension's `size` applies to the next entry.
    fn end_of_data(&mut self) -> io::Result<()> {
        let Some(mut pax) = self.pax.take() else {
            return Ok(());
        };
        pax.truncate(self.size as usize);
        match (self.kind, pax_size(&pax)?) {
            (b'g', Some(_)) => Err(invalid(
                "a global PAX size (docker save writes none)".into(),
            )),
            (b'x', size) => {
                self.pax_size = size;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl<R: Read> Read for HeaderGuard<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match self.at {
                At::Header => {
                    if !self.next_header()? {
                        return Ok(0);
                    }
                }
                At::Block(offset) => {
                    let n = out.len().min(BLOCK - offset);
                    out[..n].copy_from_slice(&self.block[offset..offset + n]);
                    self.at = if offset + n == BLOCK {
                        At::Data(self.size.div_ceil(BLOCK as u64) * BLOCK as u64)
                    } else {
                        At::Block(offset + n)
                    };
                    return Ok(n);
                }
                At::Data(0) => {
                    self.end_of_data()?;
                    self.at = At::Header;
                }
                At::Data(left) => {
                    let want = out.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.inner.read(&mut out[..want])?;
                    if let Some(pax) = &mut self.pax {
                        pax.extend_from_slice(&out[..n]);
                    }
                    self.at = At::Data(left - n as u64);
                    return Ok(n);
                }
            }
        }
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// A header's size field: octal digits (NUL or space padded), or base-256 when its first byte's
/// top bit is set.
fn size_field(field: &[u8]) -> io::Result<u64> {
    if field[0] & 0x80 != 0 {
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for byte in &field[1..] {
            value = value
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(*byte)))
                .ok_or_else(|| invalid("a tar size past 2^64".into()))?;
        }
        return Ok(value);
    }
    let text = std::str::from_utf8(field).map_err(|_| invalid("a malformed tar size".into()))?;
    let digits = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if digits.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(digits, 8).map_err(|_| invalid(format!("a malformed tar size {digits:?}")))
}

/// The `size` record of PAX extension data (`"<len> size=<n>\n"` records), if any.
fn pax_size(data: &[u8]) -> io::Result<Option<u64>> {
    let mut rest = data;
    let mut size = None;
    while !rest.is_empty() {
        let space = rest.iter().position(|b| *b == b' ');
        let len = space
            .and_then(|at| std::str::from_utf8(&rest[..at]).ok())
            .and_then(|text| text.parse::<usize>().ok())
            .filter(|len| *len > 0 && *len <= rest.len())
            .ok_or_else(|| invalid("a malformed PAX record".into()))?;
        let record = &rest[space.unwrap_or(0) + 1..len];
        if let Some(value) = record.strip_prefix(b"size=") {
            let text = std::str::from_utf8(value.strip_suffix(b"\n").unwrap_or(value));
            let parsed = text.ok().and_then(|t| t.parse::<u64>().ok());
            size = Some(parsed.ok_or_else(|| invalid("a malformed PAX size".into()))?);
        }
        rest = &rest[len..];
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, kind: u8, size: u64) -> Vec<u8> {
        let mut header = tar::Header::new_ustar();
        header.set_path(name).unwrap_or_default();
        header.set_size(size);
        header.set_entry_type(tar::EntryType::new(kind));
        header.set_cksum();
        header.as_bytes().to_vec()
    }

    fn read_all(bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        HeaderGuard::new(bytes).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn an_archive_passes_unchanged() {
        let mut builder = tar::Builder::new(Vec::new());
        let long = format!("{}/layer.tar", "d".repeat(300));
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_cksum();
        builder
            .append_data(&mut h, &long, &b"abc"[..])
            .unwrap_or_default();
        let mut h = tar::Header::new_gnu();
        h.set_size(1000);
        h.set_cksum();
        builder
            .append_data(&mut h, "big", &[7u8; 1000][..])
            .unwrap_or_default();
        let archive = builder.into_inner().unwrap_or_default();
        assert_eq!(read_all(&archive).ok(), Some(archive.clone()));
        // One byte at a time, too.
        let mut guard = HeaderGuard::new(&archive[..]);
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        while guard.read(&mut byte).unwrap_or(0) == 1 {
            out.push(byte[0]);
        }
        assert_eq!(out, archive);
    }

    #[test]
    fn a_huge_long_name_or_pax_entry_is_refused_before_its_bytes() {
        for kind in [b'L', b'K', b'x', b'g'] {
            let bytes = header("././@LongLink", kind, 1 << 40);
            let refused = read_all(&bytes).unwrap_err();
            assert!(refused.to_string().contains("metadata entry"), "{refused}");
        }
        let refused = read_all(&header("s", b'S', 10)).unwrap_err();
        assert!(refused.to_string().contains("sparse"), "{refused}");
    }

    #[test]
    fn a_pax_size_moves_the_next_boundary() {
        let record = b"15 size=100000\n";
        let mut bytes = header("pax", b'x', record.len() as u64);
        let mut data = record.to_vec();
        data.resize(BLOCK, 0);
        bytes.extend_from_slice(&data);
        bytes.extend_from_slice(&header("file", b'0', 0));
        // The file's 100,000 bytes hold what would be a huge long name header if the guard
        // believed the header's size of 0.
        let mut content = header("x", b'L', 1 << 40);
        content.resize(100_352, 0);
        bytes.extend_from_slice(&content);
        assert_eq!(read_all(&bytes).ok().map(|b| b.len()), Some(bytes.len()));
        assert_eq!(pax_size(b"15 size=100000\n").ok(), Some(Some(100_000)));
        assert!(pax_size(b"99 size=1\n").is_err());
    }

    #[test]
    fn sizes_are_read_in_octal_and_base_256() {
        assert_eq!(size_field(b"00000001750\0").ok(), Some(1000));
        assert_eq!(size_field(b"\0\0\0\0\0\0\0\0\0\0\0\0").ok(), Some(0));
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[11] = 2;
        big[10] = 1;
        assert_eq!(size_field(&big).ok(), Some(258));
        assert!(size_field(b"12x45678901\0").is_err());
    }
}

//! Outpost patch: parity for the tail of a stream's burst (tail repair).
//!
//! A packet lost in the last round trip of a transfer is found lost about a round trip after it
//! left and arrives again half a round trip later: on a 600 ms satellite path with 1 % loss
//! nearly every 10 MB transfer ends ~0.6 s late so. When a stream's sender runs out of new data
//! (its burst ended) it therefore sends REPAIR frames over the data still unacknowledged, newest
//! first: parity from which the receiver rebuilds lost data without a round trip.
//!
//! The layout needs no per-packet bookkeeping on either side. A protected range is cut into
//! blocks of `stride × CLASS_CHUNKS` chunks of `chunk_len` bytes; chunk `i` of a block belongs to
//! class `i % stride`. A lost packet of up to `(stride - 1) × chunk_len` bytes of stream data
//! touches at most `stride` consecutive chunks, one per class. Each class gets two parity rows,
//! as in RAID 6: `P`, the XOR of its chunks, and `Q`, their sum weighted by powers of two in
//! GF(2⁸) ([`gf`]). Either row rebuilds one missing chunk; both together rebuild two, so a block
//! survives two lost packets, or one lost packet and a lost repair packet. (XOR alone, one row over
//! blocks half as long for the same bytes, left a hole in two GEO transfers out of three: with
//! ~1,200 protected packets at 1 % loss some block nearly always loses two.) Two frames fit in
//! one full packet; a block of 64 chunks of 680 bytes (~31 packets) costs four repair packets:
//! one eighth of the protected bytes.
//!
//! The receiver needs the class's other chunks. Those after a hole are still buffered (in-order
//! reading stops at the hole); those before it have been read, so a stream that asked for tail
//! repair keeps the last [`SHADOW_LEN`] bytes it handed to the application, and the rows it could
//! not use yet ([`Shadow`]).
//!
//! Negotiated by the `tail_repair` transport parameter: a peer that did not send it never gets a
//! REPAIR frame, and a REPAIR frame to an endpoint that did not advertise it is a protocol error.

use std::ops::Range;

use bytes::{Buf, BufMut, Bytes};

use crate::{
    StreamId, VarInt,
    coding::{self, BufExt, BufMutExt},
};

pub(crate) mod gf;

/// Bytes of stream data per chunk: two frames of this much parity fit in a 1,452-byte datagram.
pub(crate) const CHUNK_LEN: usize = 680;
/// Classes per block: a 1,452-byte packet carries at most ~1,420 bytes of stream data, which
/// touches at most four consecutive 680-byte chunks.
pub(crate) const STRIDE: usize = 4;
/// Chunks per class in a full block: with two rows, parity is one eighth of the protected bytes.
pub(crate) const CLASS_CHUNKS: usize = 16;
/// Parity rows per class: `P` (XOR) and `Q` (GF(2⁸)).
pub(crate) const ROWS: usize = 2;
/// The bytes a full block covers.
pub(crate) const BLOCK_LEN: u64 = (CHUNK_LEN * STRIDE * CLASS_CHUNKS) as u64;
/// A burst whose unprotected bytes are fewer than this gets no repair: small answers are left to
/// retransmission, so an exchange of a few packets costs no parity.
pub(crate) const MIN_BURST: u64 = 16 * 1024;
/// At most this many of a burst's newest bytes are protected: the last round trip of a GEO
/// transfer at 20 Mbit/s is ~1.5 MB, and what was sent before it has been acknowledged or found
/// lost by the time the tail's losses matter.
pub(crate) const MAX_PROTECTED: u64 = 4 * 1024 * 1024;
/// Bytes of read data a receiving stream keeps for rebuilding: a block and a packet's worth.
pub(crate) const SHADOW_LEN: usize = BLOCK_LEN as usize + 2048;
/// Rows a receiving stream keeps while it waits for a class's other row.
const PENDING_ROWS: usize = 64;

/// Decoder bounds: far beyond what the sender uses, small enough to keep a frame's work bounded.
const MAX_CHUNK_LEN: u64 = 1500;
const MAX_STRIDE: u64 = 16;
const MAX_CLASS_CHUNKS: u64 = 64;

/// The frame types: bit 0 says the block ends at the stream's final size, bit 1 is the row.
pub(crate) const REPAIR_TYS: Range<u64> = 0x3f54..0x3f58;

/// A REPAIR frame: one parity row of one class's chunks of a block of stream `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Repair {
    pub(crate) id: StreamId,
    pub(crate) block: Range<u64>,
    pub(crate) chunk_len: usize,
    pub(crate) stride: usize,
    pub(crate) class: usize,
    /// 0: `P`, the XOR of the chunks; 1: `Q`, their GF(2⁸) sum weighted by 2^i.
    pub(crate) row: usize,
    /// `block.end` is the stream's final size.
    pub(crate) fin: bool,
    /// `chunk_len` bytes; a chunk shorter than that (the block's last) counts as zero-padded.
    pub(crate) parity: Bytes,
}

/// Why a REPAIR frame could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RepairDecodeError {
    UnexpectedEnd,
    Malformed,
}

impl From<coding::UnexpectedEnd> for RepairDecodeError {
    fn from(_: coding::UnexpectedEnd) -> Self {
        Self::UnexpectedEnd
    }
}

impl Repair {
    /// The encoded size of a frame over `block` of stream `id` with `chunk_len` bytes of parity
    /// and [`STRIDE`] classes: two fit in a full packet.
    pub(crate) fn encoded_len(id: StreamId, block: &Range<u64>, chunk_len: usize) -> usize {
        let var = |x: u64| VarInt::from_u64(x).map_or(8, |v| v.size());
        var(REPAIR_TYS.start)
            + var(id.0)
            + var(block.start)
            + var(block.end - block.start)
            + var(chunk_len as u64)
            + var(STRIDE as u64)
            + var(STRIDE as u64 - 1)
            + chunk_len
    }

    /// Decodes the frame after its type `ty` (one of [`REPAIR_TYS`]).
    pub(crate) fn decode<B: Buf>(buf: &mut B, ty: u64) -> Result<Self, RepairDecodeError> {
        let id: StreamId = buf.get()?;
        let start = buf.get_var()?;
        let len = buf.get_var()?;
        let chunk_len = buf.get_var()?;
        let stride = buf.get_var()?;
        let class = buf.get_var()?;
        let valid = (1..=MAX_CHUNK_LEN).contains(&chunk_len)
            && (1..=MAX_STRIDE).contains(&stride)
            && class < stride
            && len > 0
            && len <= chunk_len * stride * MAX_CLASS_CHUNKS
            && start.checked_add(len).is_some_and(|end| end < 1 << 62);
        if !valid {
            return Err(RepairDecodeError::Malformed);
        }
        if buf.remaining() < chunk_len as usize {
            return Err(RepairDecodeError::UnexpectedEnd);
        }
        Ok(Self {
            id,
            block: start..start + len,
            chunk_len: chunk_len as usize,
            stride: stride as usize,
            class: class as usize,
            row: ((ty >> 1) & 1) as usize,
            fin: ty & 1 == 1,
            parity: buf.copy_to_bytes(chunk_len as usize),
        })
    }

    pub(crate) fn ty(&self) -> u64 {
        REPAIR_TYS.start | ((self.row as u64 & 1) << 1) | u64::from(self.fin)
    }

    pub(crate) fn encode<W: BufMut>(&self, out: &mut W) {
        out.write_var(self.ty());
        out.write(self.id);
        out.write_var(self.block.start);
        out.write_var(self.block.end - self.block.start);
        out.write_var(self.chunk_len as u64);
        out.write_var(self.stride as u64);
        out.write_var(self.class as u64);
        out.put_slice(&self.parity);
    }

    /// The stream ranges this frame's parity covers, in order (chunk `i` is weighted `2^i`).
    pub(crate) fn chunks(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        class_chunks(self.block.clone(), self.chunk_len, self.stride, self.class)
    }

    /// Whether `other` is a row of the same class of the same block.
    fn same_class(&self, other: &Self) -> bool {
        self.id == other.id
            && self.block == other.block
            && self.chunk_len == other.chunk_len
            && self.stride == other.stride
            && self.class == other.class
    }
}

/// The chunks of `class` in `block`, each at most `chunk_len` long.
pub(crate) fn class_chunks(
    block: Range<u64>,
    chunk_len: usize,
    stride: usize,
    class: usize,
) -> impl Iterator<Item = Range<u64>> {
    let step = chunk_len as u64;
    (0..)
        .map(move |i: u64| block.start + (class as u64 + i * stride as u64) * step)
        .take_while(move |&start| start < block.end)
        .map(move |start| start..(start + step).min(block.end))
}

/// Adds chunk number `index` of a class, `data`, into a parity of `row`.
pub(crate) fn add_chunk(parity: &mut [u8], row: usize, index: usize, data: &[u8]) {
    match row {
        0 => {
            for (p, d) in parity.iter_mut().zip(data) {
                *p ^= d;
            }
        }
        _ => gf::mul_xor_into(parity, data, gf::pow2(index)),
    }
}

/// The block of a protected range that ends at `end`: a full block or what is left.
pub(crate) fn block_ending_at(protect_start: u64, end: u64) -> Range<u64> {
    end.saturating_sub(BLOCK_LEN).max(protect_start)..end
}

/// A stream's sender side: what of its data is still to be protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RepairJob {
    pub(crate) id: StreamId,
    /// The oldest byte to protect.
    pub(crate) start: u64,
    /// The end of the next block (blocks go from the newest data back).
    pub(crate) next_end: u64,
    /// The next frame of that block: its `P` rows by class, then its `Q` rows.
    pub(crate) frame: usize,
    /// The stream's final size, when the burst ended with the stream.
    pub(crate) fin_at: Option<u64>,
}

impl RepairJob {
    /// The block the next frame covers.
    pub(crate) fn block(&self) -> Range<u64> {
        block_ending_at(self.start, self.next_end)
    }

    /// The class and row of the next frame.
    pub(crate) fn class_and_row(&self) -> (usize, usize) {
        let classes = block_classes(&self.block());
        (self.frame % classes, self.frame / classes)
    }

    /// One more frame of the current block was written: the next, or the next block's first.
    /// Returns whether the job is done.
    pub(crate) fn advance(&mut self) -> bool {
        let block = self.block();
        self.frame += 1;
        if self.frame >= block_classes(&block) * ROWS {
            self.frame = 0;
            self.next_end = block.start;
        }
        self.next_end <= self.start
    }
}

/// Classes a block has: fewer than [`STRIDE`] when it is shorter than `STRIDE` chunks.
fn block_classes(block: &Range<u64>) -> usize {
    let chunks = (block.end - block.start).div_ceil(CHUNK_LEN as u64) as usize;
    chunks.min(STRIDE)
}

/// What a stream that asked for tail repair keeps: the last [`SHADOW_LEN`] bytes it handed to the
/// application, in order, and the rows it could not use yet.
#[derive(Debug)]
pub(crate) struct Shadow {
    ring: Box<[u8]>,
    /// The stream offset after the last byte kept.
    end: u64,
    /// The first offset kept.
    start: u64,
    /// Rows of classes missing two chunks, waiting for the class's other row.
    pending: Vec<Repair>,
}

impl Default for Shadow {
    fn default() -> Self {
        Self {
            ring: vec![0; SHADOW_LEN].into_boxed_slice(),
            end: 0,
            start: 0,
            pending: Vec::new(),
        }
    }
}

impl Shadow {
    /// `data` at `offset` was read; an offset that does not follow the last starts over.
    pub(crate) fn record(&mut self, offset: u64, data: &[u8]) {
        if offset != self.end {
            self.start = offset;
        }
        let len = self.ring.len();
        let kept = &data[data.len().saturating_sub(len)..];
        let first = (offset + (data.len() - kept.len()) as u64) as usize % len;
        let (head, tail) = kept.split_at(kept.len().min(len - first));
        self.ring[first..first + head.len()].copy_from_slice(head);
        self.ring[..tail.len()].copy_from_slice(tail);
        self.end = offset + data.len() as u64;
        self.start = self.start.max(self.end.saturating_sub(len as u64));
    }

    /// Copies `range` into `out` (as long as the range) if all of it is kept.
    pub(crate) fn copy(&self, range: Range<u64>, out: &mut [u8]) -> bool {
        if range.start < self.start || range.end > self.end {
            return false;
        }
        let len = self.ring.len();
        let first = (range.start % len as u64) as usize;
        let count = (range.end - range.start) as usize;
        let head = count.min(len - first);
        out[..head].copy_from_slice(&self.ring[first..first + head]);
        out[head..count].copy_from_slice(&self.ring[..count - head]);
        true
    }

    /// `frame` arrived: the rows of its class it can be used with (itself first), taking any
    /// kept row of the class out of the pending list.
    pub(crate) fn rows_with(&mut self, frame: Repair) -> Vec<Repair> {
        let mut rows = vec![frame];
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].same_class(&rows[0]) && self.pending[i].row != rows[0].row {
                rows.push(self.pending.swap_remove(i));
            } else {
                i += 1;
            }
        }
        rows
    }

    /// Keeps `row` until its class's other row comes, dropping the oldest beyond
    /// [`PENDING_ROWS`].
    pub(crate) fn keep(&mut self, row: Repair) {
        if self.pending.len() >= PENDING_ROWS {
            self.pending.remove(0);
        }
        self.pending.push(row);
    }
}

/// What [`rebuild`] made of a class's rows.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Rebuilt {
    /// Nothing of the class is missing.
    Whole,
    /// The missing chunks, rebuilt.
    Chunks(Vec<(Range<u64>, Bytes)>),
    /// More chunks missing than the rows given can rebuild: keep them for the other row.
    Wanting,
}

/// Rebuilds the chunks of a class the receiver lacks from `rows` (one or both of its rows),
/// given `fetch`, which copies a range the receiver holds into a buffer and says whether it held
/// all of it.
pub(crate) fn rebuild(
    rows: &[Repair],
    mut fetch: impl FnMut(Range<u64>, &mut [u8]) -> bool,
) -> Rebuilt {
    let first = &rows[0];
    // Each row with the held chunks taken out: what is left is the missing chunks' share.
    let mut left: Vec<Vec<u8>> = rows.iter().map(|row| row.parity.to_vec()).collect();
    let mut scratch = vec![0; first.chunk_len];
    let mut missing = Vec::new();
    for (index, chunk) in first.chunks().enumerate() {
        let len = (chunk.end - chunk.start) as usize;
        if fetch(chunk.clone(), &mut scratch[..len]) {
            for (row, parity) in rows.iter().zip(&mut left) {
                add_chunk(parity, row.row, index, &scratch[..len]);
            }
        } else {
            missing.push((index, chunk));
            if missing.len() > rows.len() {
                return Rebuilt::Wanting;
            }
        }
    }
    let solved = match (missing.as_slice(), rows) {
        ([], _) => return Rebuilt::Whole,
        ([(index, _)], [row, ..]) => vec![solve_one(&left[0], row.row, *index)],
        ([(a, _), (b, _)], [_, _]) => {
            let (p, q) = match rows[0].row {
                0 => (&left[0], &left[1]),
                _ => (&left[1], &left[0]),
            };
            solve_two(p, q, *a, *b)
        }
        _ => return Rebuilt::Wanting,
    };
    Rebuilt::Chunks(
        missing
            .into_iter()
            .zip(solved)
            .map(|((_, chunk), mut data)| {
                data.truncate((chunk.end - chunk.start) as usize);
                (chunk, data.into())
            })
            .collect(),
    )
}

/// Chunk `index` from one row's remainder.
fn solve_one(left: &[u8], row: usize, index: usize) -> Vec<u8> {
    let mut data = left.to_vec();
    if row == 1 {
        gf::div_in_place(&mut data, gf::pow2(index));
    }
    data
}

/// Chunks `a` and `b` from both rows' remainders: `p = Da ⊕ Db`, `q = 2^a·Da ⊕ 2^b·Db`, so
/// `Da = (q ⊕ 2^b·p) / (2^a ⊕ 2^b)` and `Db = p ⊕ Da`.
fn solve_two(p: &[u8], q: &[u8], a: usize, b: usize) -> Vec<Vec<u8>> {
    let mut da = q.to_vec();
    gf::mul_xor_into(&mut da, p, gf::pow2(b));
    gf::div_in_place(&mut da, gf::pow2(a) ^ gf::pow2(b));
    let db = p.iter().zip(&da).map(|(p, a)| p ^ a).collect();
    vec![da, db]
}

#[cfg(test)]
mod tests;

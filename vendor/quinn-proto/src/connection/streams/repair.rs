//! Outpost patch: tail repair on the streams (`crate::repair` has the layout and the why).

use std::collections::VecDeque;

use tracing::trace;

use super::{Send, StreamsState, state::StreamRecv};
use crate::{
    StreamId, TransportError,
    connection::stats::FrameStats,
    frame,
    repair::{self, CHUNK_LEN, MAX_PROTECTED, MIN_BURST, Rebuilt, Repair, RepairJob, STRIDE},
};

/// A stream's burst of new data ended at `stream.pending.offset()`: protect its newest
/// unprotected bytes, if there are enough of them to be worth parity.
pub(super) fn queue_job(
    jobs: &mut Option<Box<VecDeque<RepairJob>>>,
    id: StreamId,
    stream: &mut Send,
    fin: bool,
) {
    let end = stream.pending.offset();
    let start = stream
        .repaired_to
        .max(stream.pending.unacked_start())
        .max(end.saturating_sub(MAX_PROTECTED));
    if end.saturating_sub(start) < MIN_BURST {
        return;
    }
    stream.repaired_to = end;
    trace!(stream = %id, start, end, "tail repair queued");
    jobs.get_or_insert_with(Default::default)
        .push_back(RepairJob {
            id,
            start,
            next_end: end,
            frame: 0,
            fin_at: fin.then_some(end),
        });
}

impl StreamsState {
    /// Both sides' `tail_repair` settings, once the peer's transport parameters are known.
    pub(crate) fn set_repair(&mut self, local: bool, peer: bool) {
        self.repair_send = local && peer;
        self.repair_receive = local;
    }

    /// Whether REPAIR frames wait to be sent.
    pub(crate) fn repair_pending(&self) -> bool {
        self.repair_jobs
            .as_ref()
            .is_some_and(|jobs| !jobs.is_empty())
    }

    /// Writes REPAIR frames into `buf` while they fit under `max_size` and jobs remain. Blocks
    /// whose data has all been acknowledged, or is gone, are skipped. Returns whether any frame
    /// was written.
    pub(crate) fn write_repair_frames(
        &mut self,
        buf: &mut Vec<u8>,
        max_size: usize,
        stats: &mut FrameStats,
    ) -> bool {
        let mut written = false;
        loop {
            let Some(jobs) = self.repair_jobs.as_mut() else {
                break;
            };
            let Some(job) = jobs.front_mut() else {
                self.repair_jobs = None;
                break;
            };
            if buf.len() + Repair::encoded_len(job.id, &job.block(), CHUNK_LEN) > max_size {
                break;
            }
            let frame = self
                .send
                .get(&job.id)
                .and_then(|s| s.as_deref())
                .and_then(|stream| frame_for(job, stream));
            let done = match frame {
                Some(frame) => {
                    frame.encode(buf);
                    stats.repair += 1;
                    written = true;
                    job.advance()
                }
                // The stream is gone, or this block is acknowledged: older ones are too.
                None => true,
            };
            if done {
                jobs.pop_front();
            }
        }
        written
    }

    /// A REPAIR frame arrived: the stream data it rebuilds, with the rows kept before.
    pub(crate) fn repair(&mut self, frame: Repair) -> Result<Vec<frame::Stream>, TransportError> {
        if !self.repair_receive {
            return Err(TransportError::PROTOCOL_VIOLATION(
                "REPAIR frame without tail_repair",
            ));
        }
        let Some(Some(StreamRecv::Open(recv))) = self.recv.get_mut(&frame.id) else {
            return Ok(Vec::new());
        };
        let read = recv.assembler.bytes_read();
        let (assembler, Some(shadow)) = (&recv.assembler, recv.shadow.as_deref_mut()) else {
            // The stream did not ask for tail repair: what it read is gone.
            return Ok(Vec::new());
        };
        let rows = shadow.rows_with(frame);
        let held = |range: std::ops::Range<u64>, out: &mut [u8]| {
            let split = range.end.min(read.max(range.start));
            let (old_out, new_out) = out.split_at_mut((split - range.start) as usize);
            let old_held = split == range.start || shadow.copy(range.start..split, old_out);
            old_held && assembler.copy_buffered(split..range.end, new_out)
        };
        let rebuilt = match repair::rebuild(&rows, held) {
            Rebuilt::Whole => return Ok(Vec::new()),
            Rebuilt::Wanting => {
                shadow.keep(rows.into_iter().next().expect("the frame itself"));
                return Ok(Vec::new());
            }
            Rebuilt::Chunks(chunks) => chunks,
        };
        let frame = &rows[0];
        Ok(rebuilt
            .into_iter()
            .map(|(range, data)| {
                trace!(stream = %frame.id, start = range.start, end = range.end, "tail repair rebuilt");
                frame::Stream {
                    id: frame.id,
                    offset: range.start,
                    fin: frame.fin && range.end == frame.block.end,
                    data,
                }
            })
            .collect())
    }
}

/// The next frame of `job` over `stream`'s data, unless the block is acknowledged or gone.
fn frame_for(job: &RepairJob, stream: &Send) -> Option<Repair> {
    let block = job.block();
    if block.start < stream.pending.unacked_start() || stream.pending.is_acked(&block) {
        return None;
    }
    let (class, row) = job.class_and_row();
    let mut parity = vec![0; CHUNK_LEN];
    let mut chunk_data = vec![0; CHUNK_LEN];
    for (index, chunk) in repair::class_chunks(block.clone(), CHUNK_LEN, STRIDE, class).enumerate()
    {
        let len = (chunk.end - chunk.start) as usize;
        let mut offsets = chunk;
        let mut at = 0;
        while offsets.start < offsets.end {
            let data = stream.pending.get(offsets.clone());
            if data.is_empty() {
                return None;
            }
            chunk_data[at..at + data.len()].copy_from_slice(data);
            at += data.len();
            offsets.start += data.len() as u64;
        }
        repair::add_chunk(&mut parity, row, index, &chunk_data[..len]);
    }
    Some(Repair {
        id: job.id,
        fin: job.fin_at == Some(block.end),
        block,
        chunk_len: CHUNK_LEN,
        stride: STRIDE,
        class,
        row,
        parity: parity.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dir, Side, VarInt};

    fn streams() -> StreamsState {
        let window = VarInt::from_u32(1 << 20);
        StreamsState::new(
            Side::Client,
            1u32.into(),
            1u32.into(),
            1 << 20,
            window,
            window,
        )
    }

    fn frame() -> Repair {
        Repair {
            id: StreamId::new(Side::Server, Dir::Uni, 0),
            block: 0..20_000,
            chunk_len: CHUNK_LEN,
            stride: STRIDE,
            class: 1,
            row: 0,
            fin: false,
            parity: vec![7; CHUNK_LEN].into(),
        }
    }

    #[test]
    fn a_repair_frame_to_an_endpoint_that_did_not_ask_is_a_protocol_violation() {
        let mut streams = streams();
        streams.set_repair(false, true);
        let error = streams.repair(frame()).unwrap_err();
        assert_eq!(error.code, crate::TransportErrorCode::PROTOCOL_VIOLATION);
        streams.set_repair(true, false);
        assert!(
            !streams.repair_send,
            "the peer did not ask: nothing is sent"
        );
        assert!(
            streams.repair(frame()).unwrap().is_empty(),
            "no such stream yet"
        );
    }
}

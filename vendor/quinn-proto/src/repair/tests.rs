use super::*;
use crate::{Dir, Side};

fn stream() -> StreamId {
    StreamId::new(Side::Server, Dir::Bi, 3)
}

/// The frame for `row` of `class` of `block` over `data` (the whole stream from offset 0).
fn frame_over(data: &[u8], block: Range<u64>, class: usize, row: usize) -> Repair {
    let mut parity = vec![0; CHUNK_LEN];
    for (index, chunk) in class_chunks(block.clone(), CHUNK_LEN, STRIDE, class).enumerate() {
        add_chunk(
            &mut parity,
            row,
            index,
            &data[chunk.start as usize..chunk.end as usize],
        );
    }
    Repair {
        id: stream(),
        block: block.clone(),
        chunk_len: CHUNK_LEN,
        stride: STRIDE,
        class,
        row,
        fin: block.end == data.len() as u64,
        parity: parity.into(),
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A receiver that holds all of `data` but the `lost` ranges.
fn holding<'a>(
    data: &'a [u8],
    lost: &'a [Range<u64>],
) -> impl FnMut(Range<u64>, &mut [u8]) -> bool + 'a {
    move |range, out| {
        let overlaps = lost
            .iter()
            .any(|l| range.start < l.end && l.start < range.end);
        if !overlaps {
            out.copy_from_slice(&data[range.start as usize..range.end as usize]);
        }
        !overlaps
    }
}

fn check_rebuilt(data: &[u8], rebuilt: Rebuilt) -> Vec<Range<u64>> {
    let Rebuilt::Chunks(chunks) = rebuilt else {
        panic!("{rebuilt:?}");
    };
    for (range, bytes) in &chunks {
        assert_eq!(&bytes[..], &data[range.start as usize..range.end as usize]);
    }
    chunks.into_iter().map(|(range, _)| range).collect()
}

#[test]
fn a_lost_packet_is_rebuilt_by_either_row_of_the_classes_it_touches() {
    let data = pattern(100_000);
    let block = block_ending_at(0, data.len() as u64);
    assert_eq!(block.end - block.start, BLOCK_LEN);
    // A packet's 1,420 bytes of stream data at an offset that cuts chunks unevenly.
    let lost = [block.start + 1_000..block.start + 2_420];
    for row in 0..ROWS {
        let mut rebuilt = Vec::new();
        for class in 0..STRIDE {
            let frame = frame_over(&data, block.clone(), class, row);
            match rebuild(&[frame], holding(&data, &lost)) {
                Rebuilt::Whole => {}
                chunks => rebuilt.extend(check_rebuilt(&data, chunks)),
            }
        }
        assert_eq!(
            rebuilt.len(),
            3,
            "row {row}: 1,420 bytes at 1,000 touch three chunks"
        );
        assert!(rebuilt.iter().any(|r| r.contains(&lost[0].start)));
        assert!(rebuilt.iter().any(|r| r.contains(&(lost[0].end - 1))));
    }
}

#[test]
fn two_lost_packets_in_a_block_are_rebuilt_from_both_rows() {
    let data = pattern(BLOCK_LEN as usize);
    let block = 0..BLOCK_LEN;
    let lost = [5_000..6_420, 30_100..31_520];
    let mut rebuilt = Vec::new();
    for class in 0..STRIDE {
        let p = frame_over(&data, block.clone(), class, 0);
        let q = frame_over(&data, block.clone(), class, 1);
        match rebuild(std::slice::from_ref(&q), holding(&data, &lost)) {
            Rebuilt::Wanting => rebuilt.extend(check_rebuilt(
                &data,
                rebuild(&[q, p], holding(&data, &lost)),
            )),
            Rebuilt::Whole => {}
            one => rebuilt.extend(check_rebuilt(&data, one)),
        }
    }
    for hole in lost {
        for at in [hole.start, hole.end - 1] {
            assert!(rebuilt.iter().any(|r| r.contains(&at)), "{at} rebuilt");
        }
    }
}

#[test]
fn three_holes_in_one_class_are_left_to_retransmission() {
    let data = pattern(BLOCK_LEN as usize);
    let rows = [
        frame_over(&data, 0..BLOCK_LEN, 1, 0),
        frame_over(&data, 0..BLOCK_LEN, 1, 1),
    ];
    let step = (CHUNK_LEN * STRIDE) as u64;
    let lost: Vec<Range<u64>> = (0..3)
        .map(|i| CHUNK_LEN as u64 + i * step..CHUNK_LEN as u64 + i * step + 1)
        .collect();
    assert_eq!(rebuild(&rows, holding(&data, &lost)), Rebuilt::Wanting);
}

#[test]
fn the_blocks_last_short_chunk_is_rebuilt_to_its_length() {
    let data = pattern(10_000);
    let block = block_ending_at(0, 10_000);
    assert_eq!(block, 0..10_000, "shorter than a block: all of it");
    // 10,000 bytes: chunk 14 is [9,520, 10,000), class 2.
    let frame = frame_over(&data, block, 2, 1);
    assert!(frame.fin);
    let rebuilt = check_rebuilt(&data, rebuild(&[frame], holding(&data, &[9_520..9_521])));
    assert_eq!(rebuilt, [9_520..10_000]);
}

#[test]
fn a_job_walks_its_blocks_newest_first_both_rows_then_ends() {
    let mut job = RepairJob {
        id: stream(),
        start: 1_000,
        next_end: 1_000 + BLOCK_LEN + 2_000,
        frame: 0,
        fin_at: None,
    };
    let mut frames = Vec::new();
    loop {
        frames.push((job.block(), job.class_and_row()));
        if job.advance() {
            break;
        }
    }
    let newest = 3_000..3_000 + BLOCK_LEN;
    let full: Vec<_> = (0..ROWS)
        .flat_map(|row| (0..STRIDE).map(move |class| (class, row)))
        .map(|frame| (newest.clone(), frame))
        .collect();
    assert_eq!(frames[..STRIDE * ROWS], full[..]);
    // The last 2,000 bytes are three chunks: three classes.
    let last: Vec<_> = (0..ROWS)
        .flat_map(|row| (0..3).map(move |class| (1_000..3_000, (class, row))))
        .collect();
    assert_eq!(frames[STRIDE * ROWS..], last[..]);
}

#[test]
fn frames_round_trip_and_bad_ones_are_refused() {
    let data = pattern(60_000);
    for row in 0..ROWS {
        let frame = frame_over(&data, 8_000..60_000, 3, row);
        let mut buf = Vec::new();
        frame.encode(&mut buf);
        assert_eq!(
            buf.len(),
            Repair::encoded_len(frame.id, &frame.block, CHUNK_LEN)
        );
        assert!(2 * buf.len() + 11 + 16 <= 1_452, "two frames fit in a full packet");
        let mut read = &buf[..];
        let ty = read.get_var().unwrap();
        assert!(REPAIR_TYS.contains(&ty));
        assert_eq!(Repair::decode(&mut read, ty), Ok(frame.clone()));
        assert!(!read.has_remaining());
        let truncated = &buf[2..buf.len() - 1];
        assert_eq!(
            Repair::decode(&mut &truncated[..], ty),
            Err(RepairDecodeError::UnexpectedEnd)
        );
    }
    let frame = frame_over(&data, 8_000..60_000, 3, 0);
    for bad in [
        Repair {
            class: STRIDE,
            ..frame.clone()
        },
        Repair {
            block: 0..BLOCK_LEN * 100,
            ..frame.clone()
        },
    ] {
        let mut buf = Vec::new();
        bad.encode(&mut buf);
        assert_eq!(
            Repair::decode(&mut &buf[2..], bad.ty()),
            Err(RepairDecodeError::Malformed),
            "{bad:?}"
        );
    }
}

#[test]
fn the_shadow_keeps_the_newest_bytes_read() {
    let data = pattern(SHADOW_LEN * 2);
    let mut shadow = Shadow::default();
    for (i, piece) in data.chunks(1_000).enumerate() {
        shadow.record((i * 1_000) as u64, piece);
    }
    let end = data.len() as u64;
    let mut out = vec![0; 500];
    assert!(shadow.copy(end - 500..end, &mut out));
    assert_eq!(&out[..], &data[data.len() - 500..]);
    let oldest = end - SHADOW_LEN as u64;
    assert!(shadow.copy(oldest..oldest + 500, &mut out));
    assert_eq!(&out[..], &data[oldest as usize..oldest as usize + 500]);
    assert!(!shadow.copy(oldest - 1..oldest + 499, &mut out), "gone");
    assert!(!shadow.copy(end - 10..end + 1, &mut out), "not read yet");
}

#[test]
fn a_kept_row_meets_its_classes_other_row_and_only_that() {
    let data = pattern(BLOCK_LEN as usize);
    let mut shadow = Shadow::default();
    shadow.keep(frame_over(&data, 0..BLOCK_LEN, 1, 0));
    shadow.keep(frame_over(&data, 0..BLOCK_LEN, 2, 0));
    let rows = shadow.rows_with(frame_over(&data, 0..BLOCK_LEN, 1, 1));
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].row, rows[1].row, rows[1].class), (1, 0, 1));
    assert_eq!(shadow.pending.len(), 1, "class 2's row stays");
    for i in 0..PENDING_ROWS + 5 {
        shadow.keep(frame_over(&data, 0..BLOCK_LEN, i % STRIDE, 0));
    }
    assert_eq!(shadow.pending.len(), PENDING_ROWS);
}

/// Mutated REPAIR frames, as a peer could send them: each decodes within its bounds or is
/// refused, never panics, and what decodes re-encodes to itself and can be rebuilt from.
#[test]
fn hostile_repair_frames_decode_within_bounds_or_are_refused() {
    let data = pattern(60_000);
    let mut valid = Vec::new();
    frame_over(&data, 8_000..60_000, 2, 1).encode(&mut valid);
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut decoded = 0;
    for _ in 0..20_000 {
        let mut input = valid.clone();
        for _ in 0..next() % 4 + 1 {
            let at = next() as usize % input.len();
            match next() % 3 {
                0 => input[at] ^= next() as u8,
                1 => input.truncate(at.max(1)),
                _ => input.insert(at, next() as u8),
            }
        }
        let mut read = &input[..];
        if let Some(ty) = read.get_var().ok().filter(|ty| REPAIR_TYS.contains(ty)) {
            if let Ok(frame) = Repair::decode(&mut read, ty) {
                decoded += 1;
                assert!(frame.chunk_len as u64 <= MAX_CHUNK_LEN && frame.class < frame.stride);
                assert_eq!(frame.parity.len(), frame.chunk_len);
                let mut again = Vec::new();
                frame.encode(&mut again);
                let mut reread = &again[..];
                let ty = reread.get_var().unwrap();
                assert_eq!(Repair::decode(&mut reread, ty), Ok(frame.clone()));
                let _ = rebuild(&[frame.clone()], |_, _| false);
                let _ = rebuild(&[frame], |_, out| {
                    out.fill(0);
                    true
                });
            }
        }
        if let Ok(frames) = crate::frame::Iter::new(Bytes::from(input)) {
            frames.for_each(drop);
        }
    }
    assert!(
        decoded > 1_000,
        "only {decoded} mutants decoded: the test lost its reach"
    );
}

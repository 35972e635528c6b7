//! Outpost patch: tail repair between two endpoints (`crate::repair`).

use super::*;

/// Both sides with tail repair as given, and a window that lets a burst leave at once.
fn pair_with(
    client_repair: bool,
    server_repair: bool,
) -> (Pair, ConnectionHandle, ConnectionHandle) {
    let transport = |repair: bool| {
        let mut transport = TransportConfig::default();
        let mut cubic = congestion::CubicConfig::default();
        cubic.initial_window(1 << 20);
        transport
            .tail_repair(repair)
            .congestion_controller_factory(Arc::new(cubic));
        Arc::new(transport)
    };
    let mut server = server_config();
    server.transport = transport(server_repair);
    let mut pair = Pair::new(Default::default(), server);
    let mut client = client_config();
    client.transport = transport(client_repair);
    let (client_ch, server_ch) = pair.connect_with(client);
    (pair, client_ch, server_ch)
}

/// What the server sends for `data` on a new uni stream (with tail repair asked for if
/// `repair`), collected without delivering any of it: the client acknowledges nothing, so nothing
/// is sent twice.
fn burst(
    pair: &mut Pair,
    server_ch: ConnectionHandle,
    data: &[u8],
    repair: bool,
) -> (StreamId, Vec<Bytes>) {
    let s = pair.server_streams(server_ch).open(Dir::Uni).unwrap();
    pair.server_send(server_ch, s)
        .set_tail_repair(repair)
        .unwrap();
    pair.server_send(server_ch, s).write(data).unwrap();
    pair.server_send(server_ch, s).finish().unwrap();
    let mut sent = Vec::new();
    for _ in 0..200 {
        pair.server.drive(pair.time, pair.client.addr);
        sent.extend(pair.server.outbound.drain(..).map(|(_, packet)| packet));
        pair.time += Duration::from_millis(1);
    }
    (s, sent)
}

fn deliver(pair: &mut Pair, packets: &[Bytes]) {
    for packet in packets {
        pair.client
            .inbound
            .push_back((pair.time, None, packet.as_ref().into()));
    }
    pair.client.drive(pair.time, pair.server.addr);
}

fn read_all(pair: &mut Pair, client_ch: ConnectionHandle, s: StreamId, out: &mut Vec<u8>) -> bool {
    let mut recv = pair.client_recv(client_ch, s);
    let mut chunks = recv.read(true).unwrap();
    let finished = loop {
        match chunks.next(usize::MAX) {
            Ok(Some(chunk)) => out.extend_from_slice(&chunk.bytes),
            Ok(None) => break true,
            Err(ReadError::Blocked) => break false,
            Err(e) => panic!("{e:?}"),
        }
    };
    let _ = chunks.finalize();
    finished
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn a_packet_lost_at_a_bursts_end_is_rebuilt_without_a_round_trip() {
    let _guard = subscribe();
    let (mut pair, client_ch, server_ch) = pair_with(true, true);
    let data = pattern(60_000);
    let (s, sent) = burst(&mut pair, server_ch, &data, true);
    assert!(pair.server_conn_mut(server_ch).stats().frame_tx.repair > 0);
    // Data packets fill the path MTU; the repair packets after them are shorter.
    let full = sent.iter().map(|p| p.len()).max().unwrap();
    let last_full = sent.iter().rposition(|p| p.len() == full).unwrap();
    let lost = last_full - 2;

    // Everything before the loss arrives and is read: the rebuild needs those bytes back.
    deliver(&mut pair, &sent[..lost]);
    assert_matches!(pair.client_streams(client_ch).accept(Dir::Uni), Some(id) if id == s);
    let mut recv = pair.client_recv(client_ch, s);
    recv.set_tail_repair(true).unwrap();
    assert!(recv.keeps_read_bytes());
    let mut received = Vec::new();
    assert!(!read_all(&mut pair, client_ch, s, &mut received));
    let before_hole = received.len();

    // The rest, and the parity: the hole is filled with no packet from the server in between.
    deliver(&mut pair, &sent[lost + 1..]);
    assert!(
        read_all(&mut pair, client_ch, s, &mut received),
        "stream finished"
    );
    assert!(received.len() > before_hole);
    assert_eq!(received, data);
    let stats = pair.client_conn_mut(client_ch).stats();
    assert!(stats.frame_rx.repaired >= 1, "{:?}", stats.frame_rx);
}

#[test]
fn two_packets_lost_in_one_block_are_rebuilt_from_both_rows() {
    let _guard = subscribe();
    let (mut pair, client_ch, server_ch) = pair_with(true, true);
    let data = pattern(60_000);
    let (s, sent) = burst(&mut pair, server_ch, &data, true);
    let full = sent.iter().map(|p| p.len()).max().unwrap();
    let last_full = sent.iter().rposition(|p| p.len() == full).unwrap();
    // Seven packets apart: both in the last block, in classes they share.
    let lost = [last_full - 9, last_full - 2];
    deliver(&mut pair, &sent[..lost[0]]);
    assert_matches!(pair.client_streams(client_ch).accept(Dir::Uni), Some(id) if id == s);
    pair.client_recv(client_ch, s)
        .set_tail_repair(true)
        .unwrap();
    let mut received = Vec::new();
    assert!(!read_all(&mut pair, client_ch, s, &mut received));
    deliver(&mut pair, &sent[lost[0] + 1..lost[1]]);
    deliver(&mut pair, &sent[lost[1] + 1..]);
    assert!(
        read_all(&mut pair, client_ch, s, &mut received),
        "stream finished"
    );
    assert_eq!(received, data);
    let stats = pair.client_conn_mut(client_ch).stats();
    assert!(stats.frame_rx.repaired >= 4, "{:?}", stats.frame_rx);
}

#[test]
fn a_peer_without_tail_repair_gets_no_parity() {
    let _guard = subscribe();
    for (client, server) in [(false, true), (true, false)] {
        let (mut pair, client_ch, server_ch) = pair_with(client, server);
        let data = pattern(60_000);
        let (s, sent) = burst(&mut pair, server_ch, &data, true);
        assert_eq!(pair.server_conn_mut(server_ch).stats().frame_tx.repair, 0);
        deliver(&mut pair, &sent);
        assert_matches!(pair.client_streams(client_ch).accept(Dir::Uni), Some(id) if id == s);
        let mut recv = pair.client_recv(client_ch, s);
        recv.set_tail_repair(true).unwrap();
        assert!(
            !recv.keeps_read_bytes(),
            "no bytes kept where tail repair was not negotiated"
        );
        let mut received = Vec::new();
        assert!(read_all(&mut pair, client_ch, s, &mut received));
        assert_eq!(received, data);
    }
}

#[test]
fn a_small_answer_gets_no_parity() {
    let _guard = subscribe();
    let (mut pair, _, server_ch) = pair_with(true, true);
    burst(&mut pair, server_ch, &pattern(8_000), true);
    assert_eq!(pair.server_conn_mut(server_ch).stats().frame_tx.repair, 0);
}

#[test]
fn a_stream_that_did_not_ask_gets_no_parity() {
    let _guard = subscribe();
    let (mut pair, _, server_ch) = pair_with(true, true);
    burst(&mut pair, server_ch, &pattern(60_000), false);
    assert_eq!(pair.server_conn_mut(server_ch).stats().frame_tx.repair, 0);
}

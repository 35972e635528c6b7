use super::*;

fn hello(via_proxy: bool, reason: &str) -> TunnelHello {
    TunnelHello {
        via_proxy,
        reason: reason.into(),
    }
}

#[test]
fn a_hello_round_trips() {
    for sent in [hello(false, "no QUIC answer within 5 s"), hello(true, "")] {
        assert_eq!(decode_hello(&encode_hello(&sent)).unwrap(), sent);
    }
}

#[test]
fn a_long_reason_is_cut_at_a_character_boundary() {
    let reason = "ü".repeat(150);
    let decoded = decode_hello(&encode_hello(&hello(false, &reason))).unwrap();
    assert!(decoded.reason.len() <= MAX_REASON);
    assert!(reason.starts_with(&decoded.reason));
}

#[test]
fn a_hello_that_is_not_ours_is_refused() {
    assert!(matches!(
        decode_hello(b"GET / HTTP/1.1\r\n"),
        Err(TunnelError::BadMagic)
    ));
    assert!(matches!(
        decode_hello(b"OPT1\x02\x00"),
        Err(TunnelError::UnknownFlags(2))
    ));
    assert!(matches!(
        decode_hello(b"OPT1\x00\xff"),
        Err(TunnelError::Reason(_))
    ));
    assert!(matches!(
        decode_hello(b"OPT1\x00\x03a\x1bb"),
        Err(TunnelError::Reason(_))
    ));
    assert!(matches!(decode_hello(b"OPT1\x00"), Err(TunnelError::Io(_))));
    assert!(matches!(
        decode_hello(b"OPT1\x00\x00x"),
        Err(TunnelError::Reason(_))
    ));
}

#[tokio::test]
async fn packets_are_read_one_at_a_time_with_their_lengths_checked() {
    let mut bytes = Vec::new();
    for packet in [&b"first"[..], &[7u8; MAX_PACKET][..]] {
        bytes.extend_from_slice(&packet_header(packet.len()));
        bytes.extend_from_slice(packet);
    }
    let mut reader = &bytes[..];
    let mut buf = Vec::new();
    read_packet(&mut reader, &mut buf).await.unwrap();
    assert_eq!(buf, b"first");
    read_packet(&mut reader, &mut buf).await.unwrap();
    assert_eq!(buf.len(), MAX_PACKET);
    assert!(matches!(
        read_packet(&mut reader, &mut buf).await,
        Err(TunnelError::Closed)
    ));
}

#[tokio::test]
async fn a_bad_length_ends_the_tunnel_before_its_body_is_read() {
    for len in [0u16, MAX_PACKET as u16 + 1, u16::MAX] {
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0u8; 16]);
        let mut reader = &bytes[..];
        let mut buf = Vec::new();
        let result = read_packet(&mut reader, &mut buf).await;
        assert!(
            matches!(result, Err(TunnelError::BadLength(l)) if l == usize::from(len)),
            "{len}: {result:?}"
        );
        assert_eq!(reader.len(), 16, "nothing of the body was read");
    }
}

#[tokio::test]
async fn a_packet_cut_short_is_an_error_not_a_clean_end() {
    let mut bytes = packet_header(10).to_vec();
    bytes.extend_from_slice(b"abc");
    let mut buf = Vec::new();
    assert!(matches!(
        read_packet(&mut &bytes[..], &mut buf).await,
        Err(TunnelError::Io(_))
    ));
    assert!(matches!(
        read_packet(&mut &[0x05u8][..], &mut buf).await,
        Err(TunnelError::Io(_))
    ));
}

use std::time::Duration;

use super::*;

fn sample_request() -> EnrollRequest {
    EnrollRequest {
        endpoint: EndpointId(3),
        secret: Secret([1; 32]),
        agent_id: AgentId::generate(),
        csr_der: vec![0x30; 300],
        agent_version: "0.1.0".into(),
    }
}

#[tokio::test]
async fn frames_round_trip() {
    let request = sample_request();
    let bytes = encode_frame(&request);
    let decoded: EnrollRequest = read_frame(&mut bytes.as_slice(), MAX_ENROLL_FRAME)
        .await
        .unwrap();
    assert_eq!(decoded, request);
}

#[tokio::test]
async fn oversized_frame_is_refused_before_reading_the_body() {
    // Announce 1 GiB and provide nothing: the limit check must fire without waiting for a body.
    let header = (1u32 << 30).to_be_bytes();
    let err = read_frame::<EnrollRequest, _>(&mut header.as_slice(), MAX_ENROLL_FRAME)
        .await
        .unwrap_err();
    assert!(
        matches!(err, WireError::Oversized { len, max } if len == 1 << 30 && max == MAX_ENROLL_FRAME)
    );
}

#[tokio::test]
async fn empty_stream_is_closed_and_short_body_is_io_error() {
    let err = read_frame::<HubMessage, _>(&mut [].as_slice(), MAX_CONTROL_FRAME)
        .await
        .unwrap_err();
    assert!(matches!(err, WireError::Closed));
    // Cut inside the length field: a broken frame, not a clean close.
    let err = read_frame::<HubMessage, _>(&mut [0u8, 0, 1].as_slice(), MAX_CONTROL_FRAME)
        .await
        .unwrap_err();
    assert!(matches!(err, WireError::Io(_)), "{err:?}");
    let mut bytes = encode_frame(&HubMessage::Summon { id: 9 });
    bytes.pop();
    let err = read_frame::<HubMessage, _>(&mut bytes.as_slice(), MAX_CONTROL_FRAME)
        .await
        .unwrap_err();
    assert!(matches!(err, WireError::Io(_)));
}

#[tokio::test]
async fn split_reads_are_reassembled() {
    let message = AgentMessage::Ready { id: 77 };
    let bytes = encode_frame(&message);
    let (mut client, mut server) = tokio::io::duplex(1);
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt as _;
        for byte in bytes {
            client.write_all(&[byte]).await.unwrap();
        }
    });
    let decoded: AgentMessage = read_frame(&mut server, MAX_CONTROL_FRAME).await.unwrap();
    writer.await.unwrap();
    assert_eq!(decoded, message);
}

#[tokio::test]
async fn a_pinned_next_frame_keeps_a_half_read_frame_and_hands_the_reader_back() {
    use tokio::io::AsyncWriteExt as _;
    let mut bytes = encode_frame(&HubMessage::Summon { id: 1 });
    bytes.extend(encode_frame(&HubMessage::Summon { id: 2 }));
    let (mut hub, agent) = tokio::io::duplex(64);
    hub.write_all(&bytes[..3]).await.unwrap();
    let mut reading = Box::pin(next_frame::<HubMessage, _>(agent, MAX_CONTROL_FRAME));
    // Polled once, then another `select!` branch wins: the three bytes stay inside the future.
    let interrupted = tokio::time::timeout(Duration::ZERO, &mut reading).await;
    assert!(interrupted.is_err(), "the frame is not complete yet");
    hub.write_all(&bytes[3..]).await.unwrap();
    drop(hub);
    let (agent, first) = (&mut reading).await;
    assert_eq!(first.unwrap(), HubMessage::Summon { id: 1 });
    reading.set(next_frame(agent, MAX_CONTROL_FRAME));
    let (agent, second) = (&mut reading).await;
    assert_eq!(second.unwrap(), HubMessage::Summon { id: 2 });
    reading.set(next_frame(agent, MAX_CONTROL_FRAME));
    assert!(matches!((&mut reading).await.1, Err(WireError::Closed)));
}

#[test]
fn hostile_bodies_are_errors_not_panics() {
    for body in [
        &[][..],
        &[0xff],
        &[0x07, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[0, 0xff, 0xff],
    ] {
        assert!(decode::<EnrollRequest>(body).is_err());
        assert!(decode::<HubMessage>(body).is_err());
        assert!(decode::<Datagram>(body).is_err());
    }
    let mut bytes = encode(&Datagram::CheckIn { seq: 1 });
    bytes.push(0);
    assert!(matches!(
        decode::<Datagram>(&bytes),
        Err(WireError::TrailingBytes(1))
    ));
}

#[test]
fn check_in_datagrams_stay_tiny() {
    let check_in = encode(&Datagram::CheckIn { seq: u32::MAX });
    let ack = encode(&Datagram::Ack {
        seq: u32::MAX,
        interval_s: u16::MAX,
    });
    assert!(check_in.len() <= 6, "{check_in:?}");
    assert!(ack.len() <= 9, "{ack:?}");
    assert!(ack.len() <= MAX_DATAGRAM);
}

#[test]
fn datagrams_encode_into_exactly_their_size() {
    let ack = Datagram::Ack {
        seq: u32::MAX,
        interval_s: u16::MAX,
    };
    let bytes = encode_datagram(&ack);
    assert_eq!(bytes, encode(&ack));
    assert_eq!(bytes.capacity(), bytes.len());
    assert_eq!(decode::<Datagram>(&bytes).unwrap(), ack);
}

#[test]
fn close_codes_round_trip() {
    for code in [
        CloseCode::Done,
        CloseCode::Revoked,
        CloseCode::Replaced,
        CloseCode::ProtocolViolation,
        CloseCode::Busy,
    ] {
        assert_eq!(CloseCode::from_code(code.code().into()), Some(code));
    }
    assert_eq!(CloseCode::from_code(999), None);
}

#[test]
fn only_busy_refusals_are_retried() {
    assert!(!RefusalReason::Busy.is_final());
    assert!(RefusalReason::AlreadyBound.is_final());
    assert!(RefusalReason::BadSecret.is_final());
}

#[test]
fn version_2_additions_leave_every_version_1_encoding_as_it_was() {
    // Variant indexes are the encoding: the new variants went to the end of each enum.
    assert_eq!(encode(&RefusalReason::Busy), [5]);
    assert_eq!(encode(&RefusalReason::TooManyPending), [6]);
    assert_eq!(encode(&HubMessage::Approved)[0], 2);
    assert_eq!(encode(&HubMessage::Renewed { cert_der: vec![] }), [4, 0]);
    assert_eq!(encode(&AgentMessage::Standby), [2]);
    assert_eq!(encode(&AgentMessage::Renew { csr_der: vec![7] }), [4, 1, 7]);
}

#[test]
fn version_3_check_ins_stay_within_the_idle_budget() {
    let applied = encode(&Datagram::CheckInApplied {
        seq: u32::MAX,
        applied: crate::stack::StateDigest([0xff; 8]),
    });
    // 1 variant byte, a 5-byte varint, 8 digest bytes: 8 more than a version-2 check-in.
    assert_eq!(applied.len(), 14, "{applied:?}");
    assert!(applied.len() <= MAX_DATAGRAM);
    assert_eq!(
        encode_datagram(&Datagram::CheckInApplied {
            seq: 7,
            applied: crate::stack::StateDigest([1; 8]),
        })
        .len(),
        10
    );
}

#[test]
fn version_3_messages_leave_earlier_encodings_alone() {
    // The variants appended in version 3 sit after every older one: an older message's bytes,
    // and so what an older peer reads, do not change.
    assert_eq!(encode(&Datagram::CheckIn { seq: 5 }), [0, 5]);
    assert_eq!(encode(&HubMessage::Summon { id: 9 }), [1, 9]);
    assert_eq!(encode(&AgentMessage::Standby), [2]);
    let desired = HubMessage::Desired(crate::stack::DesiredState::default());
    assert_eq!(encode(&desired), [5, 0]);
    let report = AgentMessage::StackStatus(crate::stack::StackReport {
        state: crate::stack::StateDigest([0; 8]),
        stacks: vec![],
    });
    assert_eq!(encode(&report)[0], 5);
    assert_eq!(
        decode::<AgentMessage>(&encode(&report)).unwrap(),
        report,
        "round trip"
    );
}

#[test]
fn version_4_messages_leave_earlier_encodings_alone() {
    let desired = HubMessage::Desired(crate::stack::DesiredState::default());
    assert_eq!(encode(&desired), [5, 0]);
    assert_eq!(encode(&HubMessage::JobAck { id: 3 }), [7, 3]);
    assert_eq!(encode(&HubMessage::JobCancel { id: 3 }), [8, 3]);
    assert_eq!(
        encode(&AgentMessage::Features(crate::job::Features::JOBS)),
        [6, 1]
    );
    assert_eq!(encode(&AgentMessage::JobStarted { id: 3 }), [7, 3]);
    let order = HubMessage::Job(crate::job::JobOrder {
        id: 9,
        spec: crate::job::JobSpec::Run {
            image: "busybox".into(),
            cmd: vec!["true".into()],
        },
        expires_in_ms: 1,
        timeout_ms: 2,
    });
    assert_eq!(encode(&order)[0], 6);
    assert_eq!(decode::<HubMessage>(&encode(&order)).unwrap(), order);
}

#[test]
fn a_rollback_is_the_last_phase_so_earlier_phases_keep_their_encoding() {
    use crate::stack::Phase;
    assert_eq!(encode(&Phase::Queued), [0]);
    assert_eq!(encode(&Phase::Drifted { reason: "x".into() }), [6, 1, b'x']);
    assert_eq!(
        encode(&Phase::RolledBack { reason: "x".into() }),
        [7, 1, b'x']
    );
}

#[test]
fn version_5_messages_leave_earlier_encodings_alone() {
    let desired = HubMessage::Desired(crate::stack::DesiredState::default());
    assert_eq!(encode(&desired), [5, 0]);
    assert_eq!(encode(&HubMessage::JobCancel { id: 3 }), [8, 3]);
    let order = HubMessage::DesiredOrder(crate::stack::DesiredOrder {
        state: crate::stack::DesiredState::default(),
        report_drift: vec!["pos".into()],
    });
    assert_eq!(encode(&order), [9, 0, 1, 3, b'p', b'o', b's']);
    assert_eq!(decode::<HubMessage>(&encode(&order)).unwrap(), order);
    let both = crate::job::Features::JOBS.with(crate::job::Features::DRIFT_REPORT);
    assert_eq!(encode(&AgentMessage::Features(both)), [6, 3]);
    assert!(both.contains(crate::job::Features::JOBS));
    assert!(!crate::job::Features::JOBS.contains(crate::job::Features::DRIFT_REPORT));
}

#[test]
fn version_6_messages_leave_earlier_encodings_alone() {
    let registry = HubMessage::Registry {
        streams: 4,
        upstreams: vec!["r.io".into()],
    };
    assert_eq!(encode(&registry), [10, 4, 1, 4, b'r', b'.', b'i', b'o']);
    assert_eq!(decode::<HubMessage>(&encode(&registry)).unwrap(), registry);
    let all = crate::job::Features::JOBS
        .with(crate::job::Features::DRIFT_REPORT)
        .with(crate::job::Features::REGISTRY);
    assert_eq!(encode(&AgentMessage::Features(all)), [6, 7]);
    // Earlier variants keep their indices.
    assert_eq!(encode(&HubMessage::JobCancel { id: 3 }), [8, 3]);
}

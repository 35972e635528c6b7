use super::*;

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn blob_request(offset: u64) -> FetchRequest {
    FetchRequest {
        name: "pos/web".into(),
        target: FetchTarget::Blob {
            digest: DIGEST.into(),
            offset,
        },
    }
}

fn found(size: u64) -> FetchReply {
    FetchReply::Found {
        digest: DIGEST.into(),
        size,
        media_type: "application/octet-stream".into(),
    }
}

#[tokio::test]
async fn a_request_and_its_reply_cross_split_reads() {
    let (mut a, mut b) = tokio::io::duplex(1);
    let writer = tokio::spawn(async move {
        for byte in encode_request(&blob_request(1000)) {
            a.write_all(&[byte]).await.unwrap();
        }
        write_reply(&mut a, &found(5000)).await.unwrap();
    });
    let fetch = read_request(&mut b).await.unwrap();
    assert_eq!(fetch.to_request(), blob_request(1000));
    let reply = read_reply(&mut b).await.unwrap();
    writer.await.unwrap();
    let found = check_reply(&fetch, reply).unwrap().unwrap();
    assert_eq!(found.size, 5000);
    assert_eq!(found.digest.as_str(), DIGEST);
}

#[tokio::test]
async fn names_references_and_digests_outside_the_grammar_are_refused() {
    let hostile = [
        FetchRequest {
            name: "../../etc".into(),
            target: FetchTarget::Manifest {
                reference: "latest".into(),
            },
        },
        FetchRequest {
            name: "pos/web".into(),
            target: FetchTarget::Manifest {
                reference: "../x".into(),
            },
        },
        FetchRequest {
            name: "pos/web".into(),
            target: FetchTarget::Blob {
                digest: "sha256:../../x".into(),
                offset: 0,
            },
        },
        FetchRequest {
            name: "a".repeat(MAX_NAME_LEN + 1),
            target: FetchTarget::Manifest {
                reference: "latest".into(),
            },
        },
    ];
    for request in hostile {
        let bytes = encode_request(&request);
        let refused = read_request(&mut bytes.as_slice()).await;
        assert!(
            matches!(
                refused,
                Err(FetchError::Name(_) | FetchError::Digest(_) | FetchError::Oversized { .. })
            ),
            "{request:?} gave {refused:?}"
        );
    }
}

#[tokio::test]
async fn bad_magic_wrong_version_and_oversize_are_refused_before_the_body() {
    let mut bytes = encode_request(&blob_request(0));
    bytes[0] = b'G';
    assert!(matches!(
        read_request(&mut bytes.as_slice()).await,
        Err(FetchError::BadMagic)
    ));
    // A proxy stream's preface is not a fetch stream's.
    let mut bytes = encode_request(&blob_request(0));
    bytes[2] = b'S';
    assert!(matches!(
        read_request(&mut bytes.as_slice()).await,
        Err(FetchError::BadMagic)
    ));
    let mut bytes = encode_request(&blob_request(0));
    bytes[3] = 2;
    assert!(matches!(
        read_request(&mut bytes.as_slice()).await,
        Err(FetchError::UnsupportedVersion(2))
    ));
    let mut bytes = b"OPF\x01\x02\x01".to_vec();
    bytes.extend([0u8; 600]);
    assert!(matches!(
        read_request(&mut bytes.as_slice()).await,
        Err(FetchError::Oversized {
            len: 513,
            max: MAX_REQUEST
        })
    ));
    let bytes = [0x04u8, 0x01, 0, 0];
    assert!(matches!(
        read_reply(&mut bytes.as_slice()).await,
        Err(FetchError::Oversized {
            len: 1025,
            max: MAX_REPLY
        })
    ));
}

#[test]
fn a_reply_that_does_not_fit_its_request_is_refused() {
    let fetch = blob_request(4000).check().unwrap();
    let other = FetchReply::Found {
        digest: format!("sha256:{}", "f".repeat(64)),
        size: 5000,
        media_type: "application/octet-stream".into(),
    };
    assert!(matches!(
        check_reply(&fetch, other),
        Err(FetchError::BadReply(_))
    ));
    assert!(matches!(
        check_reply(&fetch, found(3999)),
        Err(FetchError::BadReply(_))
    ));
    assert!(check_reply(&fetch, found(4000)).unwrap().is_ok());
    let control = FetchReply::Found {
        digest: DIGEST.into(),
        size: 5000,
        media_type: "text/plain\r\nX-Evil: 1".into(),
    };
    assert!(matches!(
        check_reply(&fetch, control),
        Err(FetchError::BadReply(_))
    ));
    let manifest = FetchRequest {
        name: "pos/web".into(),
        target: FetchTarget::Manifest {
            reference: "latest".into(),
        },
    }
    .check()
    .unwrap();
    assert!(matches!(
        check_reply(&manifest, found(MAX_MANIFEST + 1)),
        Err(FetchError::BadReply(_))
    ));
    let refused = FetchReply::Refused {
        reason: FetchRefusal::NotFound,
        message: "no such tag".into(),
    };
    assert_eq!(
        check_reply(&manifest, refused).unwrap(),
        Err((FetchRefusal::NotFound, "no such tag".into()))
    );
}

#[test]
fn upstream_hosts_are_bounded_and_lowercase() {
    assert!(check_upstreams(&[
        "198.18.0.1:5000".into(),
        "registry.example".into()
    ]));
    assert!(!check_upstreams(&["Registry.example".into()]));
    assert!(!check_upstreams(&["a/b".into()]));
    assert!(!check_upstreams(&[String::new()]));
    assert!(!check_upstreams(&vec!["a".to_owned(); MAX_UPSTREAMS + 1]));
}

#[tokio::test]
async fn a_long_refusal_is_cut_to_the_text_bound_and_still_reads() {
    let mut out = Vec::new();
    let reply = FetchReply::Refused {
        reason: FetchRefusal::Upstream,
        message: "é".repeat(MAX_TEXT),
    };
    write_reply(&mut out, &reply).await.unwrap();
    let FetchReply::Refused { message, .. } = read_reply(&mut out.as_slice()).await.unwrap() else {
        panic!("not a refusal");
    };
    assert!(message.len() <= MAX_TEXT);
}

#[tokio::test]
async fn a_forbidden_refusal_reads_back_and_an_unknown_refusal_is_a_wire_error() {
    let reply = FetchReply::Refused {
        reason: FetchRefusal::Forbidden,
        message: "pos/web was not ordered onto this device".into(),
    };
    let mut out = Vec::new();
    write_reply(&mut out, &reply).await.unwrap();
    let read = read_reply(&mut out.as_slice()).await.unwrap();
    let fetch = blob_request(0).check().unwrap();
    let refused = check_reply(&fetch, read).unwrap().unwrap_err();
    assert_eq!(refused.0, FetchRefusal::Forbidden);

    // What an agent from before `Forbidden` sees of it, and what this build sees of a refusal
    // added after it: the variant index past the known ones fails to decode, within the bound.
    let body = &out[2..];
    assert_eq!(body[..2], [1, 6], "Refused, then the refusal's index");
    let mut later = body.to_vec();
    later[1] = 7;
    let mut framed = (later.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&later);
    assert!(matches!(
        read_reply(&mut framed.as_slice()).await,
        Err(FetchError::Wire(_))
    ));
}

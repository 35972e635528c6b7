//! The hub's pull-through mirror against Debian's real registry (distribution 2.8) on a loopback
//! port: an admin pushes a multi-layer image into the registry, starts a hub with `--registry`, and
//! three devices pull the image through the hub's `/v2/` at once. Each blob crosses from the
//! registry once (its access log says so), ranges resume, unknown names and blobs answer in the
//! distribution API's error format, a corrupting upstream is refused and never cached, and a
//! password given to the hub never reaches its log.
//!
//! A real `docker pull` through the hub is not here: the test engine runs in a network namespace
//! with only loopback (scripts/docker-setup.sh) and cannot reach the hub's listener; the engine's
//! pull from an agent's loopback registry is the next part of issue #16.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use outpost_tests::admin_api::block_on;
use outpost_tests::oci::{push, random_image, sha256, Image, SCHEMA2};
use outpost_tests::registry::{free_loopback, CorruptingUpstream, Registry};
use outpost_tests::Hub;
use serde_json::Value;

const REPO: &str = "pos/web";
const PASSWORD: &str = "mirror-test-s3cret-pw";

/// An HTTPS client of the hub's admin listener and the base of its API.
struct HubClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl HubClient {
    fn new(hub: &Hub) -> Self {
        let read = |name: &str| std::fs::read(hub.data_dir.join(name)).expect(name);
        let text = |name: &str| String::from_utf8(read(name)).expect(name).trim().to_owned();
        let ca = reqwest::Certificate::from_pem(&read("ca.pem")).expect("hub CA");
        let http = reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()
            .expect("HTTPS client");
        Self {
            http,
            base: text("api.url"),
            token: text("admin.token"),
        }
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("the hub answers")
    }

    /// `(status, code of the first distribution error)` of a request expected to fail.
    async fn error_code(&self, path: &str) -> (u16, String, String) {
        let response = self.get(path, &[]).await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("a JSON error body");
        let error = &body["errors"][0];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        (status, text(&error["code"]), text(&error["message"]))
    }
}

/// One device's pull: the manifest by tag, then every blob it names, each checked by digest.
async fn pull(client: Arc<HubClient>, image: Image) {
    let accept = [("accept", SCHEMA2)];
    let response = client
        .get(&format!("/v2/{REPO}/manifests/v1"), &accept)
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], SCHEMA2);
    assert_eq!(
        response.headers()["docker-content-digest"],
        image.manifest_digest.as_str()
    );
    let manifest = response.bytes().await.expect("manifest");
    assert_eq!(sha256(&manifest), image.manifest_digest);
    let parsed: Value = serde_json::from_slice(&manifest).expect("manifest JSON");
    let mut digests = vec![parsed["config"]["digest"]
        .as_str()
        .expect("config")
        .to_owned()];
    for layer in parsed["layers"].as_array().expect("layers") {
        digests.push(layer["digest"].as_str().expect("layer digest").to_owned());
    }
    for digest in digests {
        let response = client.get(&format!("/v2/{REPO}/blobs/{digest}"), &[]).await;
        assert_eq!(response.status(), 200, "{digest}");
        assert_eq!(response.headers()["docker-content-digest"], digest.as_str());
        let bytes = response.bytes().await.expect("blob");
        assert_eq!(sha256(&bytes), digest, "the blob's bytes are its digest");
    }
}

/// GETs of `digest` the registry answered with 200, from its access log.
fn upstream_gets(registry: &Registry, digest: &str) -> usize {
    let line = format!("\"GET /v2/{REPO}/blobs/{digest} HTTP/1.1\" 200");
    registry.log().matches(&line).count()
}

/// Push an image into `registry`, then three devices pull it through a hub at once.
fn three_devices_pull(
    registry: &Registry,
    hub: &Hub,
    basic: Option<(&str, &str)>,
) -> (Image, Arc<HubClient>) {
    let image = random_image(&[300 << 10, 1 << 20, 2 << 20]);
    let base = format!("http://{}", registry.addr());
    block_on(push(&base, REPO, "v1", &image, basic));
    let client = Arc::new(HubClient::new(hub));
    block_on(async {
        let devices: Vec<_> = (0..3)
            .map(|_| tokio::spawn(pull(client.clone(), image.clone())))
            .collect();
        for device in devices {
            device.await.expect("a device's pull");
        }
    });
    for (digest, _) in &image.blobs {
        assert_eq!(
            upstream_gets(registry, digest),
            1,
            "{digest} fetched from the registry once:\n{}",
            registry.log()
        );
    }
    (image, client)
}

#[test]
fn three_devices_pull_an_image_through_the_hub_and_each_blob_crosses_once() {
    let registry = Registry::start_local(&free_loopback(), None);
    let corrupting = CorruptingUpstream::start();
    let hub = Hub::start_with_flags(&[
        "--registry",
        &format!("http://{}", registry.addr()),
        "--registry",
        &format!("http://{}", corrupting.addr),
    ]);
    let (image, client) = three_devices_pull(&registry, &hub, None);

    // A second round is served from the hub alone.
    block_on(pull(client.clone(), image.clone()));
    let (layer_digest, layer) = &image.blobs[2];
    assert_eq!(upstream_gets(&registry, layer_digest), 1);
    // The hub's metrics say what the registry's log says.
    let metrics = block_on(async {
        let response = client.get("/metrics", &[]).await;
        response.text().await.expect("the metrics")
    });
    let blob_fetches = format!(
        "outpost_hub_mirror_upstream_fetches_total{{kind=\"blob\"}} {}",
        image.blobs.len()
    );
    assert!(
        metrics.contains(&blob_fetches),
        "{blob_fetches} in:\n{metrics}"
    );

    block_on(async {
        // A transfer cut at byte 100,000 resumes there.
        let response = client
            .get(
                &format!("/v2/{REPO}/blobs/{layer_digest}"),
                &[("range", "bytes=100000-")],
            )
            .await;
        assert_eq!(response.status(), 206);
        let end = layer.len() - 1;
        assert_eq!(
            response.headers()["content-range"],
            format!("bytes 100000-{end}/{}", layer.len()).as_str()
        );
        assert_eq!(
            response.bytes().await.expect("part").as_ref(),
            &layer[100_000..]
        );

        // A range past the end is refused with the blob's size.
        let past = format!("bytes={}-", layer.len());
        let response = client
            .get(
                &format!("/v2/{REPO}/blobs/{layer_digest}"),
                &[("range", &past)],
            )
            .await;
        assert_eq!(response.status(), 416);
        assert_eq!(
            response.headers()["content-range"],
            format!("bytes */{}", layer.len()).as_str()
        );

        // HEAD answers the size and digest without the bytes.
        let head = client
            .http
            .head(format!("{}/v2/{REPO}/blobs/{layer_digest}", client.base))
            .bearer_auth(&client.token)
            .send()
            .await
            .expect("HEAD");
        assert_eq!(head.status(), 200);
        assert_eq!(
            head.headers()["content-length"],
            layer.len().to_string().as_str()
        );
        assert_eq!(
            head.headers()["docker-content-digest"],
            layer_digest.as_str()
        );

        // Unknown names and blobs answer in the distribution API's format.
        let absent = sha256(b"never pushed");
        assert_eq!(
            client
                .error_code(&format!("/v2/{REPO}/blobs/{absent}"))
                .await
                .1,
            "BLOB_UNKNOWN"
        );
        assert_eq!(
            client.error_code("/v2/pos/absent/manifests/v1").await.1,
            "MANIFEST_UNKNOWN"
        );
        assert_eq!(
            client
                .error_code("/v2/elsewhere.example:5000/pos/web/manifests/v1")
                .await
                .1,
            "NAME_UNKNOWN"
        );
        let (status, code, _) = client.error_code("/v2/Pos/Web/manifests/v1").await;
        assert_eq!((status, code.as_str()), (400, "NAME_INVALID"));
        assert_eq!(
            client
                .error_code(&format!("/v2/{REPO}/blobs/sha256:nothex"))
                .await
                .1,
            "DIGEST_INVALID"
        );

        // A blob whose bytes are not its digest is refused, never cached, and fetched again next
        // time; the hub serves other pulls meanwhile.
        let manifest_path = format!("/v2/{REPO}/manifests/v1");
        let evil = format!(
            "/v2/{}/evil/app/blobs/{}",
            corrupting.addr,
            sha256(b"the real bytes")
        );
        for attempt in 1..=2 {
            let refused = client.error_code(&evil);
            let meanwhile = async {
                let started = tokio::time::Instant::now();
                let answer = client.get(&manifest_path, &[("accept", SCHEMA2)]).await;
                (answer.status(), started.elapsed())
            };
            let ((status, code, message), (other, took)) = tokio::join!(refused, meanwhile);
            assert_eq!(
                (status, code.as_str()),
                (502, "DIGEST_INVALID"),
                "{message}"
            );
            assert!(
                message.contains("digest mismatch") && message.contains("nothing was kept"),
                "{message}"
            );
            assert_eq!(other, 200);
            assert!(
                took < Duration::from_millis(900),
                "another pull waited for the bad one: {took:?}"
            );
            assert_eq!(corrupting.gets.load(Ordering::SeqCst), attempt);
        }
    });
    assert!(
        hub.log().contains("blob refused"),
        "the hub logs the refusal"
    );
}

#[test]
fn a_registry_with_basic_auth_is_mirrored_and_the_password_never_logged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash(PASSWORD, 5).expect("bcrypt");
    std::fs::write(&htpasswd, format!("fleet:{hash}\n")).expect("htpasswd");
    let registry = Registry::start_local(&free_loopback(), Some(&htpasswd));
    let credentials = dir.path().join("registry-credentials");
    std::fs::write(
        &credentials,
        format!("{} fleet {PASSWORD}\n", registry.addr()),
    )
    .expect("credentials");

    // Credentials in the URL are refused before the hub starts, without echoing them.
    let refused = std::process::Command::new(outpost_tests::bin_dir().join("outpost-hub"))
        .args([
            "serve",
            "--registry",
            &format!("http://fleet:{PASSWORD}@{}", registry.addr()),
        ])
        .output()
        .expect("outpost-hub");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("--registry-credentials"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");

    let upstream = format!("http://{}", registry.addr());
    let flags = [
        "--registry",
        upstream.as_str(),
        "--registry-credentials",
        credentials.to_str().expect("path"),
    ];
    let mut hub = Hub::start_with_flags(&flags);
    let (image, _) = three_devices_pull(&registry, &hub, Some(("fleet", PASSWORD)));
    assert!(
        registry.log().contains("HTTP/1.1\" 401"),
        "the registry demanded credentials"
    );

    // The blobs outlive the hub: after a restart the image comes from its disk.
    hub.restart_with(&flags);
    block_on(pull(Arc::new(HubClient::new(&hub)), image.clone()));
    for (digest, _) in &image.blobs {
        assert_eq!(
            upstream_gets(&registry, digest),
            1,
            "{digest} after a restart"
        );
    }
    let log = hub.log();
    assert!(log.contains("mirrored a blob"), "{log}");
    assert!(
        !log.contains(PASSWORD),
        "the password reached the hub's log"
    );
}

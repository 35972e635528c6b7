//! Synthetic images for the registry tests: random gzip layers, a config and a Docker schema 2
//! manifest, pushed into a registry with the distribution API's monolithic upload (POST an upload,
//! PUT its bytes with `?digest=`, PUT the manifest), as `docker push` does under the hood.

use sha2::{Digest as _, Sha256};

/// The manifest's media type.
pub const SCHEMA2: &str = "application/vnd.docker.distribution.manifest.v2+json";
const CONFIG_TYPE: &str = "application/vnd.docker.container.image.v1+json";
const LAYER_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// An image's parts, by digest.
#[derive(Debug, Clone)]
pub struct Image {
    /// The manifest's bytes.
    pub manifest: Vec<u8>,
    /// `sha256:…` of the manifest.
    pub manifest_digest: String,
    /// Config then layers: `(digest, bytes)`.
    pub blobs: Vec<(String, Vec<u8>)>,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// An image of gzip layers of random bytes of these sizes (uncompressed), its config listing them.
pub fn random_image(layer_sizes: &[usize]) -> Image {
    use rand::RngCore as _;
    use std::io::Write as _;
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for &size in layer_sizes {
        let mut raw = vec![0u8; size];
        rand::rng().fill_bytes(&mut raw);
        diff_ids.push(sha256(&raw));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).expect("gzip in memory");
        layers.push(gz.finish().expect("gzip in memory"));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
    .expect("config JSON");
    let descriptor = |media_type: &str, bytes: &[u8]| serde_json::json!({ "mediaType": media_type, "size": bytes.len(), "digest": sha256(bytes) });
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": SCHEMA2,
        "config": descriptor(CONFIG_TYPE, &config),
        "layers": layers.iter().map(|l| descriptor(LAYER_TYPE, l)).collect::<Vec<_>>(),
    }))
    .expect("manifest JSON");
    let mut blobs = vec![(sha256(&config), config)];
    blobs.extend(layers.into_iter().map(|l| (sha256(&l), l)));
    Image {
        manifest_digest: sha256(&manifest),
        manifest,
        blobs,
    }
}

/// Push `image` as `name:tag` to the registry at `base` (`http://host:port`), with Basic auth
/// when `basic` is given.
pub async fn push(base: &str, name: &str, tag: &str, image: &Image, basic: Option<(&str, &str)>) {
    let http = reqwest::Client::new();
    let authed = |request: reqwest::RequestBuilder| match basic {
        Some((user, password)) => request.basic_auth(user, Some(password)),
        None => request,
    };
    for (digest, bytes) in &image.blobs {
        let started = authed(http.post(format!("{base}/v2/{name}/blobs/uploads/")))
            .send()
            .await
            .expect("start an upload");
        assert_eq!(
            started.status(),
            202,
            "upload start: {:?}",
            started.text().await
        );
        let location = started.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned();
        let mut url = reqwest::Url::parse(&location)
            .or_else(|_| reqwest::Url::parse(base).and_then(|b| b.join(&location)))
            .expect("upload URL");
        url.query_pairs_mut().append_pair("digest", digest);
        let put = authed(http.put(url))
            .header("content-type", "application/octet-stream")
            .body(bytes.clone())
            .send()
            .await
            .expect("upload a blob");
        assert_eq!(put.status(), 201, "blob upload: {:?}", put.text().await);
    }
    let put = authed(http.put(format!("{base}/v2/{name}/manifests/{tag}")))
        .header("content-type", SCHEMA2)
        .body(image.manifest.clone())
        .send()
        .await
        .expect("put the manifest");
    assert_eq!(put.status(), 201, "manifest: {:?}", put.text().await);
}

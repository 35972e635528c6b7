//! `docker-tls-front`: the Docker Engine API over mutual TLS on TCP, as remote Docker hosts are
//! usually exposed (`dockerd --tlsverify -H tcp://0.0.0.0:2376`), for the link benchmark's baseline.
//!
//! The test engine listens only on its unix socket, so this front terminates TLS and copies bytes
//! both ways to the socket, one socket connection per TLS connection: HTTP, chunked uploads and
//! hijacked `exec` streams pass untouched. It makes its own CA, a server certificate for `--ip`
//! and a client certificate, and writes the client side in the docker CLI's layout (`ca.pem`,
//! `cert.pem`, `key.pem` in `--cert-dir`, `key.pem` last), so `DOCKER_CERT_PATH=DIR
//! DOCKER_TLS_VERIFY=1` works as soon as `key.pem` exists; the listener is bound before that.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, UnixStream};
use tokio_rustls::TlsAcceptor;

/// Serve a Docker engine's unix socket over mutual TLS on TCP.
#[derive(Debug, Parser)]
struct Args {
    /// TCP address to listen on, e.g. 198.18.1.1:2376.
    #[arg(long)]
    listen: SocketAddr,
    /// The engine's unix socket.
    #[arg(long, default_value = "/var/run/docker.sock")]
    docker_socket: PathBuf,
    /// Where to write the client's ca.pem, cert.pem and key.pem.
    #[arg(long)]
    cert_dir: PathBuf,
}

/// The CA, the server's chain and key, and the client's PEM files.
struct Pki {
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivateKeyDer<'static>,
    ca: CertificateDer<'static>,
    ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

fn leaf(
    name: &str,
    sans: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    Ok(params)
}

fn make_pki(server_ip: IpAddr) -> anyhow::Result<Pki> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "docker-tls-front CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key)?;

    let server_key = KeyPair::generate()?;
    let server = leaf(
        "docker-engine",
        vec![server_ip.to_string()],
        ExtendedKeyUsagePurpose::ServerAuth,
    )?
    .signed_by(&server_key, &ca, &ca_key)?;
    let client_key = KeyPair::generate()?;
    let client = leaf(
        "docker-client",
        Vec::new(),
        ExtendedKeyUsagePurpose::ClientAuth,
    )?
    .signed_by(&client_key, &ca, &ca_key)?;
    Ok(Pki {
        server_chain: vec![server.der().clone()],
        server_key: PrivatePkcs8KeyDer::from(server_key.serialize_der()).into(),
        ca: ca.der().clone(),
        ca_pem: ca.pem(),
        client_cert_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
    })
}

fn tls_config(pki: &Pki) -> anyhow::Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.clone())?;
    let verifier =
        WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone()).build()?;
    Ok(ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())?)
}

fn write_client_files(dir: &Path, pki: &Pki) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("ca.pem"), &pki.ca_pem)?;
    std::fs::write(dir.join("cert.pem"), &pki.client_cert_pem)?;
    let partial = dir.join("key.pem.partial");
    std::fs::write(&partial, &pki.client_key_pem)?;
    std::fs::rename(&partial, dir.join("key.pem"))?;
    Ok(())
}

/// One client: TLS handshake, then bytes both ways to a fresh engine connection until both close.
async fn serve_one(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    socket: Arc<PathBuf>,
) -> anyhow::Result<()> {
    tcp.set_nodelay(true)?;
    let mut tls = acceptor.accept(tcp).await.context("TLS handshake")?;
    let mut engine = UnixStream::connect(&*socket)
        .await
        .with_context(|| format!("connecting to {}", socket.display()))?;
    tokio::io::copy_bidirectional(&mut tls, &mut engine).await?;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let pki = make_pki(args.listen.ip())?;
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(&pki)?));
    write_client_files(&args.cert_dir, &pki)?;
    println!("docker-tls-front: listening on {}", args.listen);
    let socket = Arc::new(args.docker_socket);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or similar: back off rather than spin.
                eprintln!("docker-tls-front: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, socket) = (acceptor.clone(), socket.clone());
        tokio::spawn(async move {
            if let Err(e) = serve_one(acceptor, tcp, socket).await {
                eprintln!("docker-tls-front: {peer}: {e:#}");
            }
        });
    }
}

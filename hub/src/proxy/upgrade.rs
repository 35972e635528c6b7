//! Hijacked connections: `docker exec -it`, `attach` and `run -it` ask for `Connection: Upgrade`;
//! the engine answers 101 and both sides then speak raw bytes. The client's upgraded connection and
//! the stream's are joined until either side closes; a half-close (stdin EOF) is passed on.

use axum::extract::Request;
use axum::http::header;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::debug;

/// Whether the client asks for a protocol upgrade.
pub(super) fn wants_upgrade(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
}

/// Join the two upgraded connections; the bytes that crossed from the client and to it.
pub(super) async fn splice(client: OnUpgrade, engine: OnUpgrade, request_id: u64) -> (u64, u64) {
    let (client, engine) = match tokio::try_join!(client, engine) {
        Ok(both) => both,
        Err(e) => {
            debug!(request_id, "upgrade failed: {e}");
            return (0, 0);
        }
    };
    let mut client = TokioIo::new(client);
    let mut engine = TokioIo::new(engine);
    match tokio::io::copy_bidirectional(&mut client, &mut engine).await {
        Ok((up, down)) => {
            debug!(request_id, up, down, "hijacked connection closed");
            (up, down)
        }
        Err(e) => {
            debug!(request_id, "hijacked connection ended: {e}");
            (0, 0)
        }
    }
}

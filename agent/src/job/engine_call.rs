//! An Engine API job: one HTTP request, as the job names it, on a connection of its own to the
//! engine ([`DockerHost::connect`], the one proxy streams use). bollard has no raw call, so hyper
//! speaks HTTP/1.1 here; the answer's status is the outcome and its body the output, read frame
//! by frame into the capture (which keeps 128 KiB however long the body is).
//!
//! The connection is driven in the same future as the exchange, not on a task of its own: when
//! the job's timeout drops the future, the connection goes with it.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use outpost_protocol::job::{EngineMethod, JobOutcome, OutputCapture};

use super::execute::JobError;
use crate::docker_host::DockerHost;

/// The `Host` an engine is asked for (the Docker CLI sends this one over a unix socket too).
const ENGINE_HOST: &str = "docker";

/// Send `method path` with `body` (JSON, none when empty) and read the answer into `output`.
pub(crate) async fn call(
    host: &DockerHost,
    method: EngineMethod,
    path: &str,
    body: &[u8],
    output: &mut OutputCapture,
) -> Result<JobOutcome, JobError> {
    let io = host
        .connect()
        .await
        .map_err(|source| JobError::Unreachable {
            host: host.clone(),
            source,
        })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let request = request(method, path, body)?;
    let exchange = async {
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame?.data_ref() {
                output.push(data);
            }
        }
        Ok(JobOutcome::Answered(status))
    };
    tokio::pin!(exchange, connection);
    tokio::select! {
        biased;
        answered = &mut exchange => answered,
        // The engine may close the connection as it ends the body: what it sent is buffered.
        closed = &mut connection => {
            closed?;
            exchange.await
        }
    }
}

fn request(
    method: EngineMethod,
    path: &str,
    body: &[u8],
) -> Result<Request<Full<Bytes>>, JobError> {
    let mut request = Request::builder()
        .method(method.as_str())
        .uri(path)
        .header(HOST, ENGINE_HOST);
    if !body.is_empty() {
        request = request.header(CONTENT_TYPE, "application/json");
    }
    let body = Full::new(Bytes::copy_from_slice(body));
    Ok(request.body(body)?)
}

//! One tunnel's I/O: a reader that turns framed packets into an inbound queue and a writer that
//! frames an outbound queue onto the stream, batching writes while packets keep coming.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use outpost_protocol::tunnel::{self, TunnelError};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

/// Bytes waiting to be written to one tunnel: the connection's whole window
/// ([`super::TUNNEL_WINDOW`]) and a quarter more for acknowledgements and probes, so a connection
/// inside the tunnel never finds the queue full (a drop there would be QUIC's only loss).
pub const OUTBOUND_BYTES: usize = (super::TUNNEL_WINDOW as usize) * 5 / 4;
/// Packets read from one tunnel and not yet taken by the endpoint.
pub const INBOUND_PACKETS: usize = 64;
/// Bytes the writer gathers before it writes to the TLS stream (one TLS record is 16 KiB).
const WRITE_BUFFER: usize = 16 * 1024;

/// The sending side of a tunnel's outbound queue, bounded in bytes.
#[derive(Clone, Debug)]
pub struct OutboundSender {
    tx: mpsc::UnboundedSender<Bytes>,
    queued: Arc<AtomicUsize>,
}

/// The pump's side of the outbound queue.
#[derive(Debug)]
pub struct OutboundReceiver {
    rx: mpsc::UnboundedReceiver<Bytes>,
    queued: Arc<AtomicUsize>,
}

/// Why a packet was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueFull {
    /// [`OUTBOUND_BYTES`] are waiting already: dropped.
    Full,
    /// The pump has ended.
    Closed,
}

/// A new outbound queue.
pub fn outbound_queue() -> (OutboundSender, OutboundReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        OutboundSender {
            tx,
            queued: queued.clone(),
        },
        OutboundReceiver { rx, queued },
    )
}

impl OutboundSender {
    /// Queue `packet` unless [`OUTBOUND_BYTES`] are waiting.
    pub fn try_send(&self, packet: &[u8]) -> Result<(), QueueFull> {
        let before = self.queued.fetch_add(packet.len(), Ordering::Relaxed);
        if before + packet.len() > OUTBOUND_BYTES {
            self.queued.fetch_sub(packet.len(), Ordering::Relaxed);
            return Err(QueueFull::Full);
        }
        self.tx.send(Bytes::copy_from_slice(packet)).map_err(|_| {
            self.queued.fetch_sub(packet.len(), Ordering::Relaxed);
            QueueFull::Closed
        })
    }
}

impl OutboundReceiver {
    async fn recv(&mut self) -> Option<Bytes> {
        let packet = self.rx.recv().await?;
        self.queued.fetch_sub(packet.len(), Ordering::Relaxed);
        Some(packet)
    }

    fn try_recv(&mut self) -> Option<Bytes> {
        let packet = self.rx.try_recv().ok()?;
        self.queued.fetch_sub(packet.len(), Ordering::Relaxed);
        Some(packet)
    }
}

/// How a tunnel's pump ended.
#[derive(Debug)]
pub enum Pumped {
    /// The peer closed the stream between two packets, or our side dropped its queues.
    Closed,
    /// The peer sent something that is not a packet.
    Refused(TunnelError),
    /// The stream failed.
    Failed(io::Error),
}

/// Move packets between `stream` and the queues until either side ends: what the stream carries
/// goes to `inbound` tagged by `tag`, what `outbound` holds is framed onto the stream.
pub async fn pump<S, T>(
    stream: S,
    tag: T,
    inbound: mpsc::Sender<(T, Bytes)>,
    mut outbound: OutboundReceiver,
) -> Pumped
where
    S: AsyncRead + AsyncWrite + Send,
    T: Clone + Send,
{
    let (mut reader, writer) = tokio::io::split(stream);
    let read = async {
        let mut buf = Vec::with_capacity(tunnel::MAX_PACKET);
        loop {
            match tunnel::read_packet(&mut reader, &mut buf).await {
                Ok(()) => {
                    let packet = Bytes::copy_from_slice(&buf);
                    if inbound.send((tag.clone(), packet)).await.is_err() {
                        return Pumped::Closed;
                    }
                }
                Err(TunnelError::Closed) => return Pumped::Closed,
                Err(TunnelError::Io(e)) => return Pumped::Failed(e),
                Err(refused) => return Pumped::Refused(refused),
            }
        }
    };
    let write = async {
        let mut writer = BufWriter::with_capacity(WRITE_BUFFER, writer);
        while let Some(packet) = outbound.recv().await {
            if let Err(e) = write_batch(&mut writer, packet, &mut outbound).await {
                return Pumped::Failed(e);
            }
        }
        let _ = writer.shutdown().await;
        Pumped::Closed
    };
    tokio::select! {
        ended = read => ended,
        ended = write => ended,
    }
}

/// Write `first` and every packet already queued behind it, then flush once.
async fn write_batch<W: AsyncWrite + Unpin>(
    writer: &mut BufWriter<W>,
    first: Bytes,
    queue: &mut OutboundReceiver,
) -> io::Result<()> {
    let mut packet = first;
    loop {
        writer
            .write_all(&tunnel::packet_header(packet.len()))
            .await?;
        writer.write_all(&packet).await?;
        match queue.try_recv() {
            Some(next) => packet = next,
            None => return writer.flush().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn packets_cross_both_ways_and_a_close_ends_the_other_side() {
        let (near, far) = tokio::io::duplex(64 * 1024);
        let (near_in_tx, mut near_in) = mpsc::channel(INBOUND_PACKETS);
        let (near_out, near_out_rx) = outbound_queue();
        let (far_in_tx, mut far_in) = mpsc::channel(INBOUND_PACKETS);
        let (far_out, far_out_rx) = outbound_queue();
        let near_task = tokio::spawn(pump(near, 1u8, near_in_tx, near_out_rx));
        let far_task = tokio::spawn(pump(far, 2u8, far_in_tx, far_out_rx));
        for i in 0..100u8 {
            near_out.try_send(&[i; 1200]).unwrap();
        }
        for i in 0..100u8 {
            let (tag, packet) = far_in.recv().await.unwrap();
            assert_eq!((tag, packet.len(), packet[0]), (2, 1200, i));
        }
        far_out.try_send(b"back").unwrap();
        assert_eq!(
            near_in.recv().await.unwrap(),
            (1, Bytes::from_static(b"back"))
        );
        drop(near_out);
        assert!(matches!(near_task.await.unwrap(), Pumped::Closed));
        assert!(matches!(far_task.await.unwrap(), Pumped::Closed));
    }

    #[test]
    fn the_queue_holds_its_bytes_and_no_more() {
        let (tx, mut rx) = outbound_queue();
        let packet = [0u8; 1000];
        let fit = OUTBOUND_BYTES / packet.len();
        for _ in 0..fit {
            tx.try_send(&packet).unwrap();
        }
        assert_eq!(tx.try_send(&packet), Err(QueueFull::Full));
        assert!(rx.try_recv().is_some());
        tx.try_send(&packet).unwrap();
        drop(rx);
        assert_eq!(tx.try_send(&[1]), Err(QueueFull::Closed));
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused() {
        let (near, mut far) = tokio::io::duplex(1024);
        let (in_tx, _in_rx) = mpsc::channel::<((), Bytes)>(1);
        let (_out, out_rx) = outbound_queue();
        let task = tokio::spawn(pump(near, (), in_tx, out_rx));
        far.write_all(&[0xff, 0xff, 1, 2, 3]).await.unwrap();
        assert!(matches!(
            task.await.unwrap(),
            Pumped::Refused(TunnelError::BadLength(65535))
        ));
    }
}

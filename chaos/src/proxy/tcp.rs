//! Tcp mode: opaque bytes, both directions at once, faults applied per chunk.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::outbound::Outbound;
use super::{FaultsWatch, Proxy, CHUNK};

/// Chunks one direction may have read but not yet written: what lets latency delay a stream without
/// capping its throughput at one chunk per latency, and bounds what a held direction buffers.
const IN_FLIGHT: usize = 4;

/// Relays between the client and its upstream until both directions have ended.
pub(super) async fn relay(
    proxy: &Proxy,
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    held: Vec<u8>,
    faults: FaultsWatch,
) -> io::Result<()> {
    let (from_client, to_client) = client.split();
    let (from_upstream, to_upstream) = upstream.split();
    let mut to_upstream = Outbound::new(to_upstream, faults.clone(), &proxy.counters.bytes_to_upstream);
    if !held.is_empty() {
        to_upstream.send(&held, Instant::now()).await?;
    }
    let to_client = Outbound::new(to_client, faults, &proxy.counters.bytes_to_client);
    tokio::try_join!(pump(from_client, to_upstream), pump(from_upstream, to_client))?;
    Ok(())
}

/// A chunk on its way from the reader to the writer of one direction.
struct Chunk {
    buffer: Vec<u8>,
    len: usize,
    arrival: Instant,
}

/// One direction: a reader stamps chunks with their arrival, the writer lets them out under the
/// faults, and the buffers go back to the reader (at most `IN_FLIGHT` are ever allocated).
async fn pump<R, W>(mut reader: R, mut outbound: Outbound<'_, W>) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (full_tx, mut full_rx) = mpsc::channel::<Chunk>(IN_FLIGHT);
    let (free_tx, mut free_rx) = mpsc::channel::<Vec<u8>>(IN_FLIGHT);
    let reading = async move {
        let mut allocated = 0;
        loop {
            let mut buffer = match free_rx.try_recv() {
                Ok(buffer) => buffer,
                Err(_) if allocated < IN_FLIGHT => {
                    allocated += 1;
                    vec![0; CHUNK]
                }
                Err(_) => match free_rx.recv().await {
                    Some(buffer) => buffer,
                    None => return Ok(()),
                },
            };
            let len = reader.read(&mut buffer).await?;
            if len == 0 {
                // Dropping `full_tx` tells the writer the stream ended.
                return Ok::<(), io::Error>(());
            }
            if full_tx.send(Chunk { buffer, len, arrival: Instant::now() }).await.is_err() {
                return Ok(());
            }
        }
    };
    let writing = async move {
        while let Some(chunk) = full_rx.recv().await {
            outbound.send(&chunk.buffer[..chunk.len], chunk.arrival).await?;
            // Never waits: the channel holds as many buffers as were ever allocated.
            let _ = free_tx.send(chunk.buffer).await;
        }
        outbound.shutdown().await
    };
    tokio::try_join!(reading, writing)?;
    Ok(())
}

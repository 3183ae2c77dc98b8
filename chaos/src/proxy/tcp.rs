//! Tcp mode: opaque bytes, both directions at once, faults applied per chunk.

use std::collections::VecDeque;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::outbound::{jitter_draw, Outbound, Plan};
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

/// A chunk read from one side and not yet all written to the other.
struct Chunk {
    buffer: Vec<u8>,
    len: usize,
    sent: usize,
    arrival: Instant,
    draw: f64,
}

/// One direction, in one future: write whatever the faults let go now, then wait for the next
/// read or the next moment something may go, whichever comes first.
///
/// Without faults a chunk is written as soon as it is read, with no hand-off between tasks (the
/// fast path: one read, one write). With latency the direction keeps reading while the chunks
/// before wait, up to `IN_FLIGHT` of them, so each chunk is delayed from its own arrival.
async fn pump<R, W>(mut reader: R, mut outbound: Outbound<'_, W>) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut queue: VecDeque<Chunk> = VecDeque::with_capacity(IN_FLIGHT);
    let mut free: Vec<Vec<u8>> = Vec::with_capacity(IN_FLIGHT);
    let mut ended = false;
    loop {
        let mut wait = None;
        while let Some(front) = queue.front_mut() {
            match outbound.plan(front.len - front.sent, front.arrival, front.draw) {
                Plan::Write(len) => {
                    outbound.write(&front.buffer[front.sent..front.sent + len]).await?;
                    front.sent += len;
                    if front.sent == front.len {
                        if let Some(done) = queue.pop_front() {
                            free.push(done.buffer);
                        }
                    }
                }
                Plan::Wait(until) => {
                    wait = Some(until);
                    break;
                }
            }
        }
        if ended && queue.is_empty() {
            return outbound.shutdown().await;
        }
        let room = !ended && queue.len() < IN_FLIGHT;
        if room && free.is_empty() {
            // Buffers are allocated lazily and recycled: at most IN_FLIGHT per direction.
            free.push(vec![0; CHUNK]);
        }
        tokio::select! {
            read = read_into(&mut reader, free.last_mut()), if room => {
                let len = read?;
                if len == 0 {
                    ended = true;
                } else if let Some(buffer) = free.pop() {
                    queue.push_back(Chunk { buffer, len, sent: 0, arrival: Instant::now(), draw: jitter_draw() });
                }
            }
            () = outbound.wait(wait.flatten()), if wait.is_some() => {}
            // Not reached: with nothing to write and nothing to read the loop has returned above.
            else => return outbound.shutdown().await,
        }
    }
}

async fn read_into<R: AsyncRead + Unpin>(reader: &mut R, buffer: Option<&mut Vec<u8>>) -> io::Result<usize> {
    match buffer {
        Some(buffer) => reader.read(buffer).await,
        None => std::future::pending().await,
    }
}

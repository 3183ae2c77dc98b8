//! Http mode: HTTP/1.1 exchanges, one at a time per connection (keep-alive, no pipelining), so
//! that a share of the requests can be answered here with an injected error.
//!
//! Heads and bodies are forwarded verbatim (Content-Length and chunked bodies in both directions;
//! responses without length until the upstream closes). Latency applies once per message, counted
//! from when its head arrived. Not handled: `Expect: 100-continue` is relayed but the proxy waits
//! for the body, so such a client sends it after its own continue-timeout; a `101 Switching
//! Protocols` ends the connection.

use std::io;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::outbound::Outbound;
use super::wire::{parse_request, parse_response, Body, Framing, Inbound};
use super::{FaultsWatch, Proxy};

/// The proxy's own answer to a request it cannot parse, before it closes the connection.
const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Relays request/response exchanges until either side ends the connection.
pub(super) async fn relay(
    proxy: &Proxy,
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    held: Vec<u8>,
    faults: FaultsWatch,
) -> io::Result<()> {
    let (from_client, to_client) = client.split();
    let (from_upstream, to_upstream) = upstream.split();
    let mut from_client = Inbound::new(from_client, held);
    let mut from_upstream = Inbound::new(from_upstream, Vec::new());
    let mut to_client = Outbound::new(to_client, faults.clone(), &proxy.counters.bytes_to_client);
    let mut to_upstream = Outbound::new(to_upstream, faults, &proxy.counters.bytes_to_upstream);
    loop {
        // Between exchanges the upstream may close (idle timeout) or say something unasked (a 408):
        // the client is told the same way, by what the upstream sent and the close.
        let head_len = tokio::select! {
            head = from_client.head() => match head? {
                Some(len) => len,
                None => return to_upstream.shutdown().await,
            },
            read = from_upstream.fill() => {
                read?;
                to_client.send(from_upstream.buffered(), Instant::now()).await?;
                return to_client.shutdown().await;
            }
        };
        let arrival = Instant::now();
        let request = match parse_request(&from_client.buffered()[..head_len]) {
            Ok(request) => request,
            Err(_) => {
                to_client.send(BAD_REQUEST, arrival).await?;
                return to_client.shutdown().await;
            }
        };
        proxy.counters.http_requests_total.fetch_add(1, Ordering::Relaxed);

        let armed = to_client.armed();
        if let Some(response) = armed.injected_response() {
            from_client.consume(head_len);
            relay_body(&mut from_client, None::<&mut Outbound<'_, tokio::io::Sink>>, request.framing, arrival).await?;
            to_client.send(response, arrival).await?;
            proxy.counters.http_errors_injected.fetch_add(1, Ordering::Relaxed);
            if request.close {
                return to_client.shutdown().await;
            }
            continue;
        }

        to_upstream.send(&from_client.buffered()[..head_len], arrival).await?;
        from_client.consume(head_len);
        relay_body(&mut from_client, Some(&mut to_upstream), request.framing, arrival).await?;
        loop {
            let Some(head_len) = from_upstream.head().await? else {
                // The upstream closed without answering: so does the proxy.
                return to_client.shutdown().await;
            };
            let arrival = Instant::now();
            let response = parse_response(&from_upstream.buffered()[..head_len], request.is_head)?;
            to_client.send(&from_upstream.buffered()[..head_len], arrival).await?;
            from_upstream.consume(head_len);
            relay_body(&mut from_upstream, Some(&mut to_client), response.framing, arrival).await?;
            if response.status == 101 {
                return to_client.shutdown().await;
            }
            if (100..200).contains(&response.status) {
                continue;
            }
            if response.framing == Framing::UntilClose || response.close || request.close {
                return to_client.shutdown().await;
            }
            break;
        }
    }
}

/// Moves one body from `inbound` to `outbound` (or drops it when `None`), chunk framing included.
async fn relay_body<R, W>(
    inbound: &mut Inbound<R>,
    mut outbound: Option<&mut Outbound<'_, W>>,
    framing: Framing,
    arrival: Instant,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut body = Body::new(framing);
    while !body.is_done() {
        if inbound.buffered().is_empty() {
            if inbound.fill().await? == 0 {
                return if body.ends_at_close() {
                    Ok(())
                } else {
                    Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the stream ended inside an HTTP body"))
                };
            }
            continue;
        }
        let len = body.advance(inbound.buffered())?;
        if let Some(outbound) = outbound.as_deref_mut() {
            outbound.send(&inbound.buffered()[..len], arrival).await?;
        }
        inbound.consume(len);
    }
    Ok(())
}

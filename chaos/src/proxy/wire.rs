//! HTTP/1.1 message framing, just enough to find where each request and response ends: heads,
//! Content-Length and chunked bodies, and bodies that end with the connection. Bodies are never
//! decoded or rewritten; the proxy forwards them byte for byte. Shared by the Http mode and the
//! control API.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::CHUNK;

/// The largest head (request or status line plus headers) accepted.
pub(super) const MAX_HEAD: usize = 64 * 1024;

/// A malformed message.
#[derive(Debug, thiserror::Error)]
#[error("malformed HTTP/1.1 message: {0}")]
pub(super) struct WireError(pub(super) &'static str);

impl From<WireError> for io::Error {
    fn from(e: WireError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// The reading side of a connection with its buffer: bytes read but not yet consumed stay here,
/// so a head, a body and the next message can be taken from it in turn.
pub(super) struct Inbound<R> {
    reader: R,
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    /// How far past `start` a head's end has already been looked for.
    scanned: usize,
}

impl<R: AsyncRead + Unpin> Inbound<R> {
    /// `held` are bytes already read from `reader`; they come first.
    pub(super) fn new(reader: R, mut held: Vec<u8>) -> Self {
        let end = held.len();
        held.resize(end.max(CHUNK), 0);
        Inbound { reader, buffer: held, start: 0, end, scanned: 0 }
    }

    pub(super) fn buffered(&self) -> &[u8] {
        &self.buffer[self.start..self.end]
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.start += n.min(self.end - self.start);
        self.scanned = 0;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads once more from the socket; `Ok(0)` at the end of the stream. Cancel-safe: nothing is
    /// lost if the future is dropped before it completes.
    pub(super) async fn fill(&mut self) -> io::Result<usize> {
        if self.end == self.buffer.len() {
            if self.start > 0 {
                self.buffer.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buffer.len() < MAX_HEAD {
                let grown = (self.buffer.len() * 2).clamp(CHUNK, MAX_HEAD);
                self.buffer.resize(grown, 0);
            } else {
                return Err(WireError("head larger than 64 KiB").into());
            }
        }
        let n = self.reader.read(&mut self.buffer[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Waits for a complete head at the front of the buffer and returns its length (final blank
    /// line included); `None` if the stream ended cleanly before a new message began. Cancel-safe.
    pub(super) async fn head(&mut self) -> io::Result<Option<usize>> {
        loop {
            let buffered = self.buffered();
            let from = self.scanned.saturating_sub(3);
            if let Some(at) = buffered[from..].windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok(Some(from + at + 4));
            }
            self.scanned = buffered.len();
            if self.fill().await? == 0 {
                return if self.buffered().is_empty() {
                    Ok(None)
                } else {
                    Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the stream ended inside an HTTP head"))
                };
            }
        }
    }
}

/// How a message's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// A response without length: the body is everything until the upstream closes.
    UntilClose,
}

/// What the proxy needs to know about a request.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct RequestHead {
    pub(super) is_head: bool,
    pub(super) framing: Framing,
    /// The client asked for the connection to end after this exchange.
    pub(super) close: bool,
}

/// What the proxy needs to know about a response.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ResponseHead {
    pub(super) status: u16,
    pub(super) framing: Framing,
    pub(super) close: bool,
}

/// Splits a head into its first line and its header lines (without the final blank line).
fn lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split(|&b| b == b'\n').map(|line| line.strip_suffix(b"\r").unwrap_or(line)).filter(|line| !line.is_empty())
}

fn header(line: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    let colon = line.iter().position(|&b| b == b':').ok_or(WireError("header line without ':'"))?;
    let name = &line[..colon];
    if name.is_empty() || name.iter().any(|b| b.is_ascii_whitespace()) {
        return Err(WireError("bad header name"));
    }
    Ok((name, line[colon + 1..].trim_ascii()))
}

fn has_token(value: &[u8], token: &str) -> bool {
    value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// The framing-relevant headers of a message.
#[derive(Default)]
struct Headers {
    content_length: Option<u64>,
    /// Transfer-Encoding present; `Some(true)` when chunked is its final coding.
    chunked: Option<bool>,
    close: bool,
    keep_alive: bool,
}

fn headers<'a>(header_lines: impl Iterator<Item = &'a [u8]>) -> Result<Headers, WireError> {
    let mut found = Headers::default();
    for line in header_lines {
        let (name, value) = header(line)?;
        if name.eq_ignore_ascii_case(b"content-length") {
            let length = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(WireError("bad Content-Length"))?;
            if found.content_length.is_some_and(|seen| seen != length) {
                return Err(WireError("conflicting Content-Length headers"));
            }
            found.content_length = Some(length);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = value.rsplit(|&b| b == b',').next().unwrap_or(value).trim_ascii();
            found.chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            found.close |= has_token(value, "close");
            found.keep_alive |= has_token(value, "keep-alive");
        }
    }
    Ok(found)
}

/// The method and target of a request head.
pub(super) fn request_line(head: &[u8]) -> Result<(&str, &str, &str), WireError> {
    let first = lines(head).next().ok_or(WireError("empty head"))?;
    let first = std::str::from_utf8(first).map_err(|_| WireError("request line is not UTF-8"))?;
    let mut parts = first.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(target), Some(version), None)
            if !method.is_empty() && !target.is_empty() && version.starts_with("HTTP/1.") =>
        {
            Ok((method, target, version))
        }
        _ => Err(WireError("bad request line")),
    }
}

pub(super) fn parse_request(head: &[u8]) -> Result<RequestHead, WireError> {
    let (method, _, version) = request_line(head)?;
    let found = headers(lines(head).skip(1))?;
    let framing = match (found.chunked, found.content_length) {
        (Some(true), _) => Framing::Chunked,
        (Some(false), _) => return Err(WireError("request Transfer-Encoding without chunked")),
        (None, Some(length)) => Framing::new_length(length),
        (None, None) => Framing::Empty,
    };
    let close = found.close || (version == "HTTP/1.0" && !found.keep_alive);
    Ok(RequestHead { is_head: method == "HEAD", framing, close })
}

/// `request_was_head`: the answer to a HEAD request has no body whatever its headers say.
pub(super) fn parse_response(head: &[u8], request_was_head: bool) -> Result<ResponseHead, WireError> {
    let first = lines(head).next().ok_or(WireError("empty head"))?;
    let mut parts = first.splitn(3, |&b| b == b' ');
    let version = parts.next().unwrap_or_default();
    let status = parts
        .next()
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..=999).contains(s))
        .ok_or(WireError("bad status line"))?;
    if !version.starts_with(b"HTTP/1.") {
        return Err(WireError("bad status line"));
    }
    let found = headers(lines(head).skip(1))?;
    let framing = if request_was_head || (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Empty
    } else {
        match (found.chunked, found.content_length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::UntilClose,
            (None, Some(length)) => Framing::new_length(length),
            (None, None) => Framing::UntilClose,
        }
    };
    let close = found.close || (version == b"HTTP/1.0" && !found.keep_alive);
    Ok(ResponseHead { status, framing, close })
}

impl Framing {
    fn new_length(length: u64) -> Framing {
        if length == 0 {
            Framing::Empty
        } else {
            Framing::Length(length)
        }
    }
}

/// Where a chunked body is in its framing.
#[derive(Clone, Copy, Debug)]
pub(super) enum Chunked {
    Size { value: u64, digits: u8 },
    Extension { value: u64 },
    SizeLf { value: u64 },
    Data(u64),
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf,
}

/// Follows a body through the bytes that make it, to tell where it ends.
#[derive(Clone, Copy, Debug)]
pub(super) enum Body {
    Remaining(u64),
    Chunked(Chunked),
    UntilClose,
    Done,
}

impl Body {
    pub(super) fn new(framing: Framing) -> Body {
        match framing {
            Framing::Empty | Framing::Length(0) => Body::Done,
            Framing::Length(n) => Body::Remaining(n),
            Framing::Chunked => Body::Chunked(Chunked::Size { value: 0, digits: 0 }),
            Framing::UntilClose => Body::UntilClose,
        }
    }

    pub(super) fn is_done(&self) -> bool {
        matches!(self, Body::Done)
    }

    /// Whether the end of the stream is a proper end of this body.
    pub(super) fn ends_at_close(&self) -> bool {
        matches!(self, Body::UntilClose | Body::Done)
    }

    /// How many leading bytes of `input` belong to the body (all of them unless it ends inside).
    pub(super) fn advance(&mut self, input: &[u8]) -> Result<usize, WireError> {
        let mut at = 0;
        while at < input.len() {
            match self {
                Body::Done => break,
                Body::UntilClose => at = input.len(),
                Body::Remaining(left) => {
                    let take = (*left).min((input.len() - at) as u64);
                    at += take as usize;
                    *left -= take;
                    if *left == 0 {
                        *self = Body::Done;
                    }
                }
                Body::Chunked(Chunked::Data(left)) => {
                    let take = (*left).min((input.len() - at) as u64);
                    at += take as usize;
                    *left -= take;
                    if *left == 0 {
                        *self = Body::Chunked(Chunked::DataCr);
                    }
                }
                Body::Chunked(state) => {
                    let byte = input[at];
                    at += 1;
                    *self = match step(*state, byte)? {
                        Some(next) => Body::Chunked(next),
                        None => Body::Done,
                    };
                }
            }
        }
        Ok(at)
    }
}

/// One framing byte of a chunked body; `None` when the body ended with it.
fn step(state: Chunked, byte: u8) -> Result<Option<Chunked>, WireError> {
    let after_size_line = |value: u64| if value == 0 { Chunked::TrailerStart } else { Chunked::Data(value) };
    let next = match state {
        Chunked::Size { value, digits } => match (byte as char).to_digit(16) {
            Some(digit) if digits < 16 => Chunked::Size { value: value << 4 | u64::from(digit), digits: digits + 1 },
            Some(_) => return Err(WireError("chunk size too large")),
            None if digits == 0 => return Err(WireError("chunk size missing")),
            None => match byte {
                b';' | b' ' | b'\t' => Chunked::Extension { value },
                b'\r' => Chunked::SizeLf { value },
                b'\n' => after_size_line(value),
                _ => return Err(WireError("bad chunk size")),
            },
        },
        Chunked::Extension { value } => match byte {
            b'\n' => after_size_line(value),
            _ => Chunked::Extension { value },
        },
        Chunked::SizeLf { value } => match byte {
            b'\n' => after_size_line(value),
            _ => return Err(WireError("chunk size line not ended by CRLF")),
        },
        Chunked::Data(_) => return Err(WireError("chunk data out of place")),
        Chunked::DataCr => match byte {
            b'\r' => Chunked::DataLf,
            b'\n' => Chunked::Size { value: 0, digits: 0 },
            _ => return Err(WireError("chunk data not followed by CRLF")),
        },
        Chunked::DataLf => match byte {
            b'\n' => Chunked::Size { value: 0, digits: 0 },
            _ => return Err(WireError("chunk data not followed by CRLF")),
        },
        Chunked::TrailerStart => match byte {
            b'\r' => Chunked::TrailerLf,
            b'\n' => return Ok(None),
            _ => Chunked::TrailerLine,
        },
        Chunked::TrailerLine => match byte {
            b'\n' => Chunked::TrailerStart,
            _ => Chunked::TrailerLine,
        },
        Chunked::TrailerLf => match byte {
            b'\n' => return Ok(None),
            _ => return Err(WireError("trailers not ended by CRLF")),
        },
    };
    Ok(Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns how many bytes the body took.
    fn body_length(framing: Framing, input: &[u8], step: usize) -> Option<usize> {
        let mut body = Body::new(framing);
        let mut taken = 0;
        for piece in input.chunks(step) {
            let n = body.advance(piece).expect("well-formed");
            taken += n;
            if body.is_done() {
                return Some(taken);
            }
        }
        body.is_done().then_some(taken)
    }

    #[test]
    fn a_chunked_body_ends_after_its_last_chunk_and_trailers_whatever_the_pieces() {
        let body = b"4\r\nWiki\r\n7;ext=1\r\npedia i\r\n0\r\nX-Trailer: yes\r\n\r\n";
        let mut next = body.to_vec();
        next.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        for step in [1, 2, 3, 7, 1000] {
            assert_eq!(body_length(Framing::Chunked, &next, step), Some(body.len()), "pieces of {step}");
        }
        assert_eq!(body_length(Framing::Chunked, b"0\r\n\r\n", 1), Some(5));
        assert_eq!(body_length(Framing::Chunked, b"A\r\n0123456789\r\n0\r\n", 4), None, "needs the blank line");
    }

    #[test]
    fn broken_chunk_framing_is_an_error() {
        for bad in [&b"zz\r\n"[..], b"4\r\nWikiXX", b"\r\n", b"11111111111111111\r\n"] {
            let mut body = Body::new(Framing::Chunked);
            assert!(body.advance(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_length_body_takes_exactly_its_length() {
        assert_eq!(body_length(Framing::Length(5), b"helloGET", 3), Some(5));
        assert_eq!(body_length(Framing::Empty, b"GET", 3), Some(0));
        assert_eq!(body_length(Framing::UntilClose, b"abc", 1), None);
    }

    #[test]
    fn requests_and_responses_are_framed_by_their_headers() {
        let post = b"POST / HTTP/1.1\r\nHost: x\r\ncontent-length: 12\r\n\r\n";
        assert_eq!(
            parse_request(post).expect("valid"),
            RequestHead { is_head: false, framing: Framing::Length(12), close: false }
        );
        let chunked =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\nConnection: close\r\n\r\n";
        assert_eq!(
            parse_request(chunked).expect("valid"),
            RequestHead { is_head: false, framing: Framing::Chunked, close: true }
        );
        assert!(parse_request(b"GET / HTTP/1.0\r\n\r\n").expect("valid").close);
        assert!(parse_request(b"GET /\r\n\r\n").is_err());
        assert!(parse_request(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").is_err());

        let ok = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", false).expect("valid");
        assert_eq!(ok, ResponseHead { status: 200, framing: Framing::Length(2), close: false });
        let to_head = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", true).expect("valid");
        assert_eq!(to_head.framing, Framing::Empty);
        let no_length = parse_response(b"HTTP/1.1 200 OK\r\n\r\n", false).expect("valid");
        assert_eq!(no_length.framing, Framing::UntilClose);
        let interim = parse_response(b"HTTP/1.1 100 Continue\r\n\r\n", false).expect("valid");
        assert_eq!(interim.framing, Framing::Empty);
        assert!(parse_response(b"HTTP/1.1 OK\r\n\r\n", false).is_err());
    }

    #[tokio::test]
    async fn heads_are_found_across_reads_and_the_rest_stays_buffered() {
        let (mut writer, reader) = tokio::io::duplex(64);
        let mut inbound = Inbound::new(reader, b"GET /a HT".to_vec());
        let feed = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for piece in [&b"TP/1.1\r\nHost: x\r"[..], b"\n\r\nGET /b HTTP/1.1\r\n\r\n"] {
                writer.write_all(piece).await.expect("write");
                tokio::task::yield_now().await;
            }
        });
        let first = inbound.head().await.expect("read").expect("a head");
        assert_eq!(&inbound.buffered()[..first], b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
        inbound.consume(first);
        let second = inbound.head().await.expect("read").expect("a head");
        assert_eq!(&inbound.buffered()[..second], b"GET /b HTTP/1.1\r\n\r\n");
        inbound.consume(second);
        feed.await.expect("feeder");
        assert_eq!(inbound.head().await.expect("clean end"), None);
    }
}

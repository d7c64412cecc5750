//! Request bodies: `Content-Length` and `chunked`, bounded, read as they arrive.
//!
//! A handler that takes a body says how much it accepts: an API write a few KiB, read whole
//! ([`Body::read_to_end`]); a pushed camera's endless chunked stream, read piece by piece
//! ([`Body::next_piece`]) as each arrives. A declared length past the limit is refused before a byte of the
//! body is read (a 10 MB upload costs its headers), a chunked body past it as soon as it gets there. Every
//! read has a deadline. The framing is decoded by [`Decoder`], which does no I/O; chunk sizes are
//! parsed by httparse. A connection whose body was not read to its end cannot carry another request, so
//! [`Body::finished`] tells the connection loop whether it may keep the connection.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

pub use super::request::Framing;

/// Why a body could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Longer than the handler accepts: 413.
    TooLarge { limit: usize },
    /// Not in time: 408.
    Timeout,
    /// Broken framing (a bad chunk size, a missing CRLF): 400.
    Malformed(&'static str),
    /// The connection ended mid-body.
    Closed,
}

impl BodyError {
    /// The status and reason to answer with.
    pub fn status(&self) -> (u16, String) {
        match self {
            BodyError::TooLarge { limit } => (
                413,
                format!("request body too large: at most {limit} bytes here\n"),
            ),
            BodyError::Timeout => (408, "request body not received in time\n".into()),
            BodyError::Malformed(why) => (400, format!("bad request body: {why}\n")),
            BodyError::Closed => (400, "request body cut short\n".into()),
        }
    }
}

/// Longest chunk-size line (with extensions) and trailer section accepted.
const MAX_FRAMING_LINE: usize = 1024;

/// What [`Decoder::decode`] found in the buffered bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes (consumed from the buffer).
    Data(Bytes),
    /// More bytes are needed.
    NeedMore,
    /// The body has ended (its framing consumed).
    End,
}

/// Decodes one body's framing from a buffer of received bytes, leaving whatever follows it (a pipelined
/// request) in the buffer. No I/O.
#[derive(Debug)]
pub struct Decoder {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Bytes left of a `Content-Length` body.
    Length(u64),
    /// Before a chunk-size line.
    ChunkSize,
    /// Bytes left of a chunk's data.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// After the last chunk: trailer fields until an empty line.
    Trailers,
    Done,
}

impl Decoder {
    pub fn new(framing: Framing) -> Decoder {
        Decoder {
            state: match framing {
                Framing::None | Framing::Length(0) => State::Done,
                Framing::Length(n) => State::Length(n),
                Framing::Chunked => State::ChunkSize,
            },
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Takes what it can from `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, BodyError> {
        loop {
            match self.state {
                State::Done => return Ok(Decoded::End),
                State::Length(left) | State::ChunkData(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = (buf.len() as u64).min(left) as usize;
                    let data = buf.split_to(n).freeze();
                    self.state = match self.state {
                        State::Length(_) if left == n as u64 => State::Done,
                        State::Length(_) => State::Length(left - n as u64),
                        _ if left == n as u64 => State::ChunkEnd,
                        _ => State::ChunkData(left - n as u64),
                    };
                    return Ok(Decoded::Data(data));
                }
                State::ChunkSize => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        buf.advance(used);
                        self.state = if size == 0 {
                            State::Trailers
                        } else {
                            State::ChunkData(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if buf.len() > MAX_FRAMING_LINE => {
                        return Err(BodyError::Malformed("chunk-size line too long"))
                    }
                    Ok(httparse::Status::Partial) => return Ok(Decoded::NeedMore),
                    Err(_) => return Err(BodyError::Malformed("invalid chunk size")),
                },
                State::ChunkEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(BodyError::Malformed("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    self.state = State::ChunkSize;
                }
                State::Trailers => {
                    // Trailer fields are skipped, up to the empty line that ends the body.
                    match memchr::memmem::find(buf, b"\r\n") {
                        Some(0) => {
                            buf.advance(2);
                            self.state = State::Done;
                        }
                        Some(at) if at <= MAX_FRAMING_LINE => buf.advance(at + 2),
                        Some(_) => return Err(BodyError::Malformed("trailer field too long")),
                        None if buf.len() > MAX_FRAMING_LINE => {
                            return Err(BodyError::Malformed("trailer field too long"))
                        }
                        None => return Ok(Decoded::NeedMore),
                    }
                }
            }
        }
    }
}

/// A request's body on its connection: reads from `io`, with the bytes already received in `buf`.
///
/// A client that sent `Expect: 100-continue` (curl does, for bodies over 1 KiB) waits for a `100 Continue`
/// before it sends the body: it is sent when the handler first reads, so a request refused before (no
/// rights, a declared length past the limit) is answered without the body ever being sent.
pub struct Body<'a, R> {
    io: &'a mut R,
    buf: &'a mut BytesMut,
    decoder: Decoder,
    framing: Framing,
    expects_continue: bool,
    /// A body without length or chunks that lasts until the connection closes (a pushed stream's).
    until_close: bool,
}

impl<'a, R: AsyncRead + AsyncWrite + Unpin> Body<'a, R> {
    pub fn new(io: &'a mut R, buf: &'a mut BytesMut, framing: Framing) -> Body<'a, R> {
        Body {
            io,
            buf,
            decoder: Decoder::new(framing),
            framing,
            expects_continue: false,
            until_close: false,
        }
    }

    /// The body of a request that declares no length and is not chunked, read until the client closes
    /// the connection (as HTTP/1.0 bodies and `ffmpeg -chunked_post 0` are). Only for a handler that
    /// takes the connection over: the connection carries nothing after it.
    pub fn until_close(mut self) -> Self {
        if self.framing == Framing::None {
            self.until_close = true;
        }
        self
    }

    /// The body of `request` on its connection.
    pub fn of(
        io: &'a mut R,
        buf: &'a mut BytesMut,
        request: &super::request::Request,
    ) -> Body<'a, R> {
        let mut body = Body::new(io, buf, request.framing);
        body.expects_continue = request.framing != Framing::None
            && request
                .header("expect")
                .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"));
        body
    }

    /// Whether the request has a body at all.
    pub fn is_empty(&self) -> bool {
        self.framing == Framing::None
    }

    /// Whether the whole body has been read (the connection may carry another request).
    pub fn finished(&self) -> bool {
        self.decoder.is_done()
    }

    /// The next piece of the body as it arrives (None at its end), each read by `deadline`.
    pub async fn next_piece(&mut self, deadline: Instant) -> Result<Option<Bytes>, BodyError> {
        if self.until_close {
            if !self.buf.is_empty() {
                return Ok(Some(self.buf.split().freeze()));
            }
            self.buf.reserve(16 * 1024);
            return match tokio::time::timeout_at(deadline, self.io.read_buf(self.buf)).await {
                Err(_) => Err(BodyError::Timeout),
                Ok(Ok(0)) | Ok(Err(_)) => Ok(None),
                Ok(Ok(_)) => Ok(Some(self.buf.split().freeze())),
            };
        }
        loop {
            match self.decoder.decode(self.buf)? {
                Decoded::Data(d) => return Ok(Some(d)),
                Decoded::End => return Ok(None),
                Decoded::NeedMore => {}
            }
            if std::mem::take(&mut self.expects_continue) {
                let interim = self.io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
                match tokio::time::timeout_at(deadline, interim).await {
                    Err(_) => return Err(BodyError::Timeout),
                    Ok(Err(_)) => return Err(BodyError::Closed),
                    Ok(Ok(())) => {}
                }
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            match tokio::time::timeout_at(deadline, self.io.read_buf(self.buf)).await {
                Err(_) => return Err(BodyError::Timeout),
                Ok(Ok(0)) | Ok(Err(_)) => return Err(BodyError::Closed),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// The whole body, at most `limit` bytes, by `deadline`. A declared length past `limit` is refused
    /// before anything is read.
    pub async fn read_to_end(
        &mut self,
        limit: usize,
        deadline: Instant,
    ) -> Result<Bytes, BodyError> {
        if let Framing::Length(n) = self.framing {
            if n > limit as u64 {
                return Err(BodyError::TooLarge { limit });
            }
        }
        let mut all = BytesMut::new();
        while let Some(piece) = self.next_piece(deadline).await? {
            if all.len() + piece.len() > limit {
                return Err(BodyError::TooLarge { limit });
            }
            all.extend_from_slice(&piece);
        }
        Ok(all.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn decode_all(
        framing: Framing,
        input: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, Vec<u8>), BodyError> {
        let mut d = Decoder::new(framing);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut fed = 0;
        loop {
            match d.decode(&mut buf)? {
                Decoded::Data(b) => out.extend_from_slice(&b),
                Decoded::End => return Ok((out, buf.to_vec())),
                Decoded::NeedMore if fed >= input.len() => return Err(BodyError::Closed),
                Decoded::NeedMore => {
                    let n = step.min(input.len() - fed);
                    buf.extend_from_slice(&input[fed..fed + n]);
                    fed += n;
                }
            }
        }
    }

    #[test]
    fn lengths_and_chunks_decode_at_any_split_and_leave_what_follows() {
        let chunked = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\nGET /next";
        for step in [1, 2, 3, 7, 1000] {
            let (body, rest) = decode_all(Framing::Chunked, chunked, step).unwrap();
            assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.", "step {step}");
            // (with one byte at a time, what follows arrives only as far as it was fed)
            assert!(b"GET /next".starts_with(&rest), "step {step}: {rest:?}");
            let (body, rest) = decode_all(Framing::Length(5), b"hello GET", step).unwrap();
            assert_eq!(body, b"hello");
            assert!(b" GET".starts_with(&rest));
        }
        assert_eq!(decode_all(Framing::None, b"", 1).unwrap().0, b"");
    }

    #[test]
    fn broken_framing_is_refused() {
        for bad in [
            &b"zz\r\nab\r\n0\r\n\r\n"[..],
            b"2\r\nabX\r\n0\r\n\r\n",
            b"ffffffffffffffffffff\r\n",
        ] {
            assert!(
                matches!(
                    decode_all(Framing::Chunked, bad, 3),
                    Err(BodyError::Malformed(_))
                ),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let endless_size_line = vec![b'1'; 2000];
        assert!(matches!(
            decode_all(Framing::Chunked, &endless_size_line, 100),
            Err(BodyError::Malformed(_))
        ));
        let mut endless_trailer = b"0\r\n".to_vec();
        endless_trailer.extend(vec![b'a'; 2000]);
        assert!(matches!(
            decode_all(Framing::Chunked, &endless_trailer, 100),
            Err(BodyError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn read_to_end_keeps_its_limit() {
        let deadline = Instant::now() + Duration::from_secs(5);
        // A declared length past the limit is refused before reading.
        let (_client, mut io) = tokio::io::duplex(1 << 16);
        let mut buf = BytesMut::new();
        let mut body = Body::new(&mut io, &mut buf, Framing::Length(10_000_000));
        assert_eq!(
            body.read_to_end(4096, deadline).await,
            Err(BodyError::TooLarge { limit: 4096 })
        );
        // A chunked body is cut where it passes the limit.
        let big: Vec<u8> = (0..100)
            .flat_map(|_| b"40\r\n".iter().copied().chain([b'x'; 64]).chain(*b"\r\n"))
            .collect();
        let (mut client, mut io) = tokio::io::duplex(1 << 16);
        client.write_all(&big).await.unwrap();
        let mut buf = BytesMut::new();
        let mut body = Body::new(&mut io, &mut buf, Framing::Chunked);
        assert_eq!(
            body.read_to_end(1000, deadline).await,
            Err(BodyError::TooLarge { limit: 1000 })
        );
        // A body in time and in bounds, partly already buffered.
        let (mut client, mut io) = tokio::io::duplex(1 << 16);
        client.write_all(b"lo world").await.unwrap();
        let mut buf = BytesMut::from(&b"hel"[..]);
        let mut body = Body::new(&mut io, &mut buf, Framing::Length(11));
        assert_eq!(
            &body.read_to_end(100, deadline).await.unwrap()[..],
            b"hello world"
        );
        assert!(body.finished());
    }

    #[tokio::test]
    async fn a_close_delimited_body_lasts_until_the_close() {
        let deadline = Instant::now() + Duration::from_secs(5);
        let (mut client, mut io) = tokio::io::duplex(1 << 16);
        client.write_all(b"lo world").await.unwrap();
        drop(client);
        let mut buf = BytesMut::from(&b"hel"[..]);
        let mut body = Body::new(&mut io, &mut buf, Framing::None).until_close();
        let mut all = Vec::new();
        while let Some(piece) = body.next_piece(deadline).await.unwrap() {
            all.extend_from_slice(&piece);
        }
        assert_eq!(all, b"hello world");
    }

    #[tokio::test]
    async fn continue_is_sent_when_the_body_is_first_read() {
        use tokio::io::AsyncReadExt;
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let mut buf = BytesMut::new();
        let limits = crate::http::request::Limits::default();
        let mut head = BytesMut::from(
            &b"PUT /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"[..],
        );
        let request = crate::http::request::parse(&mut head, &limits)
            .unwrap()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let reader = async {
            let mut body = Body::of(&mut server, &mut buf, &request);
            body.read_to_end(10, deadline).await
        };
        let writer = async {
            let mut interim = [0u8; 25];
            client.read_exact(&mut interim).await.unwrap();
            assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
            client.write_all(b"{}").await.unwrap();
        };
        let (got, ()) = tokio::join!(reader, writer);
        assert_eq!(&got.unwrap()[..], b"{}");
    }

    #[tokio::test]
    async fn a_trickled_body_times_out_and_a_cut_one_is_closed() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"hel").await.unwrap();
        let mut buf = BytesMut::new();
        let mut body = Body::new(&mut server, &mut buf, Framing::Length(11));
        let soon = Instant::now() + Duration::from_millis(100);
        assert_eq!(body.read_to_end(100, soon).await, Err(BodyError::Timeout));
        drop(client);
        let mut buf = BytesMut::new();
        let mut body = Body::new(&mut server, &mut buf, Framing::Length(11));
        let later = Instant::now() + Duration::from_secs(5);
        assert_eq!(body.read_to_end(100, later).await, Err(BodyError::Closed));
    }
}

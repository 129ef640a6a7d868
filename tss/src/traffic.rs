//! What the mesh puts on the wire: the request-response codec (CBOR) wrapped to count the bytes
//! of every message it writes and reads, for `tss_mesh_bytes_total{direction}` and for the DKG
//! benchmark's bytes per participant. Counted are the messages' encodings; Noise adds 16 bytes per
//! frame of up to 64 KiB and Yamux 12, and each request opens a substream (a protocol
//! negotiation of a few dozen bytes).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::{AsyncRead, AsyncWrite};
use libp2p::StreamProtocol;
use libp2p::request_response::{self, cbor};

use crate::messages::{Request, Response};

/// Bytes of messages this node's mesh wrote and read, since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub sent: u64,
    pub received: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Traffic {
        Traffic { sent: self.sent.load(Ordering::Relaxed), received: self.received.load(Ordering::Relaxed) }
    }

    fn count_sent(&self, bytes: u64) {
        self.sent.fetch_add(bytes, Ordering::Relaxed);
        metrics::counter!("tss_mesh_bytes_total", "direction" => "sent").increment(bytes);
    }

    fn count_received(&self, bytes: u64) {
        self.received.fetch_add(bytes, Ordering::Relaxed);
        metrics::counter!("tss_mesh_bytes_total", "direction" => "received").increment(bytes);
    }
}

/// libp2p's CBOR codec, counting.
#[derive(Clone)]
pub(crate) struct CountingCodec {
    inner: cbor::codec::Codec<Request, Response>,
    counters: Arc<Counters>,
}

impl CountingCodec {
    pub(crate) fn new(inner: cbor::codec::Codec<Request, Response>, counters: Arc<Counters>) -> Self {
        CountingCodec { inner, counters }
    }
}

#[async_trait::async_trait]
impl request_response::Codec for CountingCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, protocol: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut counted = Counted { io, bytes: 0 };
        let request = self.inner.read_request(protocol, &mut counted).await;
        self.counters.count_received(counted.bytes);
        request
    }

    async fn read_response<T>(&mut self, protocol: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut counted = Counted { io, bytes: 0 };
        let response = self.inner.read_response(protocol, &mut counted).await;
        self.counters.count_received(counted.bytes);
        response
    }

    async fn write_request<T>(&mut self, protocol: &StreamProtocol, io: &mut T, request: Request) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let mut counted = Counted { io, bytes: 0 };
        let written = self.inner.write_request(protocol, &mut counted, request).await;
        self.counters.count_sent(counted.bytes);
        written
    }

    async fn write_response<T>(&mut self, protocol: &StreamProtocol, io: &mut T, response: Response) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let mut counted = Counted { io, bytes: 0 };
        let written = self.inner.write_response(protocol, &mut counted, response).await;
        self.counters.count_sent(counted.bytes);
        written
    }
}

/// A stream that counts the bytes through it.
struct Counted<'a, T> {
    io: &'a mut T,
    bytes: u64,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<'_, T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut *this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            this.bytes += *n as u64;
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<'_, T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut *this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            this.bytes += *n as u64;
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_close(cx)
    }
}

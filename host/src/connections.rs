//! A cap on open client connections. Each HTTP/2 connection may have its
//! flow-control window (8 MiB) of request bytes in flight that the server
//! has not read yet, outside the upload budget; so the cap bounds that
//! memory. At the cap the listener stops accepting: new connections wait
//! in the kernel's backlog, they are not refused.
//!
//! So that sockets which never speak cannot hold the cap, a connection
//! that sends nothing within [`FIRST_BYTES`] of being accepted is closed;
//! one that goes quiet later is closed by the server's HTTP/2 keepalive
//! (a client that does not answer its pings).

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Duration, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How long an accepted connection has to send its first bytes.
pub const FIRST_BYTES: Duration = Duration::from_secs(10);

/// An accepted connection holding one of the cap's permits until it closes.
pub struct Counted {
    io: TcpStream,
    _permit: OwnedSemaphorePermit,
    /// Running until the first bytes arrive.
    silent: Option<Pin<Box<Sleep>>>,
}

/// Accepted connections, at most `max` open at once.
pub fn limit<S>(incoming: S, max: usize) -> impl Stream<Item = io::Result<Counted>> + Send + 'static
where
    S: Stream<Item = io::Result<TcpStream>> + Send + Unpin + 'static,
{
    let permits = Arc::new(Semaphore::new(max));
    futures::stream::unfold((incoming, permits), |(mut incoming, permits)| async move {
        // A permit first: at the cap, nothing more is accepted.
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        let next = incoming.next().await?;
        let counted = |io| Counted { io, _permit: permit, silent: Some(Box::pin(tokio::time::sleep(FIRST_BYTES))) };
        Some((next.map(counted), (incoming, permits)))
    })
}

impl Connected for Counted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        match &r {
            Poll::Ready(Ok(())) if buf.filled().len() > before => self.silent = None,
            Poll::Pending => {
                if let Some(s) = &mut self.silent
                    && s.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client sent nothing after connecting")));
                }
            }
            _ => {}
        }
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// An HTTP listener (axum) with the same cap and first-bytes rule: the
/// registry's and the metrics listener's slow or silent clients cannot
/// take the process's files.
pub struct Capped {
    inner: tokio::net::TcpListener,
    permits: Arc<Semaphore>,
}

impl Capped {
    pub fn new(inner: tokio::net::TcpListener, max: usize) -> Self {
        Self { inner, permits: Arc::new(Semaphore::new(max)) }
    }
}

impl axum::serve::Listener for Capped {
    type Io = Counted;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = self.permits.clone().acquire_owned().await.expect("never closed");
        loop {
            match self.inner.accept().await {
                Ok((io, addr)) => {
                    let _ = io.set_nodelay(true);
                    return (Counted { io, _permit: permit, silent: Some(Box::pin(tokio::time::sleep(FIRST_BYTES))) }, addr);
                }
                // Out of files, or a connection reset before it was taken:
                // wait a little rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

//! A cap on open client connections. Each HTTP/2 connection may have its
//! flow-control window (8 MiB) of request bytes in flight that the server
//! has not read yet, outside the upload budget; so the cap bounds that
//! memory. At the cap the listener stops accepting: new connections wait
//! in the kernel's backlog, they are not refused.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// An accepted connection holding one of the cap's permits until it closes.
pub struct Counted {
    io: TcpStream,
    _permit: OwnedSemaphorePermit,
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
        Some((next.map(|io| Counted { io, _permit: permit }), (incoming, permits)))
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
        Pin::new(&mut self.io).poll_read(cx, buf)
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

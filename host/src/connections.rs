//! The listeners' accept loop: a cap on open connections, a deadline for
//! a client's first bytes, and the TLS handshake when `[tls]` is on.
//!
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
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Duration, Sleep};
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use crate::cluster::network::ConnInfo;
use crate::tls::{Protocol, Tls};

/// How long an accepted connection has to send its first bytes.
pub const FIRST_BYTES: Duration = Duration::from_secs(10);

/// Accepted connections, handed over once their TLS handshake (if any) is
/// done; handshakes run concurrently, so a slow client holds up no other.
/// As a `Stream` it feeds tonic, as an axum `Listener` the HTTP servers.
pub struct Accepted {
    rx: mpsc::Receiver<(Conn, SocketAddr)>,
    addr: SocketAddr,
}

impl Accepted {
    /// Accepts on `listener` until the `Accepted` is dropped, at most `max`
    /// connections open at once. At the cap nothing more is accepted: new
    /// connections wait in the kernel's backlog, they are not refused.
    pub fn spawn(listener: TcpListener, max: usize, tls: Option<(Arc<Tls>, Protocol)>) -> io::Result<Accepted> {
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(32);
        let permits = Arc::new(Semaphore::new(max));
        tokio::spawn(async move {
            loop {
                let permit = tokio::select! {
                    p = permits.clone().acquire_owned() => p.expect("never closed"),
                    () = tx.closed() => return,
                };
                let (io, addr) = tokio::select! {
                    r = listener.accept() => match r {
                        Ok(a) => a,
                        // Out of files, or a connection reset before it was
                        // taken: wait a little rather than spin.
                        Err(e) => {
                            tracing::warn!(error = %e, "accepting a connection failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    () = tx.closed() => return,
                };
                let _ = io.set_nodelay(true);
                let counted = Counted { io, _permit: permit, silent: Some(Box::pin(tokio::time::sleep(FIRST_BYTES))) };
                match &tls {
                    None => {
                        if tx.send((Conn::Plain(counted), addr)).await.is_err() {
                            return;
                        }
                    }
                    Some((tls, protocol)) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config(*protocol));
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            match tokio::time::timeout(FIRST_BYTES, acceptor.accept(counted)).await {
                                Ok(Ok(mut s)) => {
                                    // The handshake is not a request: what comes after it
                                    // must come in time too.
                                    s.get_mut().0.expect_bytes();
                                    let _ = tx.send((Conn::Tls(Box::new(s)), addr)).await;
                                }
                                // Scanners and wrong clients: counted, logged for debugging only.
                                Ok(Err(e)) => {
                                    metrics::counter!("strata_tls_handshake_failures_total").increment(1);
                                    tracing::debug!(client = %addr, error = %e, "TLS handshake failed");
                                }
                                Err(_) => {
                                    metrics::counter!("strata_tls_handshake_failures_total").increment(1);
                                    tracing::debug!(client = %addr, "TLS handshake not done in time");
                                }
                            }
                        });
                    }
                }
            }
        });
        Ok(Accepted { rx, addr })
    }
}

impl Stream for Accepted {
    type Item = io::Result<Conn>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|c| c.map(|(c, _)| Ok(c)))
    }
}

impl axum::serve::Listener for Accepted {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept loop only ends when this is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// A client connection, in plaintext or TLS.
pub enum Conn {
    Plain(Counted),
    Tls(Box<TlsStream<Counted>>),
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        match self {
            Conn::Plain(c) => ConnInfo { remote: c.io.peer_addr().ok(), client_cert: false },
            Conn::Tls(s) => {
                let (c, session) = s.get_ref();
                // Only certificates the handshake verified get this far.
                ConnInfo { remote: c.io.peer_addr().ok(), client_cert: session.peer_certificates().is_some_and(|c| !c.is_empty()) }
            }
        }
    }
}

macro_rules! either {
    ($self:ident, $c:ident => $e:expr) => {
        match $self.get_mut() {
            Conn::Plain($c) => {
                let $c = Pin::new($c);
                $e
            }
            Conn::Tls(s) => {
                let $c = Pin::new(s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        either!(self, c => c.poll_read(cx, buf))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        either!(self, c => c.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self, c => c.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self, c => c.poll_shutdown(cx))
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        either!(self, c => c.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(c) => c.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// An accepted connection holding one of the cap's permits until it closes.
pub struct Counted {
    io: TcpStream,
    _permit: OwnedSemaphorePermit,
    /// Running until the first bytes arrive.
    silent: Option<Pin<Box<Sleep>>>,
}

impl Counted {
    /// Starts the first-bytes clock again: the client must send within
    /// [`FIRST_BYTES`] from now.
    fn expect_bytes(&mut self) {
        self.silent = Some(Box::pin(tokio::time::sleep(FIRST_BYTES)));
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

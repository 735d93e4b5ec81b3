//! The end of a graceful stop: calls still running when `shutdown_grace`
//! runs out are answered `UNAVAILABLE` ("the server is shutting down"),
//! not cut off with a broken connection, so a client knows to retry
//! elsewhere. A call that has not answered yet gets the status as its
//! answer (its handler is dropped, as a cancelled call's is: nothing half
//! written becomes visible); a stream already answering ends with it in
//! its trailers, between two messages.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::sync::watch;
use tonic::body::Body as TonicBody;

/// What the client is told.
const MESSAGE: &str = "the server is shutting down: retry on another node or after it restarts";

/// Wraps the gRPC service; `cut` turns true when the grace runs out.
#[derive(Clone)]
pub struct CutLayer {
    pub cut: watch::Receiver<bool>,
}

impl<S> tower::Layer<S> for CutLayer {
    type Service = Cut<S>;

    fn layer(&self, inner: S) -> Cut<S> {
        Cut { inner, cut: self.cut.clone() }
    }
}

#[derive(Clone)]
pub struct Cut<S> {
    inner: S,
    cut: watch::Receiver<bool>,
}

/// Resolves when the grace runs out (never, if the server is gone first).
fn when_cut(mut cut: watch::Receiver<bool>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        if cut.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
    })
}

impl<S, B> tower::Service<http::Request<B>> for Cut<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<TonicBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<TonicBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let answer = self.inner.call(req);
        let cut = self.cut.clone();
        Box::pin(async move {
            tokio::select! {
                r = answer => r.map(|resp| resp.map(|body| TonicBody::new(CutBody { inner: body, cut: when_cut(cut), done: false }))),
                () = when_cut(cut.clone()) => Ok(tonic::Status::unavailable(MESSAGE).into_http()),
            }
        })
    }
}

/// A response body that ends with `UNAVAILABLE` trailers when cut.
struct CutBody {
    inner: TonicBody,
    cut: Pin<Box<dyn Future<Output = ()> + Send>>,
    done: bool,
}

impl Body for CutBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.cut.as_mut().poll(cx).is_ready() {
            self.done = true;
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("14"));
            trailers.insert("grpc-message", http::HeaderValue::from_static(MESSAGE));
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        // After the answer's own trailers nothing more may be sent.
        if let Poll::Ready(None) | Poll::Ready(Some(Err(_))) = &frame {
            self.done = true;
        }
        if let Poll::Ready(Some(Ok(f))) = &frame
            && f.is_trailers()
        {
            self.done = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::default()
    }
}

//! The S3 gateway: the S3 protocol (through `s3s`, which parses requests
//! and checks SigV4 signatures) over the object service, so S3 clients see
//! the same buckets and objects as the gRPC API, on one node or a cluster.

mod auth;
mod error;
mod gateway;
pub mod keys;
mod multipart;
mod verify;
mod versioning;

use std::sync::Arc;

use futures::{Stream, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use s3s::service::S3ServiceBuilder;
use strata_config::{AnonymousApi, Config};
use strata_service::ObjectService;
use tokio::io::{AsyncRead, AsyncWrite};

pub use gateway::Gateway;

/// The gateway as an HTTP service, its keys read from `[s3] keys_file`.
pub fn service(config: &Config, objects: Arc<dyn ObjectService>) -> Result<s3s::service::S3Service, String> {
    let keys = Arc::new(keys::Keys::open(config.s3_keys_file())?);
    let auth = Arc::new(auth::Auth { keys: keys.clone(), anonymous_read: config.s3.anonymous == AnonymousApi::Read });
    tokio::spawn(multipart::sweep(objects.clone()));
    let gateway = Gateway {
        service: objects,
        keys,
        region: config.s3.region.clone(),
        max_key_length: config.server.max_key_length,
        uploads_ready: Default::default(),
    };
    let mut b = S3ServiceBuilder::new(gateway);
    b.set_auth(SharedAuth(auth.clone()));
    b.set_access(auth::Access(auth));
    Ok(b.build())
}

struct SharedAuth(Arc<auth::Auth>);

#[async_trait::async_trait]
impl s3s::auth::S3Auth for SharedAuth {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<s3s::auth::SecretKey> {
        self.0.get_secret_key(access_key).await
    }
}

/// Serves HTTP/1.1 on each accepted connection until `shutdown`, then
/// lets the requests in flight finish.
pub async fn serve<S, IO>(mut incoming: S, service: s3s::service::S3Service, shutdown: impl Future<Output = ()>)
where
    S: Stream<Item = std::io::Result<IO>> + Unpin,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let io = tokio::select! {
            c = incoming.next() => match c {
                Some(Ok(io)) => io,
                Some(Err(_)) => continue,
                None => break,
            },
            () = &mut shutdown => break,
        };
        let conn = http.serve_connection(TokioIo::new(io), service.clone()).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    graceful.shutdown().await;
}

//! Strata's OCI distribution endpoint (Distribution Spec v1.1): container
//! images, artifacts and models pushed and pulled by standard clients,
//! stored through the object service, so on one node and a cluster alike.
//!
//! # Layout in the registry's bucket
//! ```text
//! <repo>/_blobs/<hex>       a blob of the repository (its bytes: Strata's blob of that digest)
//! <repo>/_manifests/<hex>   a manifest, byte-exact, its media type as content type
//! <repo>/_tags/<tag>        a tag: the manifest's bytes again (the same blob)
//! ```
//! A repository name's components start with a letter or digit, so `_`
//! keys never clash with a name. The OCI digest `sha256:<hex>` is Strata's
//! content address: one set of bytes is one blob however it arrived.
//!
//! # Modules
//! - [`names`]: names, tags, digests and routes.
//! - [`error`]: the spec's error codes, mapped in one place.
//! - `auth`: anonymous access and Basic users.
//! - `blobs`, `uploads`, `manifests`: the endpoints.

mod auth;
mod blobs;
pub mod error;
mod manifests;
pub mod models;
pub mod names;
pub mod store;
mod uploads;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use strata_config::RegistryConfig;
use strata_service::ObjectService;

pub use error::RegistryError;
use error::{Result, oci};
use names::Route;

/// The registry: its bucket, users and upload sessions.
pub struct Registry {
    service: Arc<dyn ObjectService>,
    bucket: String,
    /// Set once the bucket is known to exist (made at the first write, so a
    /// cluster node can start before the cluster has a leader).
    bucket_made: tokio::sync::OnceCell<()>,
    max_manifest: usize,
    auth: auth::Auth,
    uploads: uploads::Uploads,
    /// One manifest change at a time per repository: a delete that frees
    /// blobs must not run between a push's check of its blobs and its write.
    repos: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The scheme of absolute `Location` headers: `https` behind `[tls]`.
    scheme: &'static str,
}

impl Registry {
    /// Reads the users' passwords; the bucket is made at the first write.
    /// `uploads`: a directory for upload sessions in progress (emptied).
    /// Fails with a message for the server's start-up error.
    /// `https`: the listener serves TLS, so absolute locations say so.
    pub fn open(
        service: Arc<dyn ObjectService>,
        config: &RegistryConfig,
        uploads: PathBuf,
        https: bool,
    ) -> std::result::Result<Arc<Self>, String> {
        Ok(Arc::new(Self {
            service,
            bucket: config.bucket.clone(),
            bucket_made: tokio::sync::OnceCell::new(),
            max_manifest: config.max_manifest_size.0 as usize,
            auth: auth::Auth::load(config)?,
            uploads: uploads::Uploads::open(uploads)?,
            repos: Default::default(),
            scheme: if https { "https" } else { "http" },
        }))
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new().route("/v2", get(ping)).route("/v2/", get(ping)).route("/v2/{*rest}", any(dispatch)).with_state(self)
    }

    /// Holds repository `name` for a change of its manifests or blobs.
    pub(crate) async fn lock_repo(&self, name: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = self.repos.lock().expect("repos").entry(name.to_string()).or_default().clone();
        let guard = m.lock_owned().await;
        // Forget idle repositories so the map does not grow without bound.
        self.repos.lock().expect("repos").retain(|_, m| Arc::strong_count(m) > 1);
        guard
    }

    /// Makes the registry's bucket unless it exists.
    async fn ensure_bucket(&self) -> Result<()> {
        self.bucket_made
            .get_or_try_init(|| async {
                match self.service.create_bucket(&self.bucket, None).await {
                    Err(e) if e.kind() != strata_objects::Kind::Exists => Err(RegistryError::from(e)),
                    _ => Ok(()),
                }
            })
            .await?;
        Ok(())
    }

    fn key(name: &str, kind: &str, id: &str) -> String {
        format!("{name}/_{kind}/{id}")
    }
}

/// Serves `registry` on `listener` until `shutdown` resolves.
pub async fn serve<L>(listener: L, registry: Arc<Registry>, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, registry.router()).with_graceful_shutdown(shutdown).await
}

async fn ping(State(r): State<Arc<Registry>>, headers: HeaderMap) -> Response {
    // With users configured, a client without credentials is challenged
    // here even if anonymous pulls are allowed: clients send credentials
    // only after a challenge at /v2/, and a user may push where anonymous
    // clients may not. Clients with no credentials carry on anonymously.
    if r.auth.has_users() && r.auth.is_anonymous(&headers) {
        return with_api_version(error::RegistryError::Unauthorized("log in to push (anonymous clients may pull)".into()).into_response());
    }
    match r.auth.check(&headers, None, false) {
        Ok(()) => with_api_version(respond(StatusCode::OK, &[("Content-Type", "application/json".into())], Body::from("{}"))),
        Err(e) => with_api_version(e.into_response()),
    }
}

fn with_api_version(mut r: Response) -> Response {
    r.headers_mut().insert("Docker-Distribution-API-Version", HeaderValue::from_static("registry/2.0"));
    r
}

async fn dispatch(State(r): State<Arc<Registry>>, req: Request) -> Response {
    let rest = req.uri().path().strip_prefix("/v2/").unwrap_or_default().to_string();
    let answer = async {
        let route = names::route(&rest)?;
        let (name, write) = match &route {
            Route::Manifest { name, .. } | Route::Blob { name, .. } => (name.clone(), !matches!(*req.method(), Method::GET | Method::HEAD)),
            Route::Upload { name, .. } => (name.clone(), true),
            Route::Tags { name } | Route::Referrers { name, .. } => (name.clone(), false),
        };
        // A blob location signed for a user serves without credentials.
        let signed = match &route {
            Route::Blob { name, digest } if !write => {
                let q = req.uri().query();
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                r.auth.signed(name, digest, query_param(q, "expires").as_deref(), query_param(q, "signature").as_deref(), now)
            }
            _ => false,
        };
        if !signed {
            r.auth.check(req.headers(), Some(&name), write)?;
        }
        let base = base_url(r.scheme, req.headers());
        match route {
            Route::Manifest { name, reference } => match *req.method() {
                Method::GET | Method::HEAD => manifests::get(&r, &name, &reference, req.method() == Method::HEAD).await,
                Method::PUT => manifests::put(&r, &base, &name, &reference, req).await,
                Method::DELETE => manifests::delete(&r, &name, &reference).await,
                _ => Err(not_allowed()),
            },
            Route::Blob { name, digest } => match *req.method() {
                Method::GET | Method::HEAD => blobs::get(&r, &base, &name, &digest, req.headers(), req.method() == Method::HEAD).await,
                Method::DELETE => blobs::delete(&r, &name, &digest).await,
                _ => Err(not_allowed()),
            },
            Route::Upload { name, id: None } if req.method() == Method::POST => uploads::start(&r, &base, &name, req).await,
            Route::Upload { name, id: Some(id) } => match *req.method() {
                Method::PATCH => uploads::patch(&r, &base, &name, &id, req).await,
                Method::PUT => uploads::finish(&r, &base, &name, &id, req).await,
                Method::GET => uploads::status(&r, &base, &name, &id).await,
                Method::DELETE => uploads::cancel(&r, &name, &id).await,
                _ => Err(not_allowed()),
            },
            Route::Upload { .. } => Err(not_allowed()),
            Route::Tags { name } if req.method() == Method::GET => manifests::tags(&r, &name, req.uri().query()).await,
            Route::Referrers { name, digest } if req.method() == Method::GET => {
                manifests::referrers(&r, &name, &digest, req.uri().query()).await
            }
            Route::Tags { .. } | Route::Referrers { .. } => Err(not_allowed()),
        }
    }
    .await;
    with_api_version(answer.unwrap_or_else(IntoResponse::into_response))
}

fn not_allowed() -> error::RegistryError {
    oci(StatusCode::METHOD_NOT_ALLOWED, oci_spec::distribution::ErrorCode::Unsupported, "this method is not served at this path")
}

/// `http://<Host>` (or `https`): the base of absolute `Location` headers
/// (Ollama does not resolve relative ones).
fn base_url(scheme: &str, headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).filter(|h| !h.is_empty() && !h.contains(['/', ' ']));
    host.map_or_else(String::new, |h| format!("{scheme}://{h}"))
}

/// One query parameter, decoded.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// A response with headers.
fn respond(status: StatusCode, headers: &[(&'static str, String)], body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().insert(*k, v);
        }
    }
    r
}

impl Registry {
    /// Removes every version of `key`, so its bytes are freed once nothing
    /// else references them. False if it held no live version.
    async fn forget(&self, key: &str) -> Result<bool> {
        let versions = match self.service.versions(&self.bucket, key).await {
            Ok(v) => v.value,
            Err(e) if e.kind() == strata_objects::Kind::NotFound => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let live = versions.iter().any(|v| v.latest && !v.is_delete_marker());
        for v in versions {
            match self.service.delete(&self.bucket, key, Some(&v.version)).await {
                Ok(_) => {}
                Err(e) if e.kind() == strata_objects::Kind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(live)
    }
}

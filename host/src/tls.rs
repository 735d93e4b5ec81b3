//! `[tls]`: the certificate every listener serves, the cluster CA peers
//! are checked against, and their reload. rustls on aws-lc-rs, the one
//! provider tonic, object_store and the tokens share.
//!
//! Client certificates are optional at the handshake (clients of the API
//! authenticate with tokens) but one that is shown must chain to the
//! cluster CA; the peer services then refuse calls from connections that
//! showed none (`Network::check`). A reload swaps the configurations:
//! connections made after it use the new files, open ones keep theirs.

use std::path::Path;
use std::sync::{Arc, RwLock};

use anyhow::{Context, bail};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use sha2::Digest;
use strata_config::TlsConfig;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// Which listener a handshake is for: the protocols each offers differ.
#[derive(Debug, Clone, Copy)]
pub enum Protocol {
    /// The gRPC API and peer service: HTTP/2, client certificates checked.
    Grpc,
    /// The metrics and registry listeners: HTTP/1.1.
    Http,
}

pub struct Tls {
    files: TlsConfig,
    loaded: RwLock<Loaded>,
    /// The host peers dial this node by (a cluster node's advertised
    /// address): a certificate that does not name it is refused.
    peer_name: RwLock<Option<String>>,
}

#[derive(Clone)]
struct Loaded {
    grpc: Arc<ServerConfig>,
    http: Arc<ServerConfig>,
    /// How this node dials its peers, when there is a cluster CA.
    peer: Option<ClientTlsConfig>,
    /// SHA-256 of the leaf certificate, for logs and `strata reload`.
    fingerprint: String,
}

impl Tls {
    /// Reads the files `[tls]` names; the error says which one is wrong.
    pub fn load(files: &TlsConfig) -> anyhow::Result<Arc<Tls>> {
        let loaded = Loaded::read(files, None)?;
        tracing::info!(certificate = %loaded.fingerprint, mtls = loaded.peer.is_some(), "TLS is on");
        Ok(Arc::new(Tls { files: files.clone(), loaded: RwLock::new(loaded), peer_name: RwLock::new(None) }))
    }

    /// A cluster node: its certificate must name `advertise`'s host, now
    /// and at every reload, or peers could not verify it.
    pub fn expect_peer_name(&self, advertise: &str) -> anyhow::Result<()> {
        let host = host_of(advertise);
        Loaded::read(&self.files, Some(&host))?;
        *self.peer_name.write().expect("tls") = Some(host);
        Ok(())
    }

    /// Reads the files again. On any error nothing changes and the old
    /// certificates stay in use. Returns the new leaf's fingerprint.
    pub fn reload(&self) -> anyhow::Result<String> {
        let name = self.peer_name.read().expect("tls").clone();
        let fresh = Loaded::read(&self.files, name.as_deref())?;
        let fingerprint = fresh.fingerprint.clone();
        *self.loaded.write().expect("tls") = fresh;
        Ok(fingerprint)
    }

    pub fn server_config(&self, p: Protocol) -> Arc<ServerConfig> {
        let l = self.loaded.read().expect("tls");
        match p {
            Protocol::Grpc => l.grpc.clone(),
            Protocol::Http => l.http.clone(),
        }
    }

    pub fn peer_client(&self) -> Option<ClientTlsConfig> {
        self.loaded.read().expect("tls").peer.clone()
    }

    pub fn fingerprint(&self) -> String {
        self.loaded.read().expect("tls").fingerprint.clone()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl Loaded {
    /// Reads and checks the files: the leaf is valid now, goes with the
    /// key, chains to the CA (when there is one) as a client and server
    /// certificate, and names `peer_name` (when given). A certificate that
    /// would lock every client or peer out is refused here, not served.
    fn read(files: &TlsConfig, peer_name: Option<&str>) -> anyhow::Result<Loaded> {
        let chain = certificates(&files.cert_file, "tls.cert_file")?;
        let key = PrivateKeyDer::from_pem_file(&files.key_file)
            .map_err(|e| anyhow::anyhow!("tls.key_file: {}: no PEM private key could be read: {e}", files.key_file.display()))?;
        check_validity(&chain[0], &files.cert_file)?;
        let fingerprint = hex::encode(sha2::Sha256::digest(&chain[0]));
        let (verifier, peer) = match &files.ca_file {
            Some(ca_file) => {
                let cas = certificates(ca_file, "tls.ca_file")?;
                let mut roots = RootCertStore::empty();
                for ca in &cas {
                    roots.add(ca.clone()).with_context(|| format!("tls.ca_file: {}: not a usable CA certificate", ca_file.display()))?;
                }
                let roots = Arc::new(roots);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                    .allow_unauthenticated()
                    .build()
                    .context("tls.ca_file")?;
                let now = UnixTime::now();
                let refuse = |role: &str, e: rustls::Error| {
                    anyhow::anyhow!(
                        "tls: the certificate in {} does not verify against the CA in {} as a {role} ({e}); peers would refuse it",
                        files.cert_file.display(),
                        ca_file.display()
                    )
                };
                let server = WebPkiServerVerifier::builder_with_provider(roots, provider()).build().context("tls.ca_file")?;
                let as_server = |host: &str| -> anyhow::Result<()> {
                    let name =
                        ServerName::try_from(host.to_string()).map_err(|_| anyhow::anyhow!("{host:?} is not a host name or IP address"))?;
                    server
                        .verify_server_cert(&chain[0], &chain[1..], &name, &[], now)
                        .map_err(|e| refuse(&format!("server for {host}"), e))?;
                    Ok(())
                };
                match peer_name {
                    // A cluster node: peers dial it by its advertised host,
                    // and it shows the same certificate when it dials them.
                    Some(host) => {
                        verifier.verify_client_cert(&chain[0], &chain[1..], now).map_err(|e| refuse("client", e))?;
                        as_server(host)?;
                    }
                    // Clients may dial any name the certificate holds.
                    None => as_server(&first_name(&chain[0])?)?,
                }
                let ca_pem = std::fs::read(ca_file).with_context(|| format!("tls.ca_file: cannot read {}", ca_file.display()))?;
                let cert_pem =
                    std::fs::read(&files.cert_file).with_context(|| format!("tls.cert_file: cannot read {}", files.cert_file.display()))?;
                let key_pem =
                    std::fs::read(&files.key_file).with_context(|| format!("tls.key_file: cannot read {}", files.key_file.display()))?;
                let peer = ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(ca_pem))
                    .identity(Identity::from_pem(cert_pem, key_pem))
                    .assume_http2(true);
                (Some(verifier), Some(peer))
            }
            None => {
                check_server_usage(&chain[0], &files.cert_file)?;
                (None, None)
            }
        };
        let server = |alpn: &[u8], client_auth: bool| -> anyhow::Result<Arc<ServerConfig>> {
            let builder = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
            let builder = match (&verifier, client_auth) {
                (Some(v), true) => builder.with_client_cert_verifier(v.clone()),
                _ => builder.with_no_client_auth(),
            };
            let mut config = builder.with_single_cert(chain.clone(), key.clone_key()).map_err(|e| {
                anyhow::anyhow!(
                    "tls: the key in {} does not go with the certificate in {}: {e}",
                    files.key_file.display(),
                    files.cert_file.display()
                )
            })?;
            config.alpn_protocols = vec![alpn.to_vec()];
            Ok(Arc::new(config))
        };
        Ok(Loaded { grpc: server(b"h2", true)?, http: server(b"http/1.1", false)?, peer, fingerprint })
    }
}

/// Refuses a certificate outside its validity period: clients would.
fn check_validity(leaf: &CertificateDer<'_>, path: &Path) -> anyhow::Result<()> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| anyhow::anyhow!("tls.cert_file: {}: not an X.509 certificate: {e}", path.display()))?;
    let v = cert.validity();
    let now = x509_parser::time::ASN1Time::now();
    if now < v.not_before {
        bail!("tls.cert_file: {}: the certificate is not valid before {}", path.display(), v.not_before);
    }
    if now > v.not_after {
        bail!("tls.cert_file: {}: the certificate expired on {}", path.display(), v.not_after);
    }
    Ok(())
}

/// The first DNS name or IP address the certificate names.
fn first_name(leaf: &CertificateDer<'_>) -> anyhow::Result<String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| anyhow::anyhow!("tls.cert_file: not an X.509 certificate: {e}"))?;
    let san = cert.subject_alternative_name().ok().flatten();
    for name in san.map(|s| s.value.general_names.iter().collect::<Vec<_>>()).unwrap_or_default() {
        match name {
            GeneralName::DNSName(d) => return Ok(d.to_string()),
            GeneralName::IPAddress(ip) if ip.len() == 4 => return Ok(std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string()),
            GeneralName::IPAddress(ip) if ip.len() == 16 => {
                let b: [u8; 16] = (*ip).try_into().expect("16 bytes");
                return Ok(std::net::Ipv6Addr::from(b).to_string());
            }
            _ => {}
        }
    }
    bail!("tls.cert_file: the certificate names no host or IP address (subjectAltName): clients cannot verify it")
}

/// Without a CA to verify against: at least a certificate meant for servers.
fn check_server_usage(leaf: &CertificateDer<'_>, path: &Path) -> anyhow::Result<()> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| anyhow::anyhow!("tls.cert_file: {}: not an X.509 certificate: {e}", path.display()))?;
    if let Ok(Some(eku)) = cert.extended_key_usage()
        && !eku.value.server_auth
        && !eku.value.any
    {
        bail!("tls.cert_file: {}: the certificate is not for servers (its extended key usage lacks serverAuth)", path.display());
    }
    Ok(())
}

/// The host of `host:port` (`[v6]:port` too).
fn host_of(addr: &str) -> String {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']').to_string()
}

/// Every certificate in a PEM file, at least one.
fn certificates(path: &Path, key: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{key}: {}: {e}", path.display()))?;
    if certs.is_empty() {
        bail!("{key}: {} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

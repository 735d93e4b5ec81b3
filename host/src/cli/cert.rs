//! `strata cert`: a cluster CA and node certificates (rcgen), for people
//! without a PKI of their own. Offline: it only writes files.
//!
//! A node certificate serves both ends of mTLS (server and client auth),
//! names the node's hosts and IP addresses, and is signed by the CA. Keys
//! are written readable by their owner only, and nothing is overwritten.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject as _;

use super::CertCmd;

/// The CA's subject.
const CA_NAME: &str = "Strata cluster CA";

pub fn run(cmd: CertCmd) -> anyhow::Result<()> {
    match cmd {
        CertCmd::Ca { out, days } => {
            let (crt, key) = write_ca(&out, days)?;
            println!("CA certificate {} and key {} (keep the key private: it admits nodes)", crt.display(), key.display());
        }
        CertCmd::Node { ca, name, hosts, out, days } => {
            let (crt, key) = write_node(&ca, &name, &hosts, &out, days)?;
            println!("node certificate {} and key {} for {}", crt.display(), key.display(), hosts.join(", "));
        }
    }
    Ok(())
}

/// `out/ca.crt` and `out/ca.key`, a new CA.
pub fn write_ca(out: &Path, days: u32) -> anyhow::Result<(PathBuf, PathBuf)> {
    let key = KeyPair::generate()?;
    let cert = ca_params(days)?.self_signed(&key)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot make {}", out.display()))?;
    let (crt, key_file) = (out.join("ca.crt"), out.join("ca.key"));
    refuse_existing(&[&crt, &key_file])?;
    write_new(&key_file, key.serialize_pem().as_bytes(), true)?;
    write_new(&crt, cert.pem().as_bytes(), false)?;
    Ok((crt, key_file))
}

/// `out/NAME.crt` and `out/NAME.key`, signed by the CA in `ca`.
pub fn write_node(ca: &Path, name: &str, hosts: &[String], out: &Path, days: u32) -> anyhow::Result<(PathBuf, PathBuf)> {
    if name.is_empty() || name.starts_with('.') || !name.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c)) {
        bail!("--name {name:?}: use letters, digits, '.', '_' and '-', not starting with '.' (it names the files)");
    }
    if hosts.is_empty() {
        bail!("give at least one --host: the names and IP addresses peers and clients dial this node by");
    }
    for h in hosts {
        if ServerName::try_from(h.as_str()).is_err() {
            bail!("--host {h:?} is neither a DNS name nor an IP address");
        }
    }
    let ca_key = std::fs::read_to_string(ca.join("ca.key")).with_context(|| format!("cannot read {}", ca.join("ca.key").display()))?;
    let ca_key = KeyPair::from_pem(&ca_key).context("ca.key is not a PEM private key")?;
    let ca_pem = std::fs::read_to_string(ca.join("ca.crt")).with_context(|| format!("cannot read {}", ca.join("ca.crt").display()))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).context("ca.crt is not a PEM certificate")?;
    let mut params = CertificateParams::new(hosts.to_vec()).context("--host")?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days);
    // Not past the CA's own end: it would stop verifying then anyway.
    let ca_der = rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).context("ca.crt")?;
    if let Ok((_, ca_cert)) = x509_parser::parse_x509_certificate(&ca_der) {
        let ca_end = ca_cert.validity().not_after.to_datetime();
        if params.not_after > ca_end {
            eprintln!("note: the CA expires on {ca_end}; the certificate ends then too");
            params.not_after = ca_end;
        }
    }
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    // Signed by ca.key, checked against ca.crt: a key that is not the
    // certificate's is found here, not by the first peer.
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.context("ca.crt")?).context("ca.crt")?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build()?;
    rustls::server::danger::ClientCertVerifier::verify_client_cert(&*verifier, cert.der(), &[], rustls::pki_types::UnixTime::now())
        .map_err(|e| anyhow::anyhow!("{}/ca.key does not go with {}/ca.crt: {e}", ca.display(), ca.display()))?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot make {}", out.display()))?;
    let (crt, key_file) = (out.join(format!("{name}.crt")), out.join(format!("{name}.key")));
    refuse_existing(&[&crt, &key_file])?;
    write_new(&key_file, key.serialize_pem().as_bytes(), true)?;
    write_new(&crt, cert.pem().as_bytes(), false)?;
    Ok((crt, key_file))
}

fn ca_params(days: u32) -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, CA_NAME);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut p, days);
    Ok(p)
}

/// From an hour ago (clocks differ a little) for `days`.
fn validity(p: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(days.into());
}

/// Writes a file that must not exist yet; a key readable by its owner only.
fn write_new(path: &Path, bytes: &[u8], private: bool) -> anyhow::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => anyhow::anyhow!("{} exists: move it away first (nothing is overwritten)", path.display()),
        _ => anyhow::anyhow!("cannot write {}: {e}", path.display()),
    })?;
    f.write_all(bytes).and_then(|()| f.sync_all()).with_context(|| format!("writing {}", path.display()))
}

fn refuse_existing(paths: &[&Path]) -> anyhow::Result<()> {
    for p in paths {
        if p.exists() {
            bail!("{} exists: move it away first (nothing is overwritten)", p.display());
        }
    }
    Ok(())
}

//! Repository names, tags and digests as the distribution spec defines
//! them, and the routes of `/v2/<name>/...` (a name holds slashes, so the
//! path is read from its end).

use crate::error::{Result, digest_invalid, name_invalid};

/// One request's target.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Manifest {
        name: String,
        reference: String,
    },
    Blob {
        name: String,
        digest: String,
    },
    /// `uploads/` (start one) or `uploads/<id>`.
    Upload {
        name: String,
        id: Option<String>,
    },
    Tags {
        name: String,
    },
    Referrers {
        name: String,
        digest: String,
    },
}

/// Reads `rest`, the path after `/v2/`.
pub fn route(rest: &str) -> Result<Route> {
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Ok(Route::Tags { name: repository(name)? });
    }
    // The last marker wins: a name may itself hold a `blobs` component.
    let marks = ["/blobs/uploads/", "/manifests/", "/blobs/", "/referrers/"];
    let found = marks.iter().filter_map(|m| rest.rfind(m).map(|at| (at, *m))).max_by_key(|(at, m)| (*at, m.len()));
    let Some((at, mark)) = found else {
        return Err(name_invalid(format!("/v2/{rest} is not a registry path")));
    };
    let (name, tail) = (repository(&rest[..at])?, &rest[at + mark.len()..]);
    match mark {
        "/blobs/uploads/" => Ok(Route::Upload { name, id: (!tail.is_empty()).then(|| tail.to_string()) }),
        "/manifests/" => Ok(Route::Manifest { name, reference: reference(tail)? }),
        "/blobs/" => Ok(Route::Blob { name, digest: tail.to_string() }),
        _ => Ok(Route::Referrers { name, digest: tail.to_string() }),
    }
}

/// A repository name: lowercase components `[a-z0-9]+` joined by `.`,
/// `_`, `__` or dashes, separated by `/`; at most 255 characters.
pub fn repository(name: &str) -> Result<String> {
    let bad = |why: &str| name_invalid(format!("repository name {name:?}: {why}"));
    if name.is_empty() || name.len() > 255 {
        return Err(bad("must be 1 to 255 characters"));
    }
    for part in name.split('/') {
        let b = part.as_bytes();
        let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
            return Err(bad("each component starts and ends with a lowercase letter or digit"));
        }
        let mut i = 0;
        while i < b.len() {
            if alnum(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !alnum(b[i]) {
                i += 1;
            }
            let sep = &part[start..i];
            let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
            if !ok {
                return Err(bad("components hold lowercase letters and digits separated by '.', '_', '__' or dashes"));
            }
        }
    }
    Ok(name.to_string())
}

/// A tag or a digest.
pub fn reference(r: &str) -> Result<String> {
    if r.contains(':') {
        digest(r)?;
        return Ok(r.to_string());
    }
    tag(r)?;
    Ok(r.to_string())
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn tag(t: &str) -> Result<()> {
    let b = t.as_bytes();
    let first = b.first().is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_');
    if !first || b.len() > 128 || !b.iter().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c)) {
        return Err(crate::error::oci(
            axum::http::StatusCode::BAD_REQUEST,
            oci_spec::distribution::ErrorCode::ManifestInvalid,
            format!("tag {t:?}: up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"),
        ));
    }
    Ok(())
}

/// A `sha256:<64 lowercase hex>` digest, as Strata's content address.
pub fn digest(d: &str) -> Result<strata_store::Digest> {
    let Some(hex) = d.strip_prefix("sha256:") else {
        return Err(digest_invalid(format!("digest {d:?}: only sha256:<hex> digests are taken")));
    };
    if hex.len() != 64 || !hex.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
        return Err(digest_invalid(format!("digest {d:?}: sha256 digests are 64 lowercase hex characters")));
    }
    hex.parse().map_err(|_| digest_invalid(format!("digest {d:?} is not valid")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_read_from_the_end() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            route("library/ubuntu/manifests/latest").unwrap(),
            Route::Manifest { name: "library/ubuntu".into(), reference: "latest".into() }
        );
        assert_eq!(route(&format!("a/blobs/b/blobs/{d}")).unwrap(), Route::Blob { name: "a/blobs/b".into(), digest: d.clone() });
        assert_eq!(route("x/blobs/uploads/").unwrap(), Route::Upload { name: "x".into(), id: None });
        assert_eq!(route("x/blobs/uploads/abc").unwrap(), Route::Upload { name: "x".into(), id: Some("abc".into()) });
        assert_eq!(route("m/manifests/n/tags/list").unwrap(), Route::Tags { name: "m/manifests/n".into() });
        assert!(route("../etc/manifests/x").is_err());
        assert!(route("a//b/manifests/x").is_err());
        assert!(route("UPPER/manifests/x").is_err());
        assert!(route("a/manifests/..").is_err());
        assert!(route("a/nothing").is_err());
    }

    #[test]
    fn names_follow_the_spec() {
        for ok in ["a", "library/ubuntu", "a.b_c__d--e/f-0", "registry.ollama.ai/library/llama3"] {
            repository(ok).unwrap();
        }
        for bad in ["", "-a", "a-", "a..b", "a___b", "a/", "/a", "A", "a b", "a/../b", &"a".repeat(256)] {
            assert!(repository(bad).is_err(), "{bad:?}");
        }
        digest(&format!("sha256:{}", "0".repeat(64))).unwrap();
        assert!(digest("sha512:00").is_err());
        assert!(digest(&format!("sha256:{}", "A".repeat(64))).is_err());
    }
}

//! The rules for names every front end and every peer checks.

/// Bucket names: 3 to 63 of `a-z 0-9 . -`, starting and ending with a letter or digit.
pub fn bucket_name(name: &str) -> Result<(), String> {
    let ok_len = (3..=63).contains(&name.len());
    let ok_chars = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ok_ends =
        name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric()) && name.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok_len && ok_chars && ok_ends {
        Ok(())
    } else {
        Err(format!(
            "invalid bucket name {name:?}: use 3 to 63 characters of a-z, 0-9, '.' and '-', \
             starting and ending with a letter or digit"
        ))
    }
}

/// Keys: 1 to `max` bytes of UTF-8, no NUL or other control characters,
/// no `.` or `..` path segment. Every front end checks keys with this.
pub fn key(key: &str, max: usize) -> Result<(), String> {
    if key.is_empty() {
        return Err("the key is empty: give the object a name".into());
    }
    if key.len() > max {
        return Err(format!("the key is {} bytes long; the limit is {max}", key.len()));
    }
    if let Some(c) = key.chars().find(|c| c.is_control()) {
        return Err(format!("the key contains the control character {c:?}; remove it"));
    }
    // Listings bound a prefix's keys by `prefix + U+10FFFF`.
    if key.contains('\u{10FFFF}') {
        return Err("the key contains U+10FFFF, which keys may not hold (it bounds prefix listings); remove it".into());
    }
    if key.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err(format!("the key {key:?} has a '.' or '..' path segment; remove it"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_key_error_names_what_to_remove() {
        assert!(super::key("a\u{7}b", 1024).unwrap_err().contains("control character"));
        let e = super::key("a\u{10FFFF}", 1024).unwrap_err();
        assert!(e.contains("U+10FFFF") && !e.contains("control"), "{e}");
        assert!(super::key("a/\u{10FFFD}/ü", 1024).is_ok());
    }
}

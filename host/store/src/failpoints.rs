//! The errors fault-injection points inject (`fail` crate; the server
//! turns points on from `STRATA_FAILPOINTS_FILE`).

/// The I/O error a point injects: `enospc` for a full disk, else EIO.
pub fn io_error(arg: Option<String>) -> std::io::Error {
    match arg.as_deref() {
        Some("enospc") => std::io::Error::from_raw_os_error(libc::ENOSPC),
        _ => std::io::Error::from_raw_os_error(libc::EIO),
    }
}

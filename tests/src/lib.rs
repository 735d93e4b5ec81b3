//! Helpers live in `all/common.rs`; this crate exists to hold the end-to-end tests.

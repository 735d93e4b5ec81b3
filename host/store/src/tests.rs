//! The blob store against every codec: plain, zstd, encrypted, both.

use super::format::CHUNK;
use super::*;

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn codecs() -> Vec<(&'static str, Codec)> {
    let key = Key::from_hex(KEY).unwrap();
    vec![
        ("plain", Codec { zstd_level: None, key: None }),
        ("zstd", Codec { zstd_level: Some(3), key: None }),
        ("encrypted", Codec { zstd_level: None, key: Some(key.clone()) }),
        ("zstd+encrypted", Codec { zstd_level: Some(3), key: Some(key) }),
    ]
}

fn data(n: usize) -> Vec<u8> {
    // Half random, half repetitive, so compression has work either way.
    (0..n).map(|i| if i % 2 == 0 { (i / 7) as u8 } else { rand::random() }).collect()
}

/// Small blobs come back inline; the tests keep them in a map, as the
/// metadata store would.
type Inline = std::cell::RefCell<std::collections::HashMap<Digest, Vec<u8>>>;

thread_local! {
    static INLINE: Inline = Default::default();
}

fn put(store: &LocalStore, bytes: &[u8]) -> Digest {
    let mut w = store.stage().unwrap();
    for part in bytes.chunks(100_000) {
        w.write(part).unwrap();
    }
    let staged = w.finish().unwrap();
    let d = staged.digest;
    assert_eq!(staged.inline.is_some(), bytes.len() as u64 <= format::INLINE_MAX);
    if let Some(data) = &staged.inline {
        INLINE.with(|m| m.borrow_mut().insert(d, data.to_vec()));
    }
    store.publish(&[&staged]).unwrap();
    staged.keep();
    d
}

fn read_all(store: &LocalStore, d: &Digest, range: Range) -> Result<Vec<u8>, StoreError> {
    let mut r = match INLINE.with(|m| m.borrow().get(d).cloned()) {
        Some(data) => store.read_inline(data, d, range)?,
        None => store.read(d, range)?,
    };
    let mut out = Vec::new();
    while let Some(c) = r.next_chunk() {
        out.extend_from_slice(&c?);
    }
    Ok(out)
}

#[test]
fn round_trips_and_ranges_with_every_codec() {
    for (name, codec) in codecs() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), codec, 0, false).unwrap();
        for size in [0, 1, 5000, format::INLINE_MAX as usize, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17] {
            let bytes = data(size);
            let d = put(&store, &bytes);
            assert_eq!(read_all(&store, &d, Range::ALL).unwrap(), bytes, "{name} {size}");
            for (off, len) in [(0, Some(5)), (CHUNK as u64 - 2, Some(4)), (size as u64 / 2, None), (size as u64, None)] {
                if off > size as u64 {
                    continue;
                }
                let end = len.map_or(size, |l| (off + l).min(size as u64) as usize);
                let got = read_all(&store, &d, Range { offset: off, len }).unwrap();
                assert_eq!(got, &bytes[off as usize..end], "{name} {size} range {off}+{len:?}");
            }
            assert!(matches!(read_all(&store, &d, Range { offset: size as u64 + 1, len: None }), Err(StoreError::BadRange { .. })));
        }
    }
}

#[test]
fn every_codec_detects_a_flipped_byte() {
    for (name, codec) in codecs() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), codec, 0, false).unwrap();
        let bytes = data(2 * CHUNK);
        let d = put(&store, &bytes);
        let path = store.path(&d);
        let mut raw = std::fs::read(&path).unwrap();
        raw[format::HEADER_LEN + 20] ^= 1;
        std::fs::write(&path, &raw).unwrap();
        let e = read_all(&store, &d, Range::ALL).unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }), "{name}: {e}");
    }
}

#[test]
fn a_flipped_byte_in_an_inline_blob_is_caught() {
    for (name, codec) in codecs() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), codec, 0, false).unwrap();
        let d = put(&store, &data(3000));
        let mut raw = INLINE.with(|m| m.borrow()[&d].clone());
        raw[format::HEADER_LEN + 30] ^= 4;
        let mut r = store.read_inline(raw, &d, Range::ALL).unwrap();
        let mut err = None;
        while let Some(c) = r.next_chunk() {
            if let Err(e) = c {
                err = Some(e);
            }
        }
        assert!(matches!(err, Some(StoreError::Corrupt { .. })), "{name}: {err:?}");
    }
}

#[test]
fn a_truncated_file_is_corrupt_not_short() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path(), codecs().remove(0).1, 0, false).unwrap();
    let d = put(&store, &data(CHUNK + 10));
    let path = store.path(&d);
    let raw = std::fs::read(&path).unwrap();
    std::fs::write(&path, &raw[..raw.len() - 30]).unwrap();
    assert!(matches!(read_all(&store, &d, Range::ALL), Err(StoreError::Corrupt { .. })));
}

#[test]
fn the_wrong_key_is_named_not_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let d = {
        let store = LocalStore::open(dir.path(), codecs().remove(2).1, 0, false).unwrap();
        put(&store, b"secret")
    };
    let other = Key::from_hex(&KEY.replace('0', "9")).unwrap();
    let store = LocalStore::open(dir.path(), Codec { zstd_level: None, key: Some(other) }, 0, false).unwrap();
    assert!(matches!(read_all(&store, &d, Range::ALL), Err(StoreError::WrongKey { .. })));
    drop(store);
    let store = LocalStore::open(dir.path(), Codec { zstd_level: None, key: None }, 0, false).unwrap();
    assert!(matches!(read_all(&store, &d, Range::ALL), Err(StoreError::NoKey { .. })));
}

#[test]
fn the_quota_refuses_and_returns_reservations() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path(), codecs().remove(0).1, 3 * CHUNK as u64, false).unwrap();
    let mut w = store.stage().unwrap();
    w.write(&data(2 * CHUNK)).unwrap();
    w.write(&data(2 * CHUNK)).unwrap_err();
    drop(w);
    assert_eq!(store.quota.used(), 0, "an abandoned write gives its quota back");
    assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
}

#[test]
fn the_directory_lock_keeps_a_second_store_out() {
    let dir = tempfile::tempdir().unwrap();
    let _a = LocalStore::open(dir.path(), codecs().remove(0).1, 0, false).unwrap();
    assert!(matches!(LocalStore::open(dir.path(), codecs().remove(0).1, 0, false), Err(StoreError::Locked { .. })));
}

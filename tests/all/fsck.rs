//! `strata fsck`: an offline check that finds a removed blob, a corrupted
//! blob and an orphan file, and a `--repair` that only does safe things.

use std::process::{Command, Output};

use crate::common::*;

fn fsck(s: &TestServer, repair: bool) -> (i32, String) {
    let mut cmd = Command::new(strata_bin());
    cmd.args(["fsck", "--config"]).arg(&s.config);
    if repair {
        cmd.arg("--repair");
    }
    let out: Output = cmd.output().expect("run strata fsck");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn fsck_finds_missing_corrupt_and_orphan_blobs() {
    let mut s = TestServer::start("");
    let mut c = s.client().await;
    let big: Vec<Vec<u8>> = (0..4).map(|_| random_bytes(200 << 10)).collect();
    for (i, b) in big.iter().enumerate() {
        put_key(&mut c, &format!("big/{i}"), b).await;
    }
    for i in 0..30 {
        put_key(&mut c, &format!("small/{i}"), &random_bytes(100)).await;
    }
    // Overwrites, a shared blob and deletes, so the totals have work to do.
    put_key(&mut c, "big/0", &random_bytes(300 << 10)).await;
    put_key(&mut c, "copy", &big[1]).await;
    c.delete(strata::api::pb::DeleteRequest { key: "small/3".into(), ..Default::default() }).await.unwrap();

    // Running against a live server's store is refused.
    let (code, out) = fsck(&s, false);
    assert_eq!(code, 8, "{out}");
    assert!(out.contains("lock") || out.contains("in use"), "{out}");
    s.stop();

    let (code, out) = fsck(&s, false);
    assert_eq!(code, 0, "a healthy store: {out}");
    assert!(out.contains("clean"), "{out}");

    let path_of = |data: &[u8]| {
        let hex = sha256_hex(data);
        s.data().join("blobs").join(&hex[..2]).join(&hex[2..4]).join(&hex)
    };
    let removed = path_of(&big[2]);
    std::fs::remove_file(&removed).expect("remove a blob file");
    let damaged = path_of(&big[3]);
    let len = std::fs::metadata(&damaged).unwrap().len();
    flip_a_byte(&damaged, len / 2);
    let orphan_hex = sha256_hex(b"nobody's");
    let orphan = s.data().join("blobs").join(&orphan_hex[..2]).join(&orphan_hex[2..4]);
    std::fs::create_dir_all(&orphan).unwrap();
    std::fs::copy(path_of(&big[1]), orphan.join(&orphan_hex)).unwrap();

    let (code, out) = fsck(&s, false);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains(&format!("missing blob {}", sha256_hex(&big[2]))), "{out}");
    assert!(out.contains(&format!("corrupt blob {}", sha256_hex(&big[3]))), "{out}");
    assert!(out.contains(&format!("orphan file {orphan_hex}")), "{out}");
    assert!(orphan.join(&orphan_hex).exists(), "a check without --repair changed the store");

    let (code, out) = fsck(&s, true);
    assert_eq!(code, 4, "lost data stays a problem after repair: {out}");
    assert!(!orphan.join(&orphan_hex).exists(), "the orphan was not quarantined");
    assert!(!damaged.exists(), "the corrupt file was not quarantined");
    let quarantined = std::fs::read_dir(s.data().join("quarantine")).unwrap().count();
    assert_eq!(quarantined, 2, "{out}");

    let (code, out) = fsck(&s, false);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("2 already on record as corrupt"), "{out}");
    assert!(!out.contains("orphan file"), "{out}");

    // The server reads what is sound and answers DATA_LOSS for the rest.
    s.boot();
    let mut c = s.client().await;
    assert_eq!(get_key(&mut c, "big/1").await.unwrap(), big[1]);
    assert_eq!(get_key(&mut c, "copy").await.unwrap(), big[1]);
    for k in ["big/2", "big/3"] {
        assert_eq!(get_key(&mut c, k).await.unwrap_err().code(), tonic::Code::DataLoss, "{k}");
    }
    // Putting the bytes again heals the blob; fsck agrees.
    put_key(&mut c, "heal2", &big[2]).await;
    put_key(&mut c, "heal3", &big[3]).await;
    assert_eq!(get_key(&mut c, "big/2").await.unwrap(), big[2]);
    s.stop();
    let (code, out) = fsck(&s, false);
    assert_eq!(code, 0, "{out}");
}

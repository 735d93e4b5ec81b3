//! Scoped tokens on the gRPC API: every RPC against every kind of token
//! (none, another bucket's, read, write, locks, admin), expired, forged and
//! revoked tokens, the CLI with `--token` and `STRATA_TOKEN`, and no secret
//! or token in the server's logs.

use std::process::{Command, Stdio};

use futures::stream;
use strata::api::pb;
use strata::cli::client::{Bearer, Client};
use tonic::Code;

use crate::common::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";

async fn client(url: &str, token: Option<&str>) -> Client {
    let ch = tonic::transport::Endpoint::from_shared(url.to_string()).unwrap().connect().await.unwrap();
    pb::strata_client::StrataClient::with_interceptor(ch, Bearer::new(token).unwrap())
}

/// What each RPC needs: (name, need), need being nothing, any, read,
/// write, locks or admin.
const TABLE: &[(&str, &str)] = &[
    ("health", "nothing"),
    ("reload", "admin"),
    ("put", "write"),
    ("put_many", "write"),
    ("get", "read"),
    ("stat", "read"),
    ("delete", "write"),
    ("delete_many", "write"),
    ("list", "read"),
    ("list_versions", "read"),
    ("restore", "write"),
    ("search", "read"),
    ("create_bucket", "admin"),
    ("list_buckets", "admin"),
    ("delete_bucket", "admin"),
    ("stats", "admin"),
    ("list_plugins", "any"),
    ("place", "admin"),
    ("create_index", "admin"),
    ("list_indexes", "admin"),
    ("drop_index", "admin"),
    ("cluster_init", "admin"),
    ("cluster_status", "any"),
    ("cluster_join", "admin"),
    ("cluster_leave", "admin"),
    ("cluster_remove", "admin"),
    ("cluster_repair", "admin"),
    ("set_replication", "admin"),
    ("get_replication", "read"),
    ("lock_acquire", "locks"),
    ("lock_renew", "locks"),
    ("lock_release", "locks"),
    ("list_locks", "locks"),
    ("backup_create", "admin"),
    ("tier_list", "admin"),
    ("tier_move", "admin"),
    ("tier_recall", "admin"),
    ("set_tier_policy", "admin"),
    ("list_tier_policies", "admin"),
    ("model_has_blobs", "read"),
    ("model_put_blob", "write"),
    ("model_get_blob", "read"),
    ("model_put_manifest", "write"),
    ("model_list", "read"),
    ("model_show", "read"),
    ("model_tag", "write"),
    ("model_remove", "write"),
];

/// Calls `rpc` with a small request on bucket `b1` (models: the registry's
/// bucket); the answer's code, or OK.
async fn call(c: &mut Client, rpc: &str) -> Code {
    let b = || "bk1".to_string();
    let digest = format!("sha256:{}", "0".repeat(64));
    let r: Result<(), tonic::Status> = match rpc {
        "health" => c.health(pb::HealthRequest {}).await.map(drop),
        "reload" => c.reload(pb::ReloadRequest {}).await.map(drop),
        "put" => {
            let h = pb::PutHeader { bucket: b(), key: "k".into(), ..Default::default() };
            let msgs = vec![pb::PutRequest { part: Some(pb::put_request::Part::Header(h)) }];
            c.put(stream::iter(msgs)).await.map(drop)
        }
        "put_many" => {
            let item = pb::PutManyItem {
                header: Some(pb::PutHeader { bucket: b(), key: "m".into(), ..Default::default() }),
                data: vec![1].into(),
            };
            c.put_many(stream::iter(vec![pb::PutManyRequest { items: vec![item] }])).await.map(drop)
        }
        "get" => c.get(pb::GetRequest { bucket: b(), key: "k".into(), ..Default::default() }).await.map(drop),
        "stat" => c.stat(pb::StatRequest { bucket: b(), key: "k".into(), ..Default::default() }).await.map(drop),
        "delete" => c.delete(pb::DeleteRequest { bucket: b(), key: "zz".into(), ..Default::default() }).await.map(drop),
        "delete_many" => c.delete_many(pb::DeleteManyRequest { bucket: b(), keys: vec!["zz".into()] }).await.map(drop),
        "list" => c.list(pb::ListRequest { bucket: b(), ..Default::default() }).await.map(drop),
        "list_versions" => c.list_versions(pb::ListVersionsRequest { bucket: b(), key: "k".into() }).await.map(drop),
        "restore" => c.restore(pb::RestoreRequest { bucket: b(), key: "k".into(), ..Default::default() }).await.map(drop),
        "search" => c.search(pb::SearchRequest { bucket: b(), limit: 1, ..Default::default() }).await.map(drop),
        "create_bucket" => c.create_bucket(pb::CreateBucketRequest { name: "made".into(), ..Default::default() }).await.map(drop),
        "list_buckets" => c.list_buckets(pb::ListBucketsRequest {}).await.map(drop),
        "delete_bucket" => c.delete_bucket(pb::DeleteBucketRequest { name: "nosuch".into() }).await.map(drop),
        "stats" => c.stats(pb::StatsRequest {}).await.map(drop),
        "list_plugins" => c.list_plugins(pb::ListPluginsRequest {}).await.map(drop),
        "place" => c.place(pb::PlaceRequest { key: "k".into(), ..Default::default() }).await.map(drop),
        "create_index" => c
            .create_index(pb::CreateIndexRequest { bucket: b(), name: "i".into(), fields: vec!["size".into()], ..Default::default() })
            .await
            .map(drop),
        "list_indexes" => c.list_indexes(pb::ListIndexesRequest::default()).await.map(drop),
        "drop_index" => c.drop_index(pb::DropIndexRequest { bucket: b(), name: "nosuch".into() }).await.map(drop),
        "cluster_init" => c.cluster_init(pb::ClusterInitRequest {}).await.map(drop),
        "cluster_status" => c.cluster_status(pb::ClusterStatusRequest {}).await.map(drop),
        "cluster_join" => c.cluster_join(pb::ClusterJoinRequest { address: "127.0.0.1:1".into() }).await.map(drop),
        "cluster_leave" => c.cluster_leave(pb::ClusterLeaveRequest {}).await.map(drop),
        "cluster_remove" => c.cluster_remove(pb::ClusterRemoveRequest { node_id: 1 }).await.map(drop),
        "cluster_repair" => c.cluster_repair(pb::ClusterRepairRequest { dry_run: true }).await.map(drop),
        "set_replication" => c.set_replication(pb::SetReplicationRequest { bucket: b(), policy: None }).await.map(drop),
        "get_replication" => c.get_replication(pb::GetReplicationRequest { bucket: b() }).await.map(drop),
        "lock_acquire" => c.lock_acquire(pb::LockAcquireRequest { name: "l".into(), ttl_ms: 1000, ..Default::default() }).await.map(drop),
        "lock_renew" => c.lock_renew(pb::LockRenewRequest { name: "l".into(), token: 1, ttl_ms: 1000 }).await.map(drop),
        "lock_release" => c.lock_release(pb::LockReleaseRequest { name: "l".into(), token: 1 }).await.map(drop),
        "list_locks" => c.list_locks(pb::ListLocksRequest {}).await.map(drop),
        "backup_create" => c.backup_create(pb::BackupCreateRequest::default()).await.map(drop),
        "tier_list" => c.tier_list(pb::TierListRequest {}).await.map(drop),
        "tier_move" => c.tier_move(pb::TierMoveRequest { bucket: b(), key: "k".into(), ..Default::default() }).await.map(drop),
        "tier_recall" => c.tier_recall(pb::TierMoveRequest { bucket: b(), key: "k".into(), ..Default::default() }).await.map(drop),
        "set_tier_policy" => c.set_tier_policy(pb::SetTierPolicyRequest::default()).await.map(drop),
        "list_tier_policies" => c.list_tier_policies(pb::ListTierPoliciesRequest {}).await.map(drop),
        "model_has_blobs" => {
            c.model_has_blobs(pb::ModelHasBlobsRequest { repository: "a/b".into(), digests: vec![digest] }).await.map(drop)
        }
        "model_put_blob" => {
            let h = pb::ModelBlobHeader { repository: "a/b".into(), digest, size: Some(0), from_repository: String::new() };
            c.model_put_blob(stream::iter(vec![pb::ModelPutBlobRequest { part: Some(pb::model_put_blob_request::Part::Header(h)) }]))
                .await
                .map(drop)
        }
        "model_get_blob" => c.model_get_blob(pb::ModelGetBlobRequest { repository: "a/b".into(), digest }).await.map(drop),
        "model_put_manifest" => c
            .model_put_manifest(pb::ModelPutManifestRequest {
                repository: "a/b".into(),
                tag: "t".into(),
                manifest: b"{}".to_vec().into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "model_list" => c.model_list(pb::ModelListRequest::default()).await.map(drop),
        "model_show" => c.model_show(pb::ModelShowRequest { repository: "a/b".into(), reference: "t".into() }).await.map(drop),
        "model_tag" => c
            .model_tag(pb::ModelTagRequest {
                repository: "a/b".into(),
                reference: "t".into(),
                to_repository: "a/c".into(),
                to_tag: "u".into(),
            })
            .await
            .map(drop),
        "model_remove" => c.model_remove(pb::ModelRemoveRequest { repository: "a/b".into(), tag: "t".into() }).await.map(drop),
        other => panic!("no call for {other}"),
    };
    match r {
        Ok(()) => Code::Ok,
        Err(s) => s.code(),
    }
}

fn write_config(dir: &tempfile::TempDir, toml: &str) -> std::path::PathBuf {
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, toml).unwrap();
    p
}

fn token(s: &TestServer, args: &[&str]) -> String {
    let mut all = vec!["token", "create", "--config"];
    let config = s.dir.path().join("strata.toml");
    all.push(config.to_str().unwrap());
    all.extend_from_slice(args);
    let o = s.cli(&all);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn every_rpc_checks_the_tokens_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let revoked = dir.path().join("revoked");
    let s = TestServer::start(&format!("[auth]\ntoken_secret_file = {secret:?}\nrevoked_file = {revoked:?}\n"));
    let admin = token(&s, &["--scope", "admin"]);
    let mut a = client(&s.url, Some(&admin)).await;
    a.create_bucket(pb::CreateBucketRequest { name: "bk1".into(), ..Default::default() }).await.unwrap();
    a.create_bucket(pb::CreateBucketRequest { name: "oci".into(), ..Default::default() }).await.unwrap();

    // The table covers every RPC the service has.
    let methods: Vec<&str> = include_str!("../../host/proto/strata/v1/strata.proto")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("rpc "))
        .map(|l| l.split('(').next().unwrap())
        .collect();
    assert_eq!(methods.len(), TABLE.len(), "every RPC is in the table: {methods:?}");

    let kinds = [
        ("none", None),
        ("other", Some(token(&s, &["--scope", "bucket:other:read", "--scope", "bucket:other:write"]))),
        ("read", Some(token(&s, &["--scope", "bucket:bk1:read", "--scope", "bucket:oci:read"]))),
        ("write", Some(token(&s, &["--scope", "bucket:bk1:write", "--scope", "bucket:oci:write"]))),
        ("locks", Some(token(&s, &["--scope", "locks"]))),
        ("admin", Some(admin.clone())),
    ];
    let mut failures = Vec::new();
    for (kind, t) in &kinds {
        let mut c = client(&s.url, t.as_deref()).await;
        for (rpc, need) in TABLE {
            let allowed = match (*need, *kind) {
                ("nothing", _) | (_, "admin") => true,
                ("any", k) => k != "none",
                (n, k) => n == k,
            };
            let code = call(&mut c, rpc).await;
            let expected_denial = if *kind == "none" { Code::Unauthenticated } else { Code::PermissionDenied };
            let ok = if allowed { !matches!(code, Code::Unauthenticated | Code::PermissionDenied) } else { code == expected_denial };
            if !ok {
                failures.push(format!("{rpc} with a {kind} token: {code:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    // Expired, forged, malformed and revoked tokens are refused.
    let short = token(&s, &["--scope", "admin", "--ttl", "1s"]);
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    let code = |t: String| {
        let url = s.url.clone();
        async move { call(&mut client(&url, Some(&t)).await, "list_buckets").await }
    };
    assert_eq!(code(short).await, Code::Unauthenticated, "expired");
    let other_key =
        strata::api::auth::create(b"another secret of thirty-two bytes!!", &["admin".into()], std::time::Duration::from_secs(60), None)
            .unwrap()
            .0;
    assert_eq!(code(other_key).await, Code::Unauthenticated, "signed with another secret");
    assert_eq!(code("not.a.token".into()).await, Code::Unauthenticated, "malformed");
    let victim = token(&s, &["--scope", "admin", "--id", "ci-key-7"]);
    assert_eq!(code(victim.clone()).await, Code::Ok);
    let config = s.dir.path().join("strata.toml");
    let o = s.cli(&["token", "revoke", "--config", config.to_str().unwrap(), "ci-key-7"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(code(victim.clone()).await, Code::Unauthenticated, "revoked without a restart");
    // A revoked list that turns unreadable keeps the last one read in force.
    let before = std::fs::read(&revoked).unwrap();
    std::fs::write(&revoked, b"ci-key-7\n\xff\xfe not text\n").unwrap();
    assert_eq!(code(victim.clone()).await, Code::Unauthenticated, "still revoked");
    assert_eq!(code(admin.clone()).await, Code::Ok, "other tokens still work");
    let o = s.cli(&["--token", &admin, "reload"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stdout).contains("REFUSED"), "{o:?}");
    // `token revoke` refuses a list servers cannot read rather than claim a revocation.
    let o = s.cli(&["token", "revoke", "--config", config.to_str().unwrap(), "another-id"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("not text"), "{o:?}");
    std::fs::remove_file(&revoked).unwrap();
    assert_eq!(code(victim).await, Code::Unauthenticated, "a deleted list does not unrevoke");
    std::fs::write(&revoked, before).unwrap();

    // Ids a revoked list could not name exactly are refused at creation.
    for bad in [" pad ", "#hash", "a b", "x\ny"] {
        let o = s.cli(&["token", "create", "--config", config.to_str().unwrap(), "--scope", "admin", "--id", bad]);
        assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("token id"), "{bad:?}: {o:?}");
    }

    // The CLI carries a token by flag or environment, and says what to do without one.
    let o = s.cli(&["ls", "--bucket", "bk1"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("needs a token"), "{o:?}");
    let o = s.cli(&["--token", &admin, "ls", "--bucket", "bk1"]);
    assert!(o.status.success(), "{o:?}");
    let o = Command::new(strata_bin()).args(["--addr", &s.url, "bucket", "ls"]).env("STRATA_TOKEN", &admin).output().unwrap();
    assert!(o.status.success(), "{o:?}");
    // A new secret, read by `strata reload` (admin only): tokens the old
    // one signed are refused from then on, the new one's accepted.
    std::fs::write(&secret, "a brand new secret, longer than thirty-two bytes").unwrap();
    let o = s.cli(&["reload"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("needs a token"), "{o:?}");
    let o = s.cli(&["--token", &admin, "reload"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("tokens"), "{o:?}");
    assert_eq!(code(admin.clone()).await, Code::Unauthenticated, "signed with the old secret");
    assert_eq!(code(token(&s, &["--scope", "admin"])).await, Code::Ok, "signed with the new secret");
    // A secret too short is refused; the one in use stays.
    std::fs::write(&secret, "short").unwrap();
    let fresh = token_with_secret(b"a brand new secret, longer than thirty-two bytes");
    let o = s.cli(&["--token", &fresh, "reload"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stdout).contains("REFUSED"), "{o:?}");
    assert_eq!(code(fresh).await, Code::Ok);

    // An [auth] section without a secret is a mistake, not "tokens off".
    let o = Command::new(strata_bin()).args(["serve", "--config"]).arg(write_config(&dir, "[auth]\n")).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("token_secret_file"), "{o:?}");
}

fn token_with_secret(key: &[u8]) -> String {
    strata::api::auth::create(key, &["admin".into()], std::time::Duration::from_secs(600), None).unwrap().0
}

/// With `anonymous = "read"`, a call without a token may read and no more.
#[tokio::test]
async fn anonymous_reads_when_configured() {
    let env = vec![("STRATA_TEST_SECRET".to_string(), SECRET.to_string())];
    let s = TestServer::start_with_env("127.0.0.1", "[auth]\ntoken_secret_env = \"STRATA_TEST_SECRET\"\nanonymous = \"read\"\n", env);
    let mut c = client(&s.url, None).await;
    assert!(!matches!(call(&mut c, "list").await, Code::Unauthenticated | Code::PermissionDenied));
    assert_eq!(call(&mut c, "put").await, Code::Unauthenticated);
    assert_eq!(call(&mut c, "stats").await, Code::Unauthenticated);
}

/// No secret, token or key in anything the server logs, at debug level,
/// through good, bad and revoked tokens.
#[tokio::test]
async fn logs_hold_no_secret_or_token() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let s = TestServer::prepare("127.0.0.1", &format!("[auth]\ntoken_secret_file = {secret:?}\n"), Vec::new());
    let log = dir.path().join("log");
    let mut child = Command::new(strata_bin())
        .args(["serve", "--config"])
        .arg(s.dir.path().join("strata.toml"))
        .env("STRATA_LOG", "debug,openraft=debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let url = format!("http://{}", lines.next().unwrap().unwrap().trim_start_matches("strata listening on "));
    let good = strata::api::auth::create(SECRET.as_bytes(), &["admin".into()], std::time::Duration::from_secs(60), None).unwrap().0;
    let bad =
        strata::api::auth::create(b"another secret of thirty-two bytes!!", &["admin".into()], std::time::Duration::from_secs(60), None)
            .unwrap()
            .0;
    for t in [Some(good.as_str()), Some(bad.as_str()), Some("garbage"), None] {
        let mut c = client(&url, t).await;
        for (rpc, _) in TABLE {
            call(&mut c, rpc).await;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.lines().count() > 5, "the server logged");
    for (what, needle) in [("the secret", SECRET), ("a token", good.as_str()), ("a forged token", bad.as_str())] {
        assert!(!logs.contains(needle), "{what} is in the log");
    }
    let signature = good.rsplit('.').next().unwrap();
    assert!(!logs.contains(signature), "a token's signature is in the log");
}

//! The S3 gateway with the clients people use: the `aws` cli and boto3
//! (installed with pip when missing), against a real server with access
//! keys made by `strata s3 key create`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;

/// The `aws` command (PyPI's awscli; its `--help` fails, `--version` works).
fn aws() -> PathBuf {
    pip_tool_checked("aws", "awscli", "--version")
}

fn boto3() {
    pip_module("boto3", "boto3");
}

struct Key {
    access: String,
    secret: String,
}

/// A key from `strata s3 key create` for `bucket` with `rights`.
fn key(s: &TestServer, bucket: &str, rights: &[&str]) -> Key {
    let mut args = vec!["s3", "key", "create", "--config", s.config.to_str().unwrap(), "--bucket", bucket, "--json"];
    args.extend_from_slice(rights);
    let o = Command::new(strata_bin()).args(&args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    Key { access: v["access_key"].as_str().unwrap().into(), secret: v["secret_key"].as_str().unwrap().into() }
}

fn start() -> TestServer {
    TestServer::start("[s3]\nlisten = \"127.0.0.1:0\"\n")
}

/// Runs `aws` against the gateway with `key`, in `dir`.
fn run_aws(s: &TestServer, k: &Key, dir: &Path, args: &[&str]) -> Output {
    Command::new(aws())
        .arg("--endpoint-url")
        .arg(format!("http://{}", s.s3_addr()))
        .args(args)
        .current_dir(dir)
        .env("AWS_ACCESS_KEY_ID", &k.access)
        .env("AWS_SECRET_ACCESS_KEY", &k.secret)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", s.dir.path().join("no-aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", s.dir.path().join("no-aws-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_CA_BUNDLE")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap()
}

/// A file's MD5 in hex, by coreutils' md5sum.
fn md5sum(path: &Path) -> String {
    let o = Command::new("md5sum").arg(path).output().unwrap();
    String::from_utf8(o.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn the_aws_cli_copies_lists_syncs_and_presigns() {
    let s = start();
    let k = key(&s, "*", &["--read", "--write"]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(run_aws(&s, &k, d, &["s3", "mb", "s3://photos"]));
    let data = random_bytes(3_000_000);
    std::fs::write(d.join("f1"), &data).unwrap();
    ok(run_aws(&s, &k, d, &["s3", "cp", "f1", "s3://photos/a/b/f1"]));
    let ls = ok(run_aws(&s, &k, d, &["s3", "ls", "s3://photos/"]));
    assert!(ls.contains("PRE a/"), "{ls}");
    let ls = ok(run_aws(&s, &k, d, &["s3", "ls", "--recursive", "s3://photos/"]));
    assert!(ls.contains("3000000 a/b/f1"), "{ls}");
    ok(run_aws(&s, &k, d, &["s3", "cp", "s3://photos/a/b/f1", "back"]));
    assert!(std::fs::read(d.join("back")).unwrap() == data);

    // 100 MB goes up as a multipart upload (8 MiB parts) and comes back
    // byte-exact, its ETag the MD5 of the parts' MD5s; no upload is left.
    let big = random_bytes(100_000_000);
    std::fs::write(d.join("big"), &big).unwrap();
    ok(run_aws(&s, &k, d, &["s3", "cp", "--only-show-errors", "big", "s3://photos/big"]));
    let head: serde_json::Value =
        serde_json::from_str(&ok(run_aws(&s, &k, d, &["s3api", "head-object", "--bucket", "photos", "--key", "big"]))).unwrap();
    assert!(head["ETag"].as_str().unwrap().ends_with("-12\""), "{head}");
    assert_eq!(head["ContentLength"], 100_000_000);
    ok(run_aws(&s, &k, d, &["s3", "cp", "--only-show-errors", "s3://photos/big", "big-back"]));
    assert!(std::fs::read(d.join("big-back")).unwrap() == big, "the multipart object reads back byte-exact");
    let ranged = d.join("ranged");
    let at = 8 * 1024 * 1024 - 5; // across the first two parts
    let range = format!("bytes={at}-{}", at + 9);
    ok(run_aws(&s, &k, d, &["s3api", "get-object", "--bucket", "photos", "--key", "big", "--range", &range, ranged.to_str().unwrap()]));
    assert_eq!(std::fs::read(&ranged).unwrap(), &big[at..at + 10]);
    // The parts' records go just after the answer.
    let mut uploads = String::new();
    for _ in 0..50 {
        uploads = ok(run_aws(&s, &k, d, &["s3api", "list-multipart-uploads", "--bucket", "photos"]));
        if !uploads.contains("UploadId") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(!uploads.contains("UploadId"), "{uploads}");
    // A small object's ETag is its MD5, as s3cmd and rclone check.
    let small = ok(run_aws(&s, &k, d, &["s3api", "put-object", "--bucket", "photos", "--key", "small", "--body", "f1"]));
    assert!(small.contains(&md5sum(&d.join("f1"))), "{small}");
    ok(run_aws(&s, &k, d, &["s3", "rm", "s3://photos/small"]));

    // sync up and down: every file, byte-exact, and nothing sent twice.
    let tree = d.join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    for i in 0..5 {
        std::fs::write(tree.join(format!("sub/f{i}")), format!("file {i}")).unwrap();
    }
    ok(run_aws(&s, &k, d, &["s3", "sync", "tree", "s3://photos/tree"]));
    let again = ok(run_aws(&s, &k, d, &["s3", "sync", "tree", "s3://photos/tree"]));
    assert!(!again.contains("upload:"), "an unchanged tree sends nothing: {again}");
    ok(run_aws(&s, &k, d, &["s3", "sync", "s3://photos/tree", "down"]));
    for i in 0..5 {
        assert_eq!(std::fs::read_to_string(d.join(format!("down/sub/f{i}"))).unwrap(), format!("file {i}"));
    }

    // A presigned URL works with curl, without credentials.
    let url = ok(run_aws(&s, &k, d, &["s3", "presign", "s3://photos/a/b/f1", "--expires-in", "300"]));
    let got = Command::new("curl").args(["-sf", url.trim()]).output().unwrap();
    assert!(got.status.success() && got.stdout == data, "presigned GET: {:?}", got.status);
    let tampered = url.trim().replace("a/b/f1", "a/b/f2");
    let refused = Command::new("curl").args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &tampered]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&refused.stdout), "403", "a URL signed for another key is refused");

    ok(run_aws(&s, &k, d, &["s3", "rm", "--recursive", "s3://photos/"]));
    ok(run_aws(&s, &k, d, &["s3", "rb", "s3://photos"]));
    let ls = ok(run_aws(&s, &k, d, &["s3", "ls"]));
    assert!(!ls.contains("photos"), "{ls}");
    // The same objects through gRPC: the gateway is a front end, not a store.
    let o = s.cli(&["bucket", "ls"]);
    assert!(o.status.success() && !String::from_utf8_lossy(&o.stdout).contains("photos"));
}

const BOTO: &str = r#"
import sys, boto3, botocore
from botocore.config import Config
endpoint, ak, sk, other_ak, other_sk = sys.argv[1:6]
cfg = Config(signature_version="s3v4", retries={"max_attempts": 1})
def client(a, s):
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=a, aws_secret_access_key=s, region_name="us-east-1", config=cfg)
c = client(ak, sk)
def code(f):
    try:
        f()
    except botocore.exceptions.ClientError as e:
        print("answer:", e.response["Error"], file=sys.stderr)
        return e.response["Error"]["Code"]
    return "ok"

c.create_bucket(Bucket="bkt")
assert (got := code(lambda: c.create_bucket(Bucket="bkt"))) in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"), got
r = c.put_object(Bucket="bkt", Key="docs/a.txt", Body=b"hello world", ContentType="text/plain", Metadata={"owner": "ada", "team": "x"})
etag = r["ETag"]
h = c.head_object(Bucket="bkt", Key="docs/a.txt")
assert h["ContentLength"] == 11 and h["ContentType"] == "text/plain", h
assert h["Metadata"] == {"owner": "ada", "team": "x"}, h["Metadata"]
assert h["ETag"] == etag
g = c.get_object(Bucket="bkt", Key="docs/a.txt", Range="bytes=2-5")
assert g["Body"].read() == b"llo " and g["ContentRange"] == "bytes 2-5/11", g
assert (got := code(lambda: c.get_object(Bucket="bkt", Key="docs/a.txt", Range="bytes=50-60"))) == "InvalidRange", got
assert (got := code(lambda: c.get_object(Bucket="bkt", Key="docs/a.txt", IfNoneMatch=etag))) == "304", got
assert (got := code(lambda: c.get_object(Bucket="bkt", Key="docs/a.txt", IfMatch='"0000"'))) == "PreconditionFailed", got
assert (got := code(lambda: c.get_object(Bucket="bkt", Key="nope"))) == "NoSuchKey", got
assert (got := code(lambda: c.get_object(Bucket="nobucket", Key="x"))) == "NoSuchBucket", got

# Conditional writes.
assert (got := code(lambda: c.put_object(Bucket="bkt", Key="docs/a.txt", Body=b"x", IfNoneMatch="*"))) == "PreconditionFailed", got
assert (got := code(lambda: c.put_object(Bucket="bkt", Key="docs/new.txt", Body=b"first", IfNoneMatch="*"))) == "ok", got
assert (got := code(lambda: c.put_object(Bucket="bkt", Key="docs/a.txt", Body=b"v2", IfMatch='"0000"'))) == "PreconditionFailed", got
assert (got := code(lambda: c.put_object(Bucket="bkt", Key="docs/a.txt", Body=b"v2", IfMatch=etag))) == "ok", got
assert c.get_object(Bucket="bkt", Key="docs/a.txt")["Body"].read() == b"v2"

# Copy: metadata copied, or replaced.
c.copy_object(Bucket="bkt", Key="copy1", CopySource={"Bucket": "bkt", "Key": "docs/new.txt"})
c.put_object(Bucket="bkt", Key="meta", Body=b"m", Metadata={"a": "1"})
c.copy_object(Bucket="bkt", Key="copy2", CopySource={"Bucket": "bkt", "Key": "meta"})
assert c.head_object(Bucket="bkt", Key="copy2")["Metadata"] == {"a": "1"}
c.copy_object(Bucket="bkt", Key="copy3", CopySource={"Bucket": "bkt", "Key": "meta"}, MetadataDirective="REPLACE", Metadata={"b": "2"})
assert c.head_object(Bucket="bkt", Key="copy3")["Metadata"] == {"b": "2"}
assert c.get_object(Bucket="bkt", Key="copy1")["Body"].read() == b"first"

# Listing: pagination, delimiters, start-after, url encoding.
for i in range(7):
    c.put_object(Bucket="bkt", Key=f"list/k{i}", Body=b"x")
c.put_object(Bucket="bkt", Key="list/sub/deep", Body=b"x")
c.put_object(Bucket="bkt", Key="list/with space+plus", Body=b"x")
keys = []
for page in c.get_paginator("list_objects_v2").paginate(Bucket="bkt", Prefix="list/", PaginationConfig={"PageSize": 2}):
    keys += [o["Key"] for o in page.get("Contents", [])]
assert keys == [f"list/k{i}" for i in range(7)] + ["list/sub/deep", "list/with space+plus"], keys
r = c.list_objects_v2(Bucket="bkt", Prefix="list/", Delimiter="/")
assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["list/sub/"], r
assert len(r["Contents"]) == 8
r = c.list_objects_v2(Bucket="bkt", Prefix="list/", StartAfter="list/k5")
assert [o["Key"] for o in r["Contents"]][:2] == ["list/k6", "list/sub/deep"]
v1 = []
for page in c.get_paginator("list_objects").paginate(Bucket="bkt", Prefix="list/", PaginationConfig={"PageSize": 3}):
    v1 += [o["Key"] for o in page.get("Contents", [])]
assert v1 == keys, v1
r = c.list_objects_v2(Bucket="bkt", Prefix="list/with", EncodingType="url")
assert [o["Key"] for o in r["Contents"]] == ["list/with%20space%2Bplus"], r

# Delete many.
r = c.delete_objects(Bucket="bkt", Delete={"Objects": [{"Key": f"list/k{i}"} for i in range(7)] + [{"Key": "never-there"}]})
assert len(r["Deleted"]) == 8 and not r.get("Errors"), r
assert (got := code(lambda: c.delete_bucket(Bucket="bkt"))) == "BucketNotEmpty", got

# Access: a key for another bucket, an unsigned request, a wrong secret.
o = client(other_ak, other_sk)
assert [b["Name"] for b in o.list_buckets()["Buckets"]] == [], "a key sees only its buckets"
assert (got := code(lambda: o.get_object(Bucket="bkt", Key="meta"))) == "AccessDenied", got
assert (got := code(lambda: o.put_object(Bucket="bkt", Key="x", Body=b"x"))) == "AccessDenied", got
assert (got := code(lambda: o.copy_object(Bucket="other", Key="c", CopySource={"Bucket": "bkt", "Key": "meta"}))) == "AccessDenied", got
anon = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=Config(signature_version=botocore.UNSIGNED))
assert (got := code(lambda: anon.get_object(Bucket="bkt", Key="meta"))) == "AccessDenied", got
assert (got := code(lambda: client(ak, "wrong" + sk[5:]).get_object(Bucket="bkt", Key="meta"))) == "SignatureDoesNotMatch", got

# What is not built says so, and a request that asks for it is refused, not half done.
assert (got := code(lambda: c.put_bucket_tagging(Bucket="bkt", Tagging={"TagSet": []}))) == "NotImplemented", got
import base64, datetime, hashlib
key = base64.b64encode(b"k" * 32).decode()
assert (got := code(lambda: c.put_object(Bucket="bkt", Key="ssec", Body=b"secret", SSECustomerAlgorithm="AES256", SSECustomerKey=key))) == "NotImplemented", got
assert code(lambda: c.put_object(Bucket="bkt", Key="locked", Body=b"x", ObjectLockMode="COMPLIANCE",
    ObjectLockRetainUntilDate=datetime.datetime(2030, 1, 1))) == "NotImplemented"
assert (got := code(lambda: c.put_object(Bucket="bkt", Key="tagged", Body=b"x", Tagging="a=b"))) == "NotImplemented", got
assert (got := code(lambda: c.put_object(Bucket="bkt", Key="sse", Body=b"x", ServerSideEncryption="AES256"))) == "NotImplemented", got
assert (got := code(lambda: c.head_object(Bucket="bkt", Key="ssec"))) == "404", got

# Integrity: a wrong Content-MD5 or checksum stores nothing.
good_md5 = base64.b64encode(hashlib.md5(b"payload").digest()).decode()
bad_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
assert (got := code(lambda: c.put_object(Bucket="bkt", Key="md5", Body=b"payload", ContentMD5=bad_md5))) == "BadDigest", got
assert (got := code(lambda: c.head_object(Bucket="bkt", Key="md5"))) == "404", got
assert (got := code(lambda: c.put_object(Bucket="bkt", Key="md5", Body=b"payload", ContentMD5=good_md5))) == "ok", got
bad_sum = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
assert (got := code(lambda: c.put_object(Bucket="bkt", Key="sum", Body=b"payload", ChecksumSHA256=bad_sum))) == "BadDigest", got
assert (got := code(lambda: c.head_object(Bucket="bkt", Key="sum"))) == "404", got
assert (got := code(lambda: c.put_object(Bucket="bkt", Key="crc", Body=b"payload", ChecksumAlgorithm="CRC32"))) == "ok", got

# Standard headers round trip; a missing content type reads as S3's default.
c.put_object(Bucket="bkt", Key="hdrs", Body=b"x", CacheControl="max-age=60", ContentDisposition="attachment", ContentLanguage="fr")
h = c.head_object(Bucket="bkt", Key="hdrs")
assert (h["CacheControl"], h["ContentDisposition"], h["ContentLanguage"]) == ("max-age=60", "attachment", "fr"), h
assert h["ContentType"] == "binary/octet-stream", h
assert (got := code(lambda: c.put_object(Bucket="bkt", Key="big-meta", Body=b"x", Metadata={"v": "x" * 3000}))) == "MetadataTooLarge", got

# A copy's destination conditions; a bad directive.
assert (got := code(lambda: c.copy_object(Bucket="bkt", Key="meta", CopySource={"Bucket": "bkt", "Key": "copy1"}, IfNoneMatch="*"))) in ("PreconditionFailed", "412"), got
assert c.get_object(Bucket="bkt", Key="meta")["Body"].read() == b"m"
assert (got := code(lambda: c.copy_object(Bucket="bkt", Key="c9", CopySource={"Bucket": "bkt", "Key": "meta"}, MetadataDirective="BOGUS"))) in ("InvalidArgument", "400"), got

# Ranges on an empty object.
c.put_object(Bucket="bkt", Key="empty", Body=b"")
assert (got := code(lambda: c.get_object(Bucket="bkt", Key="empty", Range="bytes=-5"))) == "InvalidRange", got
assert c.get_object(Bucket="bkt", Key="empty")["Body"].read() == b""

# Delimited listings page by page never repeat a prefix nor loop.
for k in ["/lead", "p/", "p//b", "p/b", "q/y/z", "r"]:
    c.put_object(Bucket="bkt", Key="zz" + k, Body=b"x")
seen = []
for page in c.get_paginator("list_objects_v2").paginate(Bucket="bkt", Prefix="zz", Delimiter="/", PaginationConfig={"PageSize": 1}):
    seen += [p["Prefix"] for p in page.get("CommonPrefixes", [])] + [o["Key"] for o in page.get("Contents", [])]
assert seen == ["zz/", "zzp/", "zzq/", "zzr"], seen
seen = []
for page in c.get_paginator("list_objects").paginate(Bucket="bkt", Prefix="zz", Delimiter="/", PaginationConfig={"PageSize": 2}):
    seen += [p["Prefix"] for p in page.get("CommonPrefixes", [])] + [o["Key"] for o in page.get("Contents", [])]
assert sorted(seen) == ["zz/", "zzp/", "zzq/", "zzr"] and len(seen) == 4, seen
print("boto3 ok")
"#;

/// Runs a boto3 script with `args`; asserts it printed `done`.
fn run_boto(s: &TestServer, script: &str, args: &[&str], done: &str) {
    boto3();
    let o = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .env("AWS_CONFIG_FILE", s.dir.path().join("no-aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", s.dir.path().join("no-aws-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .unwrap();
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains(done), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn boto3_conditional_puts_copies_listings_and_refusals() {
    let s = start();
    let k = key(&s, "*", &["--read", "--write"]);
    let other = key(&s, "other", &["--read", "--write"]);
    let endpoint = format!("http://{}", s.s3_addr());
    run_boto(&s, BOTO, &[&endpoint, &k.access, &k.secret, &other.access, &other.secret], "boto3 ok");
    // The objects boto3 wrote are the gRPC API's objects.
    let got = s.cli(&["get", "--bucket", "bkt", "copy1"]);
    assert_eq!(String::from_utf8_lossy(&got.stdout), "first", "{got:?}");
}

const MULTIPART: &str = r#"
import sys, hashlib, boto3, botocore
from botocore.config import Config
endpoint, ak, sk = sys.argv[1:4]
cfg = Config(signature_version="s3v4", retries={"max_attempts": 1})
c = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ak, aws_secret_access_key=sk, region_name="us-east-1", config=cfg)
def code(f):
    try:
        f()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    return "ok"
c.create_bucket(Bucket="mpb")
c.put_object(Bucket="mpb", Key="src", Body=b"0123456789" * 1000)
MiB = 1 << 20
p1, p2 = b"a" * (5 * MiB), b"b" * (5 * MiB)
u = c.create_multipart_upload(Bucket="mpb", Key="obj", ContentType="text/plain", Metadata={"who": "me"})["UploadId"]
e1 = c.upload_part(Bucket="mpb", Key="obj", UploadId=u, PartNumber=1, Body=p1)["ETag"]
assert e1.strip('"') == hashlib.md5(p1).hexdigest(), e1
e2 = c.upload_part(Bucket="mpb", Key="obj", UploadId=u, PartNumber=2, Body=p2)["ETag"]
e3 = c.upload_part_copy(Bucket="mpb", Key="obj", UploadId=u, PartNumber=3, CopySource={"Bucket": "mpb", "Key": "src"}, CopySourceRange="bytes=10-29")["CopyPartResult"]["ETag"]
parts = c.list_parts(Bucket="mpb", Key="obj", UploadId=u)["Parts"]
assert [p["PartNumber"] for p in parts] == [1, 2, 3] and parts[2]["Size"] == 20, parts
page = c.list_parts(Bucket="mpb", Key="obj", UploadId=u, MaxParts=2)
assert page["IsTruncated"] and page["NextPartNumberMarker"] == 2, page
ups = c.list_multipart_uploads(Bucket="mpb")["Uploads"]
assert [x["UploadId"] for x in ups] == [u] and ups[0]["Key"] == "obj", ups
P = lambda *ps: {"Parts": [{"PartNumber": n, "ETag": e} for n, e in ps]}
assert code(lambda: c.complete_multipart_upload(Bucket="mpb", Key="obj", UploadId=u, MultipartUpload=P((1, e2), (2, e2), (3, e3)))) == "InvalidPart"
assert code(lambda: c.complete_multipart_upload(Bucket="mpb", Key="obj", UploadId=u, MultipartUpload=P((2, e2), (1, e1), (3, e3)))) == "InvalidPartOrder"
assert code(lambda: c.complete_multipart_upload(Bucket="mpb", Key="obj", UploadId=u, MultipartUpload=P((1, e1), (1, e1), (3, e3)))) == "InvalidPartOrder"
assert code(lambda: c.complete_multipart_upload(Bucket="mpb", Key="obj", UploadId=u, MultipartUpload=P((1, e1), (3, e3)))) == "ok"
# Done: the parts are gone and the object is their bytes, with the upload's metadata.
import time
for _ in range(300):  # the parts' records go just after the answer (slower when CI is busy)
    if code(lambda: c.list_parts(Bucket="mpb", Key="obj", UploadId=u)) == "NoSuchUpload":
        break
    time.sleep(0.1)
assert code(lambda: c.list_parts(Bucket="mpb", Key="obj", UploadId=u)) == "NoSuchUpload"
o = c.get_object(Bucket="mpb", Key="obj")
body = o["Body"].read()
assert body == p1 + b"0123456789" * 2, len(body)
md5s = hashlib.md5(p1).digest() + hashlib.md5(b"0123456789" * 2).digest()
assert o["ETag"].strip('"') == hashlib.md5(md5s).hexdigest() + "-2", o["ETag"]
assert o["ContentType"] == "text/plain" and o["Metadata"] == {"who": "me"}, o
r = c.get_object(Bucket="mpb", Key="obj", Range="bytes=%d-%d" % (5 * MiB - 3, 5 * MiB + 2))["Body"].read()
assert r == b"aaa012", r
# A copy of a composed object: its bytes, copied.
c.copy_object(Bucket="mpb", Key="copy", CopySource={"Bucket": "mpb", "Key": "obj"})
assert c.get_object(Bucket="mpb", Key="copy")["Body"].read() == body
# Two completions and an abort at once: exactly one wins.
import threading
u3 = c.create_multipart_upload(Bucket="mpb", Key="race")["UploadId"]
t = c.upload_part(Bucket="mpb", Key="race", UploadId=u3, PartNumber=1, Body=b"r" * 100)["ETag"]
results = []
def go(f):
    results.append(code(f))
fs = [lambda: c.complete_multipart_upload(Bucket="mpb", Key="race", UploadId=u3, MultipartUpload=P((1, t))),
      lambda: c.complete_multipart_upload(Bucket="mpb", Key="race", UploadId=u3, MultipartUpload=P((1, t))),
      lambda: c.abort_multipart_upload(Bucket="mpb", Key="race", UploadId=u3)]
ths = [threading.Thread(target=go, args=(f,)) for f in fs]
[x.start() for x in ths]
[x.join() for x in ths]
assert results.count("ok") == 1 and results.count("NoSuchUpload") == 2, results
versions = c.list_object_versions(Bucket="mpb", Prefix="race").get("Versions", [])
assert len(versions) == (0 if code(lambda: c.head_object(Bucket="mpb", Key="race")) != "ok" else 1), versions
# A part stored after the upload was taken is refused and not kept.
assert code(lambda: c.upload_part(Bucket="mpb", Key="race", UploadId=u3, PartNumber=2, Body=b"late")) == "NoSuchUpload"
# ListMultipartUploads pages past a common prefix.
for key in ["a", "b/1", "b/2", "c"]:
    c.create_multipart_upload(Bucket="mpb", Key="lmu/" + key)
seen = []
for page in c.get_paginator("list_multipart_uploads").paginate(Bucket="mpb", Prefix="lmu/", Delimiter="/", PaginationConfig={"PageSize": 1}):
    seen += [x["Key"] for x in page.get("Uploads", [])] + [p["Prefix"] for p in page.get("CommonPrefixes", [])]
assert seen == ["lmu/a", "lmu/b/", "lmu/c"], seen
for x in c.list_multipart_uploads(Bucket="mpb", Prefix="lmu/")["Uploads"]:
    c.abort_multipart_upload(Bucket="mpb", Key=x["Key"], UploadId=x["UploadId"])
# Deleting a bucket drops its uploads: the name made again has none.
c.create_bucket(Bucket="delb")
ud = c.create_multipart_upload(Bucket="delb", Key="k")["UploadId"]
c.delete_bucket(Bucket="delb")
c.create_bucket(Bucket="delb")
assert c.list_multipart_uploads(Bucket="delb").get("Uploads", []) == []
assert code(lambda: c.upload_part(Bucket="delb", Key="k", UploadId=ud, PartNumber=1, Body=b"x")) == "NoSuchUpload"
# Conditional completion: If-None-Match * on a key that exists.
u2 = c.create_multipart_upload(Bucket="mpb", Key="obj")["UploadId"]
f = c.upload_part(Bucket="mpb", Key="obj", UploadId=u2, PartNumber=1, Body=b"x")["ETag"]
assert code(lambda: c.complete_multipart_upload(Bucket="mpb", Key="obj", UploadId=u2, MultipartUpload=P((1, f)), IfNoneMatch="*")) == "PreconditionFailed"
# Too small a part before the last.
g = c.upload_part(Bucket="mpb", Key="obj", UploadId=u2, PartNumber=2, Body=b"y")["ETag"]
assert code(lambda: c.complete_multipart_upload(Bucket="mpb", Key="obj", UploadId=u2, MultipartUpload=P((1, f), (2, g)))) == "EntityTooSmall"
c.abort_multipart_upload(Bucket="mpb", Key="obj", UploadId=u2)
assert code(lambda: c.upload_part(Bucket="mpb", Key="obj", UploadId=u2, PartNumber=3, Body=b"z")) == "NoSuchUpload"
assert c.list_multipart_uploads(Bucket="mpb").get("Uploads", []) == []
assert code(lambda: c.upload_part(Bucket="mpb", Key="obj", UploadId="nope", PartNumber=1, Body=b"z")) == "NoSuchUpload"
assert code(lambda: c.upload_part(Bucket="mpb", Key="obj", UploadId=u2, PartNumber=0, Body=b"z")) in ("InvalidArgument", "NoSuchUpload")
assert code(lambda: c.list_objects_v2(Bucket="strata-s3-uploads")) == "InvalidBucketName"
assert "strata-s3-uploads" not in [b["Name"] for b in c.list_buckets()["Buckets"]]
print("multipart ok")
"#;

/// Multipart uploads with boto3: parts, a part copied from a range, part
/// and upload listings, completion (ETag, metadata, ranges across parts),
/// its refusals (wrong ETag, order, too small a part, If-None-Match) and
/// abort.
#[test]
fn boto3_multipart_uploads() {
    let s = start();
    let k = key(&s, "*", &["--read", "--write"]);
    run_boto(&s, MULTIPART, &[&format!("http://{}", s.s3_addr()), &k.access, &k.secret], "multipart ok");
    // The composed object is an object like any other to the gRPC API.
    let got = s.cli(&["get", "--bucket", "mpb", "obj"]);
    assert!(got.status.success() && got.stdout.len() == (5 << 20) + 20, "{got:?}");
}

const TWO_PARTS: &str = r#"
import sys, boto3
from botocore.config import Config
endpoint, ak, sk, key = sys.argv[1:5]
c = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ak, aws_secret_access_key=sk, region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
if key == "a":
    c.create_bucket(Bucket="gcb")
u = c.create_multipart_upload(Bucket="gcb", Key=key)["UploadId"]
e1 = c.upload_part(Bucket="gcb", Key=key, UploadId=u, PartNumber=1, Body=(key * (5 << 20)).encode())["ETag"]
e2 = c.upload_part(Bucket="gcb", Key=key, UploadId=u, PartNumber=2, Body=(key.upper() * (1 << 20)).encode())["ETag"]
c.complete_multipart_upload(Bucket="gcb", Key=key, UploadId=u, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
print("uploaded")
"#;

/// A composed object holds its parts: deleting it lets GC take them (and
/// nothing else), fsck finds the store sound, and a damaged part is
/// caught when read, never served.
#[test]
fn composed_objects_are_collected_and_their_damage_caught() {
    let mut s = TestServer::start(
        "[s3]\nlisten = \"127.0.0.1:0\"\n[metadata]\nenable_versioning = false\n\
         [storage]\ncleanup_age = \"0s\"\ngc_interval = \"1s\"\nmax_cache_size = \"0\"\n",
    );
    let k = key(&s, "*", &["--read", "--write"]);
    let endpoint = format!("http://{}", s.s3_addr());
    run_boto(&s, TWO_PARTS, &[&endpoint, &k.access, &k.secret, "a"], "uploaded");
    let files_a = blob_files(&s.data());
    run_boto(&s, TWO_PARTS, &[&endpoint, &k.access, &k.secret, "b"], "uploaded");
    let files_b: Vec<PathBuf> = blob_files(&s.data()).into_iter().filter(|f| !files_a.contains(f)).collect();
    assert_eq!(files_b.len(), 2, "b's two parts, in files of their own: {files_b:?}");

    // Damage b's larger part: the read fails, nothing wrong is served.
    let biggest = files_b.iter().max_by_key(|f| std::fs::metadata(f).unwrap().len()).unwrap();
    flip_a_byte(biggest, 3 << 20);
    let got = s.cli(&["get", "--bucket", "gcb", "b"]);
    assert!(!got.status.success(), "a damaged part fails the read");
    assert!(got.stdout.len() < (5 << 20), "no byte past the damage is served");

    // Deleting a lets GC take its parts; b's undamaged part stays.
    assert!(s.cli(&["rm", "--bucket", "gcb", "a"]).status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while files_a.iter().any(|f| f.exists()) {
        assert!(std::time::Instant::now() < deadline, "GC did not take the deleted object's parts");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let small_b = files_b.iter().find(|f| *f != biggest).unwrap();
    assert!(small_b.exists(), "a part of a live object stays");
    s.stop();
    let fsck = Command::new(strata_bin()).args(["fsck", "--config"]).arg(&s.config).output().unwrap();
    let out = String::from_utf8_lossy(&fsck.stdout);
    // The one problem is the damaged part, on record: reference counts
    // (versions and composites) and totals agree.
    assert!(out.contains("1 already on record as corrupt") && out.contains("\n1 problems;"), "{out}");
}

/// object_store's own suite for stores (its `integration` feature), the
/// tests its S3 client runs against AWS, run against the gateway: with
/// conditional puts (ETag) and copy-if-not-exists by multipart upload.
#[tokio::test(flavor = "multi_thread")]
async fn object_store_integration_suite() {
    use object_store::aws::{AmazonS3Builder, S3ConditionalPut, S3CopyIfNotExists};
    use object_store::integration::*;
    let s = start();
    let k = key(&s, "*", &["--read", "--write"]);
    assert!(s.cli(&["bucket", "create", "suite"]).status.success());
    let store = AmazonS3Builder::new()
        .with_endpoint(format!("http://{}", s.s3_addr()))
        .with_allow_http(true)
        .with_bucket_name("suite")
        .with_region("us-east-1")
        .with_access_key_id(&k.access)
        .with_secret_access_key(&k.secret)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_copy_if_not_exists(S3CopyIfNotExists::Multipart)
        .build()
        .unwrap();
    put_get_delete_list(&store).await;
    list_with_offset_exclusivity(&store).await;
    get_opts(&store).await;
    list_uses_directories_correctly(&store).await;
    list_with_delimiter(&store).await;
    rename_and_copy(&store).await;
    stream_get(&store).await;
    multipart(&store, &store).await;
    multipart_with_opts(&store, &store).await;
    multipart_put_part_out_of_order(&store, &store).await;
    multipart_race_condition(&store, true).await;
    multipart_out_of_order(&store).await;
    put_get_attributes(&store).await;
    list_paginated(&store, &store).await;
    copy_if_not_exists(&store).await;
    put_opts(&store, true).await;
}

/// rclone (Debian's) copies a tree up (its large file as a multipart
/// upload), checks it by hash, copies it down and finds a second sync has
/// nothing to do.
#[test]
fn rclone_copies_checks_and_syncs() {
    let rclone = apt_tool("rclone", "rclone");
    let s = start();
    let k = key(&s, "*", &["--read", "--write"]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let conf = d.join("rclone.conf");
    std::fs::write(
        &conf,
        format!(
            "[st]\ntype = s3\nprovider = Other\naccess_key_id = {}\nsecret_access_key = {}\nendpoint = http://{}\nregion = us-east-1\n",
            k.access,
            k.secret,
            s.s3_addr()
        ),
    )
    .unwrap();
    let tree = d.join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    for i in 0..3 {
        std::fs::write(tree.join(format!("sub/f{i}")), format!("file {i}")).unwrap();
    }
    std::fs::write(tree.join("big"), random_bytes(24 << 20)).unwrap();
    // rclone fails to load a CA bundle these machines name (LoadCustomCABundleError).
    let run = |args: &[&str]| {
        let o = Command::new(&rclone).args(args).env("RCLONE_CONFIG", &conf).env_remove("AWS_CA_BUNDLE").current_dir(d).output().unwrap();
        assert!(o.status.success(), "rclone {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
    };
    run(&["mkdir", "st:rcb"]);
    run(&["copy", "tree", "st:rcb/tree", "--s3-upload-cutoff", "10M", "--s3-chunk-size", "5M"]);
    run(&["check", "tree", "st:rcb/tree"]);
    let ls = run(&["ls", "st:rcb"]);
    assert!(ls.contains(&format!("{} tree/big", 24 << 20)) && ls.contains("6 tree/sub/f2"), "{ls}");
    run(&["copy", "st:rcb/tree", "down"]);
    for f in ["big", "sub/f0", "sub/f1", "sub/f2"] {
        assert!(std::fs::read(tree.join(f)).unwrap() == std::fs::read(d.join("down").join(f)).unwrap(), "{f} comes back byte-exact");
    }
    let again = run(&["sync", "tree", "st:rcb/tree", "-v"]);
    assert!(again.contains("0 differences") || !again.contains("Copied"), "a second sync copies nothing: {again}");
}

/// s3cmd (Debian's) makes a bucket, puts (a multipart upload too), gets,
/// syncs twice (the second sends nothing) and deletes. It checks each
/// upload's ETag against its MD5 and would retry on a mismatch.
#[test]
fn s3cmd_puts_gets_syncs_and_deletes() {
    let s3cmd = apt_tool("s3cmd", "s3cmd");
    let s = start();
    let k = key(&s, "*", &["--read", "--write"]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = d.join("s3cfg");
    let addr = s.s3_addr();
    std::fs::write(
        &cfg,
        format!(
            "[default]\naccess_key = {}\nsecret_key = {}\nhost_base = {addr}\nhost_bucket = {addr}\nuse_https = False\n\
             signature_v2 = False\nbucket_location = us-east-1\n",
            k.access, k.secret
        ),
    )
    .unwrap();
    let big = random_bytes(12 << 20);
    std::fs::write(d.join("big"), &big).unwrap();
    std::fs::create_dir_all(d.join("tree")).unwrap();
    for i in 0..3 {
        std::fs::write(d.join(format!("tree/f{i}")), format!("file {i}")).unwrap();
    }
    let run = |args: &[&str]| {
        let o = Command::new(&s3cmd).arg("-c").arg(&cfg).args(args).env_remove("AWS_CA_BUNDLE").current_dir(d).output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "s3cmd {args:?}: {out}");
        assert!(!out.contains("MD5 Sums don't match") && !out.contains("WARNING"), "s3cmd {args:?}: {out}");
        out
    };
    run(&["mb", "s3://s3cb"]);
    run(&["put", "--multipart-chunk-size-mb=5", "big", "s3://s3cb/big"]);
    run(&["put", "tree/f0", "s3://s3cb/small"]);
    let ls = run(&["ls", "s3://s3cb"]);
    assert!(ls.contains(&format!("{}  s3://s3cb/big", 12 << 20)), "{ls}");
    run(&["get", "--force", "s3://s3cb/big", "big-back"]);
    assert!(std::fs::read(d.join("big-back")).unwrap() == big);
    let first = run(&["sync", "tree/", "s3://s3cb/tree/"]);
    assert!(first.contains("upload:"), "{first}");
    let second = run(&["sync", "tree/", "s3://s3cb/tree/"]);
    assert!(!second.contains("upload:"), "an unchanged tree sends nothing: {second}");
    // An object put through gRPC (no MD5 computed) is read without a warning.
    let put = s.cli(&["put", "--bucket", "s3cb", "grpc-put", d.join("tree/f1").to_str().unwrap()]);
    assert!(put.status.success(), "{put:?}");
    run(&["get", "--force", "s3://s3cb/grpc-put", "grpc-back"]);
    assert_eq!(std::fs::read(d.join("grpc-back")).unwrap(), b"file 1");
    run(&["del", "s3://s3cb/small"]);
    let ls = run(&["ls", "s3://s3cb"]);
    assert!(!ls.contains("small"), "{ls}");
}

const VERSIONING: &str = r#"
import sys, boto3, botocore
from botocore.config import Config
endpoint, ak, sk = sys.argv[1:4]
c = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ak, aws_secret_access_key=sk, region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
def code(f):
    try:
        f()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    return "ok"
c.create_bucket(Bucket="ver")
assert c.get_bucket_versioning(Bucket="ver")["Status"] == "Enabled"
v1 = c.put_object(Bucket="ver", Key="k", Body=b"one")["VersionId"]
v2 = c.put_object(Bucket="ver", Key="k", Body=b"two")["VersionId"]
assert v1 != v2
assert c.get_object(Bucket="ver", Key="k", VersionId=v1)["Body"].read() == b"one"
assert c.head_object(Bucket="ver", Key="k")["VersionId"] == v2
d = c.delete_object(Bucket="ver", Key="k")
assert d["DeleteMarker"] and d["VersionId"], d
assert code(lambda: c.get_object(Bucket="ver", Key="k")) == "NoSuchKey"
lv = c.list_object_versions(Bucket="ver")
assert [(v["VersionId"], v["IsLatest"]) for v in lv["Versions"]] == [(v2, False), (v1, False)], lv["Versions"]
assert [(m["VersionId"], m["IsLatest"]) for m in lv["DeleteMarkers"]] == [(d["VersionId"], True)], lv["DeleteMarkers"]
# Removing the marker brings the object back; removing a version is for good.
c.delete_object(Bucket="ver", Key="k", VersionId=d["VersionId"])
assert c.get_object(Bucket="ver", Key="k")["Body"].read() == b"two"
assert c.delete_object(Bucket="ver", Key="k", VersionId=v1)["VersionId"] == v1
assert code(lambda: c.get_object(Bucket="ver", Key="k", VersionId=v1)) == "NoSuchVersion"
assert code(lambda: c.delete_object(Bucket="ver", Key="k", VersionId=v1)) == "NoSuchVersion"
# Paging through many versions, two at a time: each once, in order.
want = []
for key in ["a/1", "a/2", "b"]:
    for body in [b"x", b"y"]:
        want.append((key, c.put_object(Bucket="ver", Key=key, Body=body)["VersionId"]))
seen = []
for page in c.get_paginator("list_object_versions").paginate(Bucket="ver", PaginationConfig={"PageSize": 2}):
    seen += [(v["Key"], v["VersionId"]) for v in page.get("Versions", [])]
assert set(seen) - {("k", v2)} == set(want), seen
assert len(seen) == len(set(seen)) == 7, seen
keys = [s[0] for s in seen]
assert keys == sorted(keys), keys
# A delimiter folds a/ into one common prefix.
page = c.list_object_versions(Bucket="ver", Delimiter="/")
assert [p["Prefix"] for p in page.get("CommonPrefixes", [])] == ["a/"], page
assert sorted({v["Key"] for v in page["Versions"]}) == ["b", "k"], page["Versions"]
# DeleteObjects by version id.
r = c.delete_objects(Bucket="ver", Delete={"Objects": [{"Key": k, "VersionId": v} for k, v in want if k == "b"]})
assert len(r["Deleted"]) == 2 and not r.get("Errors"), r
assert code(lambda: c.head_object(Bucket="ver", Key="b")) in ("404", "NoSuchKey")
# Suspended: a new write replaces the live version; Enabled again keeps them.
# Suspended: versions kept before stay; a write replaces only one made since.
j1 = c.put_object(Bucket="ver", Key="j", Body=b"jay")["VersionId"]
c.put_bucket_versioning(Bucket="ver", VersioningConfiguration={"Status": "Suspended"})
assert c.get_bucket_versioning(Bucket="ver")["Status"] == "Suspended"
vs = lambda key: [v["VersionId"] for v in c.list_object_versions(Bucket="ver", Prefix=key)["Versions"] if v["Key"] == key]
t3 = c.put_object(Bucket="ver", Key="k", Body=b"three")["VersionId"]
assert vs("k") == [t3, v2], vs("k")
t4 = c.put_object(Bucket="ver", Key="k", Body=b"four")["VersionId"]
assert vs("k") == [t4, v2], vs("k")
assert c.get_object(Bucket="ver", Key="k")["Body"].read() == b"four"
# A delete keeps j's older version, under a marker.
assert c.delete_object(Bucket="ver", Key="j").get("DeleteMarker") is True
assert vs("j") == [j1] and c.get_object(Bucket="ver", Key="j", VersionId=j1)["Body"].read() == b"jay"
c.put_bucket_versioning(Bucket="ver", VersioningConfiguration={"Status": "Enabled"})
assert c.get_bucket_versioning(Bucket="ver")["Status"] == "Enabled"
c.put_object(Bucket="ver", Key="k", Body=b"five")
assert len(vs("k")) == 3, vs("k")
assert code(lambda: c.put_bucket_versioning(Bucket="ver", VersioningConfiguration={"Status": "Enabled", "MFADelete": "Enabled"}, MFA="x 1")) == "NotImplemented"
print("versioning ok")
"#;

/// Versioning with boto3: the bucket setting, version ids, reads and
/// deletes by version, delete markers, ListObjectVersions (paged, with a
/// delimiter), DeleteObjects by version, Suspended and Enabled again.
#[test]
fn boto3_versioning() {
    let s = start();
    let k = key(&s, "*", &["--read", "--write"]);
    run_boto(&s, VERSIONING, &[&format!("http://{}", s.s3_addr()), &k.access, &k.secret], "versioning ok");
    // The setting outlives a restart.
    let mut s = s;
    s.stop();
    s.boot();
    let o = s.cli(&["versions", "--bucket", "ver", "k"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).lines().count() >= 2, "{o:?}");
    run_boto(
        &s,
        "import sys, boto3\nc = boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3], region_name='us-east-1')\nassert c.get_bucket_versioning(Bucket='ver')['Status'] == 'Enabled'\nc.put_bucket_versioning(Bucket='ver', VersioningConfiguration={'Status': 'Suspended'})\nprint('set')\n",
        &[&format!("http://{}", s.s3_addr()), &k.access, &k.secret],
        "set",
    );
    s.stop();
    s.boot();
    run_boto(
        &s,
        "import sys, boto3\nc = boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3], region_name='us-east-1')\nassert c.get_bucket_versioning(Bucket='ver')['Status'] == 'Suspended'\nprint('kept')\n",
        &[&format!("http://{}", s.s3_addr()), &k.access, &k.secret],
        "kept",
    );
}

const ACROSS: &str = r#"
import sys, hashlib, boto3
from botocore.config import Config
e0, e1, e2, ak, sk = sys.argv[1:6]
def client(e):
    return boto3.client("s3", endpoint_url=e, aws_access_key_id=ak, aws_secret_access_key=sk, region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
c0, c1, c2 = client(e0), client(e1), client(e2)
c0.create_bucket(Bucket="wide")
p1, p2 = b"p" * (5 << 20), b"q" * (1 << 20)
u = c0.create_multipart_upload(Bucket="wide", Key="obj", Metadata={"m": "v"})["UploadId"]
t1 = c1.upload_part(Bucket="wide", Key="obj", UploadId=u, PartNumber=1, Body=p1)["ETag"]
t2 = c2.upload_part(Bucket="wide", Key="obj", UploadId=u, PartNumber=2, Body=p2)["ETag"]
assert [p["PartNumber"] for p in c0.list_parts(Bucket="wide", Key="obj", UploadId=u)["Parts"]] == [1, 2]
assert [x["UploadId"] for x in c2.list_multipart_uploads(Bucket="wide")["Uploads"]] == [u]
c1.complete_multipart_upload(Bucket="wide", Key="obj", UploadId=u, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": t1}, {"PartNumber": 2, "ETag": t2}]})
tag = hashlib.md5(hashlib.md5(p1).digest() + hashlib.md5(p2).digest()).hexdigest() + "-2"
for c in (c0, c1, c2):
    o = c.get_object(Bucket="wide", Key="obj")
    assert o["Body"].read() == p1 + p2
    assert o["ETag"].strip('"') == tag and o["Metadata"] == {"m": "v"}, o
import time
for _ in range(300):  # the parts' records go just after the answer (slower when CI is busy)
    if c0.list_multipart_uploads(Bucket="wide").get("Uploads", []) == []:
        break
    time.sleep(0.1)
assert c0.list_multipart_uploads(Bucket="wide").get("Uploads", []) == []
print("across ok")
"#;

/// On a cluster an upload's parts go to different nodes and its
/// completion to a third; every node then serves the object, with its
/// multipart ETag (sent to the replicas after the body).
#[tokio::test(flavor = "multi_thread")]
async fn a_multipart_upload_spans_cluster_nodes() {
    let net = crate::cluster::Net::start(3, "\n[s3]\nlisten = \"127.0.0.1:0\"\n");
    net.form().await;
    let k = key(&net.nodes[0], "*", &["--read", "--write"]);
    // Access keys are per node: the same key file on every node.
    let keys = std::fs::read(net.nodes[0].data().join("s3-keys.json")).unwrap();
    for n in &net.nodes[1..] {
        std::fs::write(n.data().join("s3-keys.json"), &keys).unwrap();
    }
    let e: Vec<String> = net.nodes.iter().map(|n| format!("http://{}", n.s3_addr())).collect();
    run_boto(&net.nodes[0], ACROSS, &[&e[0], &e[1], &e[2], &k.access, &k.secret], "across ok");
}

//! The remote backend without a server: `object_store::memory::InMemory` behind a
//! [`CountingStore`] for request counts, and object_store's real S3 client over a fake HTTP
//! service for statuses, retries, request ids and `If-Match` as S3 answers them.
//!
//! What InMemory covers and what it does not: it honours `If-Match` (412 → `Precondition`),
//! suffix and bounded ranges (a bounded range past the end is clipped, as S3 does), and gives
//! quoted ETags in listings and responses. It never answers 416 (an empty object's suffix range
//! is simply empty) and has no HTTP, so statuses, retries and request ids are tested through
//! the fake S3 service below instead.
//!
//! Each test uses its own bucket: listings, open objects and stores are process-wide.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use object_store::memory::InMemory;

use super::testing::{CountingStore, Request};
use super::*;
use crate::{Kind, Location, Scheme};

/// A real torch.save checkpoint (Lightning, 13 KB).
const TORCH_ZIP: &[u8] =
    include_bytes!("../../../ckpt-py/tests/fixtures/dictconfig_lightning.ckpt");

/// `forget_listings` empties process-wide memos: the test that calls it runs alone, the others
/// (which count requests that memos save) share.
static GLOBAL: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    GLOBAL.read().unwrap_or_else(|e| e.into_inner())
}

fn bucket(name: &str) -> Arc<CountingStore> {
    let s = CountingStore::new(Arc::new(InMemory::new()));
    register_store_for_tests(Scheme::S3, name, s.clone());
    s
}

#[test]
fn a_local_tree_uploaded_to_a_memory_bucket_lists_like_the_folder() {
    let _shared = shared();
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("run/checkpoints")).unwrap();
    std::fs::write(d.path().join("run/hparams.yaml"), b"a: 1\n").unwrap();
    std::fs::write(d.path().join("run/checkpoints/last.ckpt"), TORCH_ZIP).unwrap();
    let s = CountingStore::bucket(Scheme::Gs, "t-tree");
    assert_eq!(s.put_tree("exp", d.path()).unwrap(), 2);
    let l = read_dir(&url("gs://t-tree/exp/run")).unwrap();
    let names: Vec<_> = l.entries.iter().map(|e| (e.path.clone(), e.kind)).collect();
    assert_eq!(
        names,
        vec![
            (PathBuf::from("gs://t-tree/exp/run/checkpoints"), Kind::Dir),
            (
                PathBuf::from("gs://t-tree/exp/run/hparams.yaml"),
                Kind::File
            ),
        ]
    );
    let src = crate::open(Path::new("gs://t-tree/exp/run/checkpoints/last.ckpt")).unwrap();
    assert_eq!(read(&*src, 0, TORCH_ZIP.len()), TORCH_ZIP);
}

fn url(p: &str) -> RemoteUrl {
    match Location::parse(Path::new(p)) {
        Location::Remote(u) => u,
        Location::Local(_) => panic!("not a URL: {p}"),
    }
}

fn open_url(p: &str) -> io::Result<Arc<dyn ByteSource>> {
    open(&url(p), Path::new(p), None)
}

fn read(src: &dyn ByteSource, off: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    src.read_exact_at(&mut b, off).unwrap();
    b
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn gets(s: &CountingStore) -> Vec<Request> {
    s.log().into_iter().filter(|r| r.method == "GET").collect()
}

#[test]
fn opening_a_small_torch_zip_costs_one_round_of_two_gets_then_nothing() {
    let _shared = shared();
    let s = bucket("t-small-zip");
    s.put("run/last.ckpt", TORCH_ZIP).unwrap();
    let src = open_url("s3://t-small-zip/run/last.ckpt").unwrap();
    assert_eq!(src.len(), TORCH_ZIP.len() as u64);
    assert_eq!(src.path(), Path::new("s3://t-small-zip/run/last.ckpt"));
    let id = src.identity();
    assert!(id.etag.is_some() && id.version != 0);
    let log = gets(&s);
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log.iter().any(|r| r.range == "bytes=-65558"), "{log:?}");
    assert!(log.iter().any(|r| r.range == "bytes=0-131071"), "{log:?}");
    assert!(
        log.iter().all(|r| !r.if_match),
        "identity unknown yet: {log:?}"
    );
    // What a zip reader then does: the end of central directory, the central directory, the
    // local headers and entries — all from the first round.
    let n = TORCH_ZIP.len();
    assert_eq!(read(&*src, (n - 22) as u64, 22), &TORCH_ZIP[n - 22..]);
    assert_eq!(read(&*src, 0, n), TORCH_ZIP);
    src.prefetch(&[0..65_536, 0..(n as u64)]);
    assert_eq!(s.log().len(), 2, "{:?}", s.log());
    let e = src
        .read_exact_at(&mut [0u8; 4], (n - 2) as u64)
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
}

#[test]
fn a_large_object_reads_ahead_on_a_miss_with_if_match_and_streams_big_reads_uncached() {
    let _shared = shared();
    let s = bucket("t-large");
    let data = pattern(3 << 20);
    s.put("big.ckpt", &data).unwrap();
    let src = open_url("s3://t-large/big.ckpt").unwrap();
    assert_eq!(src.len(), data.len() as u64);
    assert_eq!(gets(&s).len(), 2);
    // Head and tail are cached.
    assert_eq!(read(&*src, 100, 1000), &data[100..1100]);
    let tail = data.len() - 30_000;
    assert_eq!(read(&*src, tail as u64, 30_000), &data[tail..]);
    assert_eq!(gets(&s).len(), 2);
    // A miss of 100 bytes fetches 16 KiB from there, with If-Match.
    assert_eq!(read(&*src, 1_000_000, 100), &data[1_000_000..1_000_100]);
    let log = gets(&s);
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[2].range, "bytes=1000000-1016383");
    assert!(log[2].if_match);
    assert_eq!(read(&*src, 1_010_000, 6000), &data[1_010_000..1_016_000]);
    assert_eq!(gets(&s).len(), 3, "served by the read-ahead");
    // A read straddling cached and missing bytes fetches from the first missing byte.
    assert_eq!(read(&*src, 1_016_000, 1000), &data[1_016_000..1_017_000]);
    let log = gets(&s);
    assert_eq!(log[3].range, "bytes=1016384-1032767", "{log:?}");
    // 1 MiB and more: one GET each, not cached.
    let big = read(&*src, 1 << 20, 3 << 19);
    assert_eq!(big, &data[1 << 20..(1 << 20) + (3 << 19)]);
    let _ = read(&*src, 1 << 20, 3 << 19);
    let log = gets(&s);
    assert_eq!(log.len(), 6, "{log:?}");
    assert_eq!(
        log[4].range,
        format!("bytes={}-{}", 1 << 20, (1 << 20) + (3 << 19) - 1)
    );
    assert!(log[4].if_match && log[5].if_match);
}

#[test]
fn listing_stat_and_open_known_make_no_more_requests_than_needed() {
    let _shared = shared();
    let s = bucket("t-list");
    let data = pattern(400_000);
    s.put("runs/a/last.ckpt", &data).unwrap();
    s.put("runs/a/hparams.yaml", b"lr: 0.1\n").unwrap();
    s.put("runs/a/sub/x.bin", b"x").unwrap();
    s.put("runs/b/y.bin", b"y").unwrap();
    s.put("top.txt", b"t").unwrap();

    let l = read_dir(&url("s3://t-list/runs/a")).unwrap();
    assert!(l.complete);
    let got: Vec<(PathBuf, Kind)> = l.entries.iter().map(|e| (e.path.clone(), e.kind)).collect();
    assert_eq!(
        got,
        vec![
            (PathBuf::from("s3://t-list/runs/a/hparams.yaml"), Kind::File),
            (PathBuf::from("s3://t-list/runs/a/last.ckpt"), Kind::File),
            (PathBuf::from("s3://t-list/runs/a/sub"), Kind::Dir),
        ]
    );
    let ck = &l.entries[1];
    let id = ck.identity.clone().unwrap();
    assert_eq!(id.size, 400_000);
    assert!(id.etag.as_deref().is_some_and(|e| e.starts_with('"')));
    assert!(id.mtime_ns > 0 && id.version != 0);
    assert!(!ck.symlink && l.entries[2].identity.is_none());
    assert_eq!(s.count("LIST"), 1);

    // stat of the listed entries: no request.
    let st = stat(&url("s3://t-list/runs/a/last.ckpt")).unwrap();
    assert_eq!((st.kind, &st.identity), (Kind::File, &id));
    assert_eq!(
        stat(&url("s3://t-list/runs/a/sub")).unwrap().kind,
        Kind::Dir
    );
    let e = stat(&url("s3://t-list/runs/a/nothing")).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert!(e.to_string().contains("s3://t-list/runs/a/nothing"), "{e}");
    assert_eq!(s.count("LIST"), 1);
    // stat of the prefix itself lists its parent, once.
    assert_eq!(stat(&url("s3://t-list/runs/a")).unwrap().kind, Kind::Dir);
    assert_eq!(stat(&url("s3://t-list/runs/b")).unwrap().kind, Kind::Dir);
    assert_eq!(s.count("LIST"), 2);
    assert_eq!(stat(&url("s3://t-list")).unwrap().kind, Kind::Dir);
    let root = read_dir(&url("s3://t-list")).unwrap();
    assert_eq!(root.entries.len(), 2);
    assert_eq!(root.entries[1].path, Path::new("s3://t-list/top.txt"));
    assert_eq!(s.count("LIST"), 3);
    // A prefix nothing starts with is missing, as a local folder would be.
    let e = read_dir(&url("s3://t-list/runs/zz")).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert!(
        e.to_string()
            .contains("s3://t-list/runs/zz: no such prefix"),
        "{e}"
    );
    assert_eq!(s.count("LIST"), 4);
    s.reset();

    // open of a listed object: no request until the first read; with a hint, one round.
    let p = Path::new("s3://t-list/runs/a/last.ckpt");
    let src = open(&url("s3://t-list/runs/a/last.ckpt"), p, Some(&id)).unwrap();
    assert_eq!(gets(&s).len(), 0);
    let len = src.len();
    src.prefetch(&[0..65_536, len - 65_558..len]);
    let log = gets(&s);
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log.iter().all(|r| r.if_match));
    assert_eq!(read(&*src, len - 22, 22), &data[data.len() - 22..]);
    assert_eq!(read(&*src, 10, 60_000), &data[10..60_010]);
    assert_eq!(gets(&s).len(), 2);
    // open without identity finds it in the memoized listing (and the open object).
    let again = crate::open(p).unwrap();
    assert_eq!(again.identity(), &id);
    assert_eq!(read(&*again, 0, 100), &data[..100]);
    assert_eq!(gets(&s).len(), 2);
    // A prefix is not an object.
    let e = open_url("s3://t-list/runs/a/sub").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::IsADirectory);
    let e = crate::open(Path::new("s3://t-list/runs/a/sub")).unwrap_err();
    assert_eq!(e.to_string(), "not a regular file: a prefix (folder)");

    // read_small: the listing says it is too large without a request; a small one is one GET.
    let e = crate::read_small(p, 1000).unwrap_err();
    assert!(matches!(e, OpenError::TooLarge { limit: 1000 }), "{e}");
    assert_eq!(gets(&s).len(), 2);
    let y = crate::read_small_text(Path::new("s3://t-list/runs/a/hparams.yaml"), 1000).unwrap();
    assert_eq!(y, "lr: 0.1\n");
    let log = gets(&s);
    assert_eq!(log.len(), 3);
    assert_eq!(log[2].range, "", "whole object");
    assert!(log[2].if_match, "listed: conditional");
    let y2 = crate::read_small(Path::new("s3://t-list/runs/a/hparams.yaml"), 1000).unwrap();
    assert_eq!(y2, b"lr: 0.1\n");
    assert_eq!(gets(&s).len(), 3, "served by the open object");
}

#[test]
fn prefetch_coalesces_nearby_ranges_and_fetches_the_rest_in_parallel() {
    let _shared = shared();
    let s = bucket("t-prefetch");
    let data = pattern(2 << 20);
    s.put("k", &data).unwrap();
    let l = read_dir(&url("s3://t-prefetch")).unwrap();
    let id = l.entries[0].identity.clone().unwrap();
    let src = open(
        &url("s3://t-prefetch/k"),
        Path::new("s3://t-prefetch/k"),
        Some(&id),
    )
    .unwrap();
    src.prefetch(&[
        100_000..100_010,
        // 40 KB after the first: merged with it.
        140_000..140_100,
        // Far away: its own request.
        1_500_000..1_500_004,
        // Past the end: clipped.
        (2 << 20) - 4..(2 << 20) + 100,
    ]);
    let mut ranges: Vec<String> = gets(&s).into_iter().map(|r| r.range).collect();
    ranges.sort();
    assert_eq!(
        ranges,
        vec![
            "bytes=100000-140099".to_owned(),
            "bytes=1500000-1500003".to_owned(),
            format!("bytes={}-{}", (2 << 20) - 4, (2 << 20) - 1),
        ]
    );
    assert_eq!(read(&*src, 120_000, 20_000), &data[120_000..140_000]);
    assert_eq!(read(&*src, 1_500_000, 4), &data[1_500_000..1_500_004]);
    assert_eq!(gets(&s).len(), 3);
    // Already held: no request.
    src.prefetch(&[100_000..140_000, 100_000..100_001]);
    assert_eq!(gets(&s).len(), 3);
}

#[test]
fn an_object_replaced_while_open_is_reported_changed() {
    let _shared = shared();
    let s = bucket("t-changed");
    let data = pattern(500_000);
    s.put("run/last.ckpt", &data).unwrap();
    let src = open_url("s3://t-changed/run/last.ckpt").unwrap();
    let etag = src.identity().etag.clone().unwrap();
    s.put("run/last.ckpt", &pattern(500_001)[1..]).unwrap();
    // Cached bytes are still the version opened.
    assert_eq!(read(&*src, 0, 10), &data[..10]);
    let mut b = [0u8; 10];
    let e = src.read_exact_at(&mut b, 200_000).unwrap_err();
    assert!(is_changed(&e), "{e:?}");
    assert_eq!(e.kind(), CHANGED_KIND);
    assert_eq!(
        e.to_string(),
        format!(
            "s3://t-changed/run/last.ckpt changed while it was being read (listed with ETag {etag}); run again"
        )
    );
    assert!(gets(&s).last().is_some_and(|r| r.if_match));
    // A listing made before the change: open_known, then the read is refused as well.
    let s2 = bucket("t-changed2");
    s2.put("k", b"old").unwrap();
    let id = read_dir(&url("s3://t-changed2")).unwrap().entries[0]
        .identity
        .clone()
        .unwrap();
    s2.put("k", b"new").unwrap();
    let src = open(
        &url("s3://t-changed2/k"),
        Path::new("s3://t-changed2/k"),
        Some(&id),
    )
    .unwrap();
    let e = src.read_exact_at(&mut [0u8; 3], 0).unwrap_err();
    assert!(is_changed(&e), "{e}");
}

#[test]
fn empty_and_missing_objects() {
    let _shared = shared();
    let s = bucket("t-edge");
    s.put("empty", b"").unwrap();
    let src = open_url("s3://t-edge/empty").unwrap();
    assert_eq!(src.len(), 0);
    src.read_exact_at(&mut [], 0).unwrap();
    assert_eq!(
        src.read_exact_at(&mut [0u8; 1], 0).unwrap_err().kind(),
        io::ErrorKind::UnexpectedEof
    );
    assert_eq!(
        crate::read_small(Path::new("s3://t-edge/empty"), 10).unwrap(),
        b""
    );
    let e = open_url("s3://t-edge/nothing").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert!(
        e.to_string()
            .starts_with("s3://t-edge/nothing: GET bytes=-65558: "),
        "{e}"
    );
    let e = crate::read_small(Path::new("s3://t-edge/nothing"), 10).unwrap_err();
    assert!(
        matches!(&e, OpenError::Io(io) if io.kind() == io::ErrorKind::NotFound),
        "{e}"
    );
    let e = open_url("s3://t-edge").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::IsADirectory);
    assert_eq!(s.count("HEAD"), 0);
}

#[test]
fn readers_work_from_inside_another_runtime_and_forget_lists_again() {
    let _alone = GLOBAL.write().unwrap_or_else(|e| e.into_inner());
    let s = bucket("t-inside");
    s.put("d/k", TORCH_ZIP).unwrap();
    let outer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let n = outer.block_on(async {
        tokio::task::spawn_blocking(|| {
            let l = read_dir(&url("s3://t-inside/d")).unwrap();
            let src = open_url("s3://t-inside/d/k").unwrap();
            (l.entries.len(), read(&*src, 0, 4))
        })
        .await
        .unwrap()
    });
    assert_eq!(n, (1, TORCH_ZIP[..4].to_vec()));
    assert_eq!(s.count("LIST"), 1);
    read_dir(&url("s3://t-inside/d")).unwrap();
    assert_eq!(s.count("LIST"), 1, "memoized");
    crate::forget_listings();
    read_dir(&url("s3://t-inside/d")).unwrap();
    assert_eq!(s.count("LIST"), 2, "listed afresh");
}

// ---- object_store's S3 client over a fake HTTP service ----

#[derive(Debug, Default)]
struct Fake {
    /// The next this many requests answer 503 SlowDown.
    fail: AtomicUsize,
    calls: AtomicUsize,
    log: Mutex<Vec<String>>,
}

const BODY: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

#[derive(Debug)]
struct FakeService(Arc<Fake>);

#[async_trait::async_trait]
impl object_store::client::HttpService for FakeService {
    async fn call(
        &self,
        req: object_store::client::HttpRequest,
    ) -> Result<object_store::client::HttpResponse, object_store::client::HttpError> {
        use object_store::client::HttpResponseBody;
        let n = self.0.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let range = req
            .headers()
            .get("range")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let if_match = req
            .headers()
            .get("if-match")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.0
            .log
            .lock()
            .unwrap()
            .push(format!("{} {} {range}", req.method(), req.uri().path()));
        let b = ::http::Response::builder().header("x-amz-request-id", format!("FAKE{n}"));
        let failing = self
            .0
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| f.checked_sub(1))
            .is_ok();
        if failing {
            let body = "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
            return Ok(b
                .status(503)
                .body(HttpResponseBody::from(body.to_owned()))
                .unwrap());
        }
        if if_match.is_some_and(|m| m != "\"v1\"") {
            return Ok(b
                .status(412)
                .body(HttpResponseBody::from(
                    "<Error><Code>PreconditionFailed</Code></Error>".to_owned(),
                ))
                .unwrap());
        }
        if req.uri().path().ends_with("/secret") {
            return Ok(b
                .status(403)
                .body(HttpResponseBody::from(
                    "<Error><Code>AccessDenied</Code></Error>".to_owned(),
                ))
                .unwrap());
        }
        if req.uri().path().ends_with("/empty") {
            // S3 answers any range of an empty object with 416.
            let b = b
                .header("etag", "\"e0\"")
                .header("last-modified", "Mon, 30 Nov 2026 12:00:00 GMT");
            return Ok(if range.is_empty() {
                b.status(200).header("content-length", "0")
            } else {
                b.status(416)
            }
            .body(HttpResponseBody::from(
                if range.is_empty() {
                    ""
                } else {
                    "<Error><Code>InvalidRange</Code></Error>"
                }
                .to_owned(),
            ))
            .unwrap());
        }
        let size = BODY.len();
        let r = range.strip_prefix("bytes=").unwrap_or("");
        let (a, e) = if let Some(n) = r.strip_prefix('-') {
            let n: usize = n.parse().unwrap();
            (size.saturating_sub(n), size)
        } else if let Some((a, e)) = r.split_once('-') {
            let a: usize = a.parse().unwrap();
            let e: usize = e.parse::<usize>().unwrap().min(size - 1) + 1;
            (a, e)
        } else {
            (0, size)
        };
        let b = b
            .header("etag", "\"v1\"")
            .header("last-modified", "Mon, 30 Nov 2026 12:00:00 GMT")
            .header("content-length", (e - a).to_string());
        let b = if r.is_empty() {
            b.status(200)
        } else {
            b.status(206)
                .header("content-range", format!("bytes {a}-{}/{size}", e - 1))
        };
        Ok(
            b.body(HttpResponseBody::from(Bytes::copy_from_slice(&BODY[a..e])))
                .unwrap(),
        )
    }
}

#[derive(Debug)]
struct FakeConnector(Arc<Fake>);

impl object_store::client::HttpConnector for FakeConnector {
    fn connect(
        &self,
        _: &object_store::ClientOptions,
    ) -> object_store::Result<object_store::client::HttpClient> {
        Ok(object_store::client::HttpClient::new(FakeService(
            self.0.clone(),
        )))
    }
}

#[test]
fn s3_errors_name_object_request_status_code_request_id_and_retries() {
    let _shared = shared();
    let fake = Arc::new(Fake::default());
    let mut retry = store::retry_config();
    retry.max_retries = 2;
    retry.backoff.init_backoff = std::time::Duration::from_millis(1);
    retry.backoff.max_backoff = std::time::Duration::from_millis(2);
    let s3 = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("t-fake")
        .with_endpoint("http://fake.invalid")
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_retry(retry)
        .with_http_connector(http::CountingConnector(FakeConnector(fake.clone())))
        .build()
        .unwrap();
    register_store_for_tests(Scheme::S3, "t-fake", Arc::new(s3));
    let before = stats();

    // Two 503s are retried away.
    fake.fail.store(2, Ordering::SeqCst);
    let src = open_url("s3://t-fake/run/last.ckpt").unwrap();
    assert_eq!(src.len(), BODY.len() as u64);
    assert_eq!(src.identity().etag.as_deref(), Some("\"v1\""));
    assert_eq!(read(&*src, 3, 4), b"3456");
    let calls = fake.calls.load(Ordering::SeqCst);
    assert_eq!(calls, 4, "{:?}", fake.log.lock().unwrap());
    let after = stats();
    assert_eq!(after.get - before.get, 4);
    assert!(after.bytes - before.bytes >= 2 * BODY.len() as u64);

    // A store that keeps failing: the message names all of it.
    fake.fail.store(100, Ordering::SeqCst);
    let e = open_url("s3://t-fake/other.ckpt").unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with(
            "s3://t-fake/other.ckpt: GET bytes=-65558: 503 Service Unavailable (SlowDown), request id FAKE"
        ),
        "{text}"
    );
    assert!(text.ends_with(", after 2 retries"), "{text}");
    let r = remote_error(&e).unwrap();
    assert_eq!((r.status, r.retries), (Some(503), 2));
    fake.fail.store(0, Ordering::SeqCst);

    // 412 to If-Match: changed.
    let stale = Identity {
        size: BODY.len() as u64,
        mtime_ns: 1,
        version: 7,
        etag: Some("\"v0\"".into()),
    };
    let src = open(
        &url("s3://t-fake/k2"),
        Path::new("s3://t-fake/k2"),
        Some(&stale),
    )
    .unwrap();
    let e = src.read_exact_at(&mut [0u8; 2], 0).unwrap_err();
    assert!(is_changed(&e), "{e}");
    assert!(
        e.to_string()
            .contains("(listed with ETag \"v0\"); run again"),
        "{e}"
    );
}

/// Against a live S3-compatible server (moto): `CKPT_S3_TEST_ENDPOINT=http://127.0.0.1:P`,
/// `CKPT_S3_TEST_BUCKET` (an existing, writable bucket), and `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION` set. The real store is built from the environment and
/// [`configure`]'s endpoint, as the CLI builds it; the objects are written with a second client.
#[test]
#[ignore = "needs a live S3-compatible endpoint (CKPT_S3_TEST_ENDPOINT)"]
fn live_s3_endpoint_round_trip() {
    let _alone = GLOBAL.write().unwrap_or_else(|e| e.into_inner());
    let endpoint = std::env::var("CKPT_S3_TEST_ENDPOINT").unwrap();
    let bucket = std::env::var("CKPT_S3_TEST_BUCKET").unwrap();
    configure(Config {
        endpoint: Some(endpoint.clone()),
    });
    let writer: Arc<dyn object_store::ObjectStore> = Arc::new(
        object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(&bucket)
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .build()
            .unwrap(),
    );
    let put = |key: &str, bytes: Vec<u8>| {
        let (w, key) = (writer.clone(), object_store::path::Path::from(key));
        rt::run(async move {
            w.put_opts(&key, bytes.into(), Default::default())
                .await
                .map(|_| ())
                .map_err(io::Error::other)
        })
        .unwrap();
    };
    let data = pattern(300_000);
    put("live/run/last.ckpt", data.clone());
    put("live/run/hparams.yaml", b"lr: 1\n".to_vec());
    put("live/run/sub/x", b"x".to_vec());
    put("live/empty", Vec::new());
    let s0 = stats();

    let u = |k: &str| url(&format!("s3://{bucket}/{k}"));
    let src = open(&u("live/run/last.ckpt"), Path::new("x"), None).unwrap();
    assert_eq!(src.len(), 300_000);
    assert!(src.identity().etag.is_some());
    let s1 = stats();
    assert_eq!(s1.get - s0.get, 2, "round 1");
    assert_eq!(read(&*src, 299_978, 22), &data[299_978..]);
    assert_eq!(read(&*src, 150_000, 100), &data[150_000..150_100]);
    src.prefetch(&[200_000..200_010, 210_000..210_010]);
    assert_eq!(read(&*src, 200_000, 10_010), &data[200_000..210_010]);
    let s2 = stats();
    assert_eq!(s2.get - s1.get, 2, "one miss, one coalesced prefetch");
    assert!(s2.bytes - s0.bytes >= 65_536 + 65_558 + 16_384);

    let l = read_dir(&u("live/run")).unwrap();
    let kinds: Vec<_> = l.entries.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![Kind::File, Kind::File, Kind::Dir]);
    assert_eq!(stats().list - s2.list, 1);
    let st = stat(&u("live/run/last.ckpt")).unwrap();
    assert_eq!(st.identity.size, 300_000);
    assert!(
        st.identity
            .etag
            .as_deref()
            .zip(src.identity().etag.as_deref())
            .is_some_and(|(a, b)| a.trim_matches('"') == b.trim_matches('"')),
        "{:?} {:?}",
        st.identity,
        src.identity()
    );
    assert_eq!(
        crate::read_small_text(
            Path::new(&format!("s3://{bucket}/live/run/hparams.yaml")),
            100
        )
        .unwrap(),
        "lr: 1\n"
    );
    let e = open(&u("live/nothing"), Path::new("x"), None).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("404"), "{e}");
    eprintln!("{e}");
    let empty = open(&u("live/empty"), Path::new("x"), None).unwrap();
    assert_eq!(empty.len(), 0);

    // Replaced after it was listed: the conditional read is refused.
    put("live/run/last.ckpt", pattern(300_001)[1..].to_vec());
    let fresh = open(&u("live/run/last.ckpt"), Path::new("x"), Some(&st.identity)).unwrap();
    let e = fresh.read_exact_at(&mut [0u8; 10], 100_000).unwrap_err();
    assert!(is_changed(&e), "{e}");
    eprintln!("{e}");
    eprintln!("{}", format_stats(stats()));
}

#[test]
fn a_server_that_is_not_there_fails_quickly_naming_the_request() {
    let _shared = shared();
    let mut retry = store::retry_config();
    retry.max_retries = 1;
    retry.backoff.init_backoff = std::time::Duration::from_millis(1);
    let s3 = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("t-dead")
        // Port 1 on loopback: connection refused at once.
        .with_endpoint("http://127.0.0.1:1")
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_retry(retry)
        .with_http_connector(http::CountingConnector(
            object_store::client::ReqwestConnector::default(),
        ))
        .build()
        .unwrap();
    register_store_for_tests(Scheme::S3, "t-dead", Arc::new(s3));
    let t = std::time::Instant::now();
    let e = open_url("s3://t-dead/run/last.ckpt").unwrap_err();
    assert!(t.elapsed() < std::time::Duration::from_secs(10));
    let text = e.to_string();
    assert!(
        text.starts_with("s3://t-dead/run/last.ckpt: GET bytes=-65558: "),
        "{text}"
    );
    assert!(text.ends_with(", after 1 retry"), "{text}");
    assert!(text.contains(": cannot connect: "), "{text}");
    assert!(remote_error(&e).is_some_and(|r| r.status.is_none()));
    eprintln!("{text}");
}

//! The catalog over a bucket, without a server: object_store's `InMemory` store registered for
//! `s3://ckpt-c-…` through ckpt-io's test hook, counting what is asked of it.
//!
//! What is pinned here is the walk, the keys and fingerprints from listings, the consulted
//! reads of run folders (`hparams.yaml`, `metrics.csv`) and the cache: an unchanged bucket is
//! catalogued again with LISTs only, a changed object is read again, and a prefix whose
//! listing fails keeps its cached rows. (Reading the checkpoints themselves by ranges is
//! ckpt-torch's; the end-to-end tests against a server are in crates/ckpt/tests.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ckpt_catalog::catalog::{Catalog, Options, build};
use ckpt_io::remote::testing::CountingStore;
use futures_util::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path as OsPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt as _, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// A store whose LIST of one prefix fails (as a page of a real listing can).
#[derive(Debug)]
struct FailingList {
    inner: Arc<InMemory>,
    fail: Mutex<Option<String>>,
}

impl fmt::Display for FailingList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FailingList({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for FailingList {
    async fn put_opts(&self, l: &OsPath, p: PutPayload, o: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(l, p, o).await
    }
    async fn put_multipart_opts(
        &self,
        l: &OsPath,
        o: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(l, o).await
    }
    async fn get_opts(&self, l: &OsPath, o: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(l, o).await
    }
    async fn get_ranges(&self, l: &OsPath, r: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(l, r).await
    }
    fn delete_stream(
        &self,
        l: BoxStream<'static, Result<OsPath>>,
    ) -> BoxStream<'static, Result<OsPath>> {
        self.inner.delete_stream(l)
    }
    fn list(&self, prefix: Option<&OsPath>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&OsPath>) -> Result<ListResult> {
        let failing = self.fail.lock().unwrap().clone();
        if failing.is_some() && prefix.map(|p| p.to_string()) == failing {
            return Err(object_store::Error::Generic {
                store: "test",
                source: "503 Service Unavailable (SlowDown)".into(),
            });
        }
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &OsPath, to: &OsPath, o: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, o).await
    }
}

/// A bucket of its own for one test: the counting store, and the failing layer under it.
struct Bucket {
    name: String,
    counting: Arc<CountingStore>,
    failing: Arc<FailingList>,
}

impl Bucket {
    fn new(name: &str) -> Bucket {
        let failing = Arc::new(FailingList {
            inner: Arc::new(InMemory::new()),
            fail: Mutex::new(None),
        });
        let counting = CountingStore::new(failing.clone());
        ckpt_io::remote::register_store_for_tests(ckpt_io::Scheme::S3, name, counting.clone());
        Bucket {
            name: name.to_owned(),
            counting,
            failing,
        }
    }

    fn url(&self, key: &str) -> PathBuf {
        PathBuf::from(format!("s3://{}/{key}", self.name))
    }

    fn put(&self, key: &str, bytes: &[u8]) {
        CountingStore::put(&self.counting, key, bytes).unwrap();
    }

    fn delete(&self, key: &str) {
        let inner = self.failing.inner.clone();
        let key = OsPath::from(key);
        ckpt_io::remote::rt::run(
            async move { inner.delete(&key).await.map_err(std::io::Error::other) },
        )
        .unwrap();
    }

    fn fail_listing_of(&self, prefix: Option<&str>) {
        *self.failing.fail.lock().unwrap() = prefix.map(str::to_owned);
    }
}

/// A Lightning-shaped run folder, on disk under `dir` and in `bucket` under the same keys.
fn tree(dir: &Path, bucket: &Bucket) {
    std::fs::create_dir_all(dir).unwrap();
    let ckpt = {
        let p = dir.join("proto.ckpt");
        ckpt_test_support::write_lightning_checkpoint(
            &p,
            &ckpt_test_support::model_tensors(2, 4096),
        )
        .unwrap();
        let b = std::fs::read(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        b
    };
    let files: Vec<(&str, Vec<u8>)> = vec![
        (
            "runs/exp1/version_0/hparams.yaml",
            b"lr: 0.001\nbatch_size: 32\n".to_vec(),
        ),
        (
            "runs/exp1/version_0/metrics.csv",
            b"epoch,step,val_loss\n0,99,0.5\n1,199,0.25\n".to_vec(),
        ),
        (
            "runs/exp1/version_0/checkpoints/epoch=0-step=100.ckpt",
            ckpt.clone(),
        ),
        (
            "runs/exp1/version_0/checkpoints/epoch=1-step=200.ckpt",
            ckpt.clone(),
        ),
        ("runs/exp2/version_0/hparams.yaml", b"lr: 0.01\n".to_vec()),
        ("runs/exp2/version_0/checkpoints/last.ckpt", ckpt),
        ("runs/notes.txt", b"not a checkpoint\n".to_vec()),
    ];
    for (k, b) in files {
        let p = dir.join(k);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &b).unwrap();
        bucket.put(k, &b);
    }
}

fn catalog(root: &Path, cache: Option<&Path>) -> Catalog {
    build(
        &[root.to_path_buf()],
        &Options {
            cache: cache.map(Path::to_path_buf),
            ..Options::default()
        },
    )
    .unwrap()
}

/// (path below the root, size, experiment, run, hparams as JSON) of each entry.
type Row = (String, u64, Option<String>, Option<String>, String);

fn rows(c: &Catalog, base: &Path) -> Vec<Row> {
    let base = base.display().to_string();
    c.entries
        .iter()
        .map(|e| {
            (
                e.path.strip_prefix(&base).unwrap().to_owned(),
                e.size_bytes,
                e.experiment.clone(),
                e.run.clone(),
                serde_json::to_string(&*e.hparams).unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_bucket_is_walked_and_its_run_folders_read_like_the_same_tree_on_disk() {
    let d = tempfile::tempdir().unwrap();
    let bucket = Bucket::new("ckpt-c-same");
    tree(d.path(), &bucket);
    let local = catalog(&d.path().join("runs"), None);
    let remote = catalog(&bucket.url("runs"), None);
    let local_rows = rows(&local, &d.path().join("runs"));
    let remote_rows = rows(&remote, &bucket.url("runs"));
    assert_eq!(local_rows.len(), 3, "{local_rows:?}");
    assert_eq!(remote_rows, local_rows);
    assert!(remote.incomplete.is_empty(), "{:?}", remote.warnings);
    // `batch_size` is in hparams.yaml only (the checkpoint's own hyper_parameters win for
    // the rest): read from the bucket.
    assert!(
        remote_rows[0].4.contains(r#""batch_size":32"#),
        "{}",
        remote_rows[0].4
    );
    // Every object was read with the identity its listing gave: no HEAD.
    assert_eq!(
        bucket.counting.count("HEAD"),
        0,
        "{:?}",
        bucket.counting.log()
    );
}

#[test]
fn an_unchanged_bucket_is_catalogued_again_with_listings_only() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache.sqlite3");
    let bucket = Bucket::new("ckpt-c-unchanged");
    tree(&d.path().join("t"), &bucket);
    let root = bucket.url("runs");
    let first = catalog(&root, Some(&cache));
    assert_eq!(first.stats.candidates, 3);
    // Every object (checkpoints, hparams.yaml, metrics.csv) was read as its listing gave it:
    // conditional on that ETag, and without a HEAD to learn it.
    let log = bucket.counting.log();
    let gets: Vec<_> = log.iter().filter(|r| r.method == "GET").collect();
    assert!(!gets.is_empty());
    assert!(gets.iter().all(|r| r.if_match), "{gets:?}");
    assert_eq!(bucket.counting.count("HEAD"), 0, "{log:?}");
    bucket.counting.reset();
    let again = catalog(&root, Some(&cache));
    assert_eq!(again.stats.reused, 3, "{:?}", again.warnings);
    let log = bucket.counting.log();
    assert_eq!(bucket.counting.count("GET"), 0, "{log:?}");
    assert_eq!(bucket.counting.count("HEAD"), 0, "{log:?}");
    assert!(bucket.counting.count("LIST") > 0, "{log:?}");
    assert_eq!(
        serde_json::to_string(&again.entries).unwrap(),
        serde_json::to_string(&first.entries).unwrap()
    );
    // A run folder's file replaced: its entries are resolved again (and read it), the other
    // run's are served as they were.
    bucket.put(
        "runs/exp2/version_0/hparams.yaml",
        b"lr: 0.01\nbatch_size: 64\n",
    );
    bucket.counting.reset();
    let changed = catalog(&root, Some(&cache));
    assert_eq!(changed.stats.reused, 2, "{:?}", changed.warnings);
    assert!(bucket.counting.count("GET") > 0);
    let e = changed
        .entries
        .iter()
        .find(|e| e.path.ends_with("last.ckpt"))
        .unwrap();
    assert_eq!(e.hparams.get("batch_size"), Some(&serde_json::json!(64)));
}

#[test]
fn a_prefix_whose_listing_fails_keeps_its_rows_and_the_run_is_incomplete() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache.sqlite3");
    let bucket = Bucket::new("ckpt-c-partial");
    tree(&d.path().join("t"), &bucket);
    let root = bucket.url("runs");
    assert_eq!(catalog(&root, Some(&cache)).stats.candidates, 3);
    bucket.fail_listing_of(Some("runs/exp2"));
    let partial = catalog(&root, Some(&cache));
    assert_eq!(partial.stats.candidates, 2);
    assert_eq!(partial.incomplete, vec![root.clone()]);
    let want = format!("listing of {}/exp2/ incomplete: ", root.display());
    assert!(
        partial.warnings.iter().any(|w| w.starts_with(&want)),
        "{:?}",
        partial.warnings
    );
    assert_eq!(
        partial.stats.forgotten, 0,
        "what was not listed is not gone"
    );
    // Listed again in full: everything is still in the cache.
    bucket.fail_listing_of(None);
    let whole = catalog(&root, Some(&cache));
    assert_eq!(whole.stats.reused, 3, "{:?}", whole.warnings);
    assert!(whole.incomplete.is_empty());
    // An object really gone is forgotten, as a deleted file is.
    bucket.delete("runs/exp2/version_0/checkpoints/last.ckpt");
    let after = catalog(&root, Some(&cache));
    assert_eq!(after.stats.candidates, 2);
    assert_eq!(after.stats.forgotten, 1);
}

/// Not a check: the requests of one cold catalog of the tree, for the report
/// (`cargo test -p ckpt-catalog --test bucket -- --ignored --nocapture`).
#[test]
#[ignore]
fn requests_of_a_cold_catalog() {
    let d = tempfile::tempdir().unwrap();
    let bucket = Bucket::new("ckpt-c-count");
    tree(d.path(), &bucket);
    let c = catalog(&bucket.url("runs"), None);
    for r in bucket.counting.log() {
        eprintln!("{} {} {} if_match={}", r.method, r.key, r.range, r.if_match);
    }
    eprintln!(
        "{} entries: {} GET, {} LIST, {} HEAD",
        c.entries.len(),
        bucket.counting.count("GET"),
        bucket.counting.count("LIST"),
        bucket.counting.count("HEAD")
    );
}

//! For tests without a server: a store that counts what is asked of another store.
//!
//! Wrap `object_store::memory::InMemory` in a [`CountingStore`], register it for a bucket
//! ([`super::register_store_for_tests`]) and read `s3://that-bucket/…` through ckpt_io as usual;
//! [`CountingStore::log`] says which requests were made (the HTTP counters of
//! [`super::stats`] see nothing, there is no HTTP).

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// One request made of a [`CountingStore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `HEAD` or `LIST`.
    pub method: &'static str,
    /// The key (the prefix, for `LIST`).
    pub key: String,
    /// `bytes=a-b`, `bytes=-n`, or empty for a whole object.
    pub range: String,
    /// Whether it carried `If-Match`.
    pub if_match: bool,
}

/// A store that records the requests made of `inner`.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    log: Mutex<Vec<Request>>,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Arc<CountingStore> {
        Arc::new(CountingStore {
            inner,
            log: Mutex::new(Vec::new()),
        })
    }

    /// The requests so far.
    pub fn log(&self) -> Vec<Request> {
        self.log.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// A new in-memory bucket `scheme://name`, counted and registered: URLs of it now read
    /// from memory (see [`super::register_store_for_tests`]).
    pub fn bucket(scheme: crate::Scheme, name: &str) -> Arc<CountingStore> {
        let s = CountingStore::new(Arc::new(object_store::memory::InMemory::new()));
        super::register_store_for_tests(scheme, name, s.clone());
        s
    }

    /// Upload the files under the local folder `dir` to `prefix/…` (test setup, not logged;
    /// symlinks followed, other non-files skipped). Returns how many objects were written.
    pub fn put_tree(&self, prefix: &str, dir: &std::path::Path) -> std::io::Result<usize> {
        let mut n = 0;
        let mut stack = vec![(dir.to_path_buf(), prefix.trim_matches('/').to_owned())];
        while let Some((d, p)) = stack.pop() {
            for e in std::fs::read_dir(&d)? {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                let key = if p.is_empty() {
                    name
                } else {
                    format!("{p}/{name}")
                };
                let m = std::fs::metadata(e.path())?;
                if m.is_dir() {
                    stack.push((e.path(), key));
                } else if m.is_file() {
                    self.put(&key, &std::fs::read(e.path())?)?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// How many requests of `method` so far.
    pub fn count(&self, method: &str) -> usize {
        self.log().iter().filter(|r| r.method == method).count()
    }

    /// Forget the log.
    pub fn reset(&self) {
        if let Ok(mut g) = self.log.lock() {
            g.clear();
        }
    }

    fn note(&self, r: Request) {
        if let Ok(mut g) = self.log.lock() {
            g.push(r);
        }
    }

    /// Put `bytes` at `key` in the inner store (test setup; not logged).
    pub fn put(&self, key: &str, bytes: &[u8]) -> std::io::Result<()> {
        let inner = self.inner.clone();
        let key = Path::from(key);
        let payload = PutPayload::from(Bytes::copy_from_slice(bytes));
        super::rt::run(async move {
            inner
                .put_opts(&key, payload, PutOptions::default())
                .await
                .map(|_| ())
                .map_err(std::io::Error::other)
        })
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountingStore({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.note(Request {
            method: if options.head { "HEAD" } else { "GET" },
            key: location.to_string(),
            range: options
                .range
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_default(),
            if_match: options.if_match.is_some(),
        });
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        for r in ranges {
            self.note(Request {
                method: "GET",
                key: location.to_string(),
                range: format!("bytes={}-{}", r.start, r.end.saturating_sub(1)),
                if_match: false,
            });
        }
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.note(Request {
            method: "LIST",
            key: prefix.map(|p| p.to_string()).unwrap_or_default(),
            range: String::new(),
            if_match: false,
        });
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.note(Request {
            method: "LIST",
            key: prefix.map(|p| p.to_string()).unwrap_or_default(),
            range: String::new(),
            if_match: false,
        });
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

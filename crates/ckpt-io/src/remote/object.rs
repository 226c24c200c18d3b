//! One object read by byte ranges: [`RemoteObject`], a [`ByteSource`] with a block cache.
//!
//! - A read served from cached blocks makes no request. A miss fetches from the first missing
//!   byte to the last, at least [`READ_AHEAD`] bytes (zip local headers and pickles are read
//!   in many small pieces that follow each other).
//! - [`ByteSource::prefetch`] fetches the missing parts of the hinted ranges at once, merging
//!   parts less than [`COALESCE_GAP`] apart (a gap costs less than another round trip), the
//!   merged requests in parallel. Prefetched blocks are pinned: they do not count against the
//!   cache's cap ([`CACHE_CAP`]) and are not evicted (up to [`PIN_CAP`] per object).
//! - Reads of [`STREAM_MIN`] or more (tensor data for convert, hash, dump) are not cached: one
//!   GET each, straight to the caller.
//! - Once the object's identity is known, every GET carries `If-Match: <ETag>`: an object
//!   replaced meanwhile is reported as changed ([`super::RemoteErrorKind::Changed`]), never read
//!   half old, half new.
//!
//! Opening an object whose identity is not known (no listing) costs one round of two parallel
//! GETs that a zip reader needs anyway: the last [`TAIL`] bytes (a suffix range, whose answer
//! also gives the size, ETag and Last-Modified) and the first [`HEAD`] bytes. An object small
//! enough is then wholly in memory. An empty object answers ranges with 416; it is asked for
//! with a HEAD instead.
//!
//! Objects stay open in a small process-wide LRU ([`LRU_CAP`], keyed by URL and ETag), so a
//! reader that opens the same path again reuses the blocks; [`crate::forget_listings`] empties it.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt as _;
use object_store::path::Path as OsPath;
use object_store::{GetOptions, GetRange, ObjectMeta, ObjectStore};

use super::http::{Trace, traced};
use super::{RemoteError, RemoteErrorKind, listing, rt, store};
use crate::{ByteSource, Identity, Kind, OpenError, RemoteUrl};

/// The tail read on open: the end-of-central-directory record with the longest comment (22 +
/// 65535) plus the ZIP64 locator… rounded to what a zip reader asks first (64 KiB + 22).
pub const TAIL: u64 = 65_536 + 22;
/// The head read on open: a torch zip's first entries (data.pkl of most checkpoints). The
/// same as the readers' head hint (ckpt-torch `HEAD_HINT`): 128 KiB holds the pickle of a
/// Lightning checkpoint of a few hundred tensors with their optimizer state (the 500 MB bench
/// checkpoint's is 75 KB), so its remainder costs no extra GET; head + tail + scores stay
/// under 0.05 % of a 500 MB object (208 KiB).
pub const HEAD: u64 = 128 << 10;
/// The least a cache miss fetches.
pub const READ_AHEAD: u64 = 16 * 1024;
/// Parts of a prefetch closer than this are fetched in one request.
pub const COALESCE_GAP: u64 = 64 * 1024;
/// Reads this large go uncached, one GET each.
pub const STREAM_MIN: usize = 1024 * 1024;
/// Cached bytes per object, not counting prefetched ones.
pub const CACHE_CAP: usize = 8 * 1024 * 1024;
/// Prefetched (pinned) bytes per object at most; hints beyond it are ignored.
pub const PIN_CAP: usize = 64 * 1024 * 1024;
/// Objects kept open process-wide.
pub const LRU_CAP: usize = 64;
/// Parallel requests of one prefetch.
const PREFETCH_WIDTH: usize = 10;

/// FNV-1a, the identity's `version` of an ETag or version id (as the catalog's cache keys
/// hash inodes: clamped away from 0, which means unknown, and from `u64::MAX`).
pub fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.clamp(1, u64::MAX - 1)
}

/// An object's identity from the metadata of a listing or a response.
pub fn identity_of(meta: &ObjectMeta) -> Identity {
    let t = meta.last_modified;
    let mtime_ns = t
        .timestamp()
        .saturating_mul(1_000_000_000)
        .saturating_add(i64::from(t.timestamp_subsec_nanos()));
    let version = meta
        .version
        .as_deref()
        .or(meta.e_tag.as_deref())
        .map_or(0, fnv);
    Identity {
        size: meta.size,
        mtime_ns,
        version,
        etag: meta.e_tag.clone(),
    }
}

/// The object_store path of a key; keys it cannot hold (`..` segments) are refused.
pub fn os_path(url: &RemoteUrl) -> io::Result<OsPath> {
    OsPath::parse(&url.key).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{url}: not a key object storage can address: {e}"),
        )
    })
}

/// `bytes=a-b` as in the Range header.
fn range_text(r: &GetRange) -> String {
    r.to_string()
}

/// Turn a failed request into the `io::Error` carrying a [`RemoteError`].
pub fn request_error(
    url: &RemoteUrl,
    request: String,
    e: &object_store::Error,
    trace: &Trace,
    etag: Option<&str>,
) -> io::Error {
    let kind = match e {
        object_store::Error::NotFound { .. } => RemoteErrorKind::NotFound,
        object_store::Error::Precondition { .. } => RemoteErrorKind::Changed {
            etag: etag.unwrap_or("?").to_owned(),
        },
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => RemoteErrorKind::Denied {
            chain: store::chain(url.scheme),
        },
        _ if trace.status == Some(412) => RemoteErrorKind::Changed {
            etag: etag.unwrap_or("?").to_owned(),
        },
        // No credentials were found: the status traced is the last place asked (the
        // instance metadata service answering 403, say), not the store's answer.
        _ if getting_credentials(e) => RemoteErrorKind::Denied {
            chain: store::chain(url.scheme),
        },
        _ => RemoteErrorKind::Other,
    };
    let request = if getting_credentials(e) {
        format!("{request} (getting credentials)")
    } else {
        request
    };
    let failed_status = trace.status.filter(|s| !(200..300).contains(s));
    RemoteError {
        url: url.to_string(),
        request,
        kind,
        status: failed_status,
        code: trace.code.clone(),
        request_id: trace.request_id.clone(),
        retries: trace.attempts.saturating_sub(1),
        detail: failed_status.is_none().then(|| innermost(e)),
    }
    .into_io()
}

/// Whether `e` (or a cause of it) is object_store failing to get credentials: its own words,
/// or a request to the instance metadata service or the container credentials endpoint (the
/// last link of the chain, tried when nothing else gave credentials).
fn getting_credentials(e: &object_store::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(x) = cur {
        let t = x.to_string().to_ascii_lowercase();
        if [
            "credential",
            "169.254.169.254",
            "169.254.170.2",
            "/latest/api/token",
        ]
        .iter()
        .any(|m| t.contains(m))
        {
            return true;
        }
        cur = x.source();
    }
    false
}

/// What went wrong when there was no HTTP status to show: for a transport failure, its kind
/// and the innermost cause ("cannot connect: Connection refused (os error 111)"), not
/// object_store's retry narrative; otherwise object_store's message with its sources.
fn innermost(e: &object_store::Error) -> String {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut http: Option<HttpErrorKind> = None;
    let mut deepest: Option<String> = None;
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        if let Some(h) = x.downcast_ref::<HttpError>() {
            http = Some(h.kind());
        }
        deepest = Some(x.to_string());
        src = x.source();
    }
    if let (Some(kind), Some(cause)) = (http, &deepest) {
        let what = match kind {
            HttpErrorKind::Connect => "cannot connect",
            HttpErrorKind::Timeout => "timed out",
            HttpErrorKind::Interrupted => "connection interrupted",
            HttpErrorKind::Decode => "bad response body",
            HttpErrorKind::Request => "request failed",
            _ => "HTTP error",
        };
        return format!("{what}: {cause}");
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        let t = x.to_string();
        if !s.contains(&t) {
            s = format!("{s}: {t}");
        }
        src = x.source();
    }
    s
}

/// One GET (or HEAD), holding a slot of the in-flight bound until the body is read.
async fn get(
    store: Arc<dyn ObjectStore>,
    loc: OsPath,
    range: Option<GetRange>,
    if_match: Option<String>,
    head: bool,
) -> (object_store::Result<(ObjectMeta, Range<u64>, Bytes)>, Trace) {
    let _permit = rt::permit().await;
    traced(async move {
        let opts = GetOptions {
            range,
            if_match,
            head,
            ..Default::default()
        };
        let r = store.get_opts(&loc, opts).await?;
        let meta = r.meta.clone();
        let range = r.range.clone();
        let bytes = if head { Bytes::new() } else { r.bytes().await? };
        Ok((meta, range, bytes))
    })
    .await
}

/// An ETag as `If-Match` wants it: quoted (some listings give it bare).
fn quoted(etag: &str) -> String {
    if etag.starts_with('"') || etag.starts_with("W/") {
        etag.to_owned()
    } else {
        format!("\"{etag}\"")
    }
}

fn same_etag(a: &str, b: &str) -> bool {
    a.trim_matches('"') == b.trim_matches('"')
}

struct Block {
    data: Bytes,
    pinned: bool,
    used: u64,
}

/// Cached blocks of one object: non-overlapping, keyed by their first byte.
#[derive(Default)]
struct Cache {
    blocks: BTreeMap<u64, Block>,
    loose: usize,
    pinned: usize,
    tick: u64,
}

impl Cache {
    /// The parts of `r` no block holds.
    fn missing(&self, r: Range<u64>) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        let mut p = r.start;
        if let Some((&s, b)) = self.blocks.range(..=p).next_back() {
            p = p.max(s + b.data.len() as u64);
        }
        for (&s, b) in self.blocks.range(r.start..r.end) {
            if s > p {
                out.push(p..s);
            }
            p = p.max(s + b.data.len() as u64);
            if p >= r.end {
                break;
            }
        }
        if p < r.end {
            out.push(p..r.end);
        }
        out
    }

    /// Store `data` (the bytes from `start`), the parts not already held.
    fn insert(&mut self, start: u64, data: &Bytes, pinned: bool) {
        let end = start + data.len() as u64;
        self.tick += 1;
        for gap in self.missing(start..end) {
            let a = (gap.start - start) as usize;
            let b = (gap.end - start) as usize;
            let piece = data.slice(a..b);
            if pinned {
                self.pinned += piece.len();
            } else {
                self.loose += piece.len();
            }
            self.blocks.insert(
                gap.start,
                Block {
                    data: piece,
                    pinned,
                    used: self.tick,
                },
            );
        }
    }

    /// Mark the blocks under `r` as just used.
    fn touch(&mut self, r: Range<u64>) {
        self.tick += 1;
        let t = self.tick;
        let first = self
            .blocks
            .range(..=r.start)
            .next_back()
            .map_or(r.start, |(&s, _)| s);
        for (_, b) in self.blocks.range_mut(first..r.end) {
            b.used = t;
        }
    }

    /// Drop the least recently used unpinned blocks until under [`CACHE_CAP`].
    fn evict(&mut self) {
        while self.loose > CACHE_CAP {
            let victim = self
                .blocks
                .iter()
                .filter(|(_, b)| !b.pinned)
                .min_by_key(|(_, b)| b.used)
                .map(|(&s, _)| s);
            let Some(s) = victim else { break };
            if let Some(b) = self.blocks.remove(&s) {
                self.loose -= b.data.len();
            }
        }
    }

    /// Copy `buf.len()` bytes from `off`, which the caller checked are all held.
    fn copy(&self, buf: &mut [u8], off: u64) -> bool {
        let end = off + buf.len() as u64;
        let mut p = off;
        while p < end {
            let Some((&s, b)) = self.blocks.range(..=p).next_back() else {
                return false;
            };
            let bend = s + b.data.len() as u64;
            if bend <= p {
                return false;
            }
            let n = (bend.min(end) - p) as usize;
            let from = (p - s) as usize;
            let to = (p - off) as usize;
            buf[to..to + n].copy_from_slice(&b.data[from..from + n]);
            p += n as u64;
        }
        true
    }
}

/// An object in a bucket as a [`ByteSource`]; see the module docs.
pub struct RemoteObject {
    path: PathBuf,
    url: RemoteUrl,
    store: Arc<dyn ObjectStore>,
    loc: OsPath,
    id: Identity,
    cache: Mutex<Cache>,
    /// Reads that failed for a reason outside the object's bytes (a request that failed,
    /// the object replaced): see [`ByteSource::failed_reads`].
    failed: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for RemoteObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteObject")
            .field("url", &self.url.to_string())
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl RemoteObject {
    fn new(url: &RemoteUrl, store: Arc<dyn ObjectStore>, loc: OsPath, id: Identity) -> Self {
        RemoteObject {
            path: url.to_path(),
            url: url.clone(),
            store,
            loc,
            id,
            cache: Mutex::new(Cache::default()),
            failed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn lock(&self) -> io::Result<std::sync::MutexGuard<'_, Cache>> {
        self.cache
            .lock()
            .map_err(|_| io::Error::other("a remote object's cache was poisoned by a panic"))
    }

    fn if_match(&self) -> Option<String> {
        self.id.etag.as_deref().map(quoted)
    }

    /// The bytes `r` (inside the object), with `If-Match`, checked against the identity.
    fn fetch(&self, r: Range<u64>) -> io::Result<Bytes> {
        let want = GetRange::Bounded(r.clone());
        let request = format!("GET {}", range_text(&want));
        let (store, loc, if_match) = (self.store.clone(), self.loc.clone(), self.if_match());
        let (res, trace) =
            rt::run(async move { Ok(get(store, loc, Some(want), if_match, false).await) })?;
        self.checked(res, &trace, request, r)
    }

    fn checked(
        &self,
        res: object_store::Result<(ObjectMeta, Range<u64>, Bytes)>,
        trace: &Trace,
        request: String,
        r: Range<u64>,
    ) -> io::Result<Bytes> {
        let (meta, got, bytes) = res.map_err(|e| {
            request_error(
                &self.url,
                request.clone(),
                &e,
                trace,
                self.id.etag.as_deref(),
            )
        })?;
        let etag_differs = match (&self.id.etag, &meta.e_tag) {
            (Some(a), Some(b)) => !same_etag(a, b),
            _ => false,
        };
        if etag_differs || meta.size != self.id.size {
            return Err(self.changed());
        }
        if got != r || bytes.len() as u64 != r.end - r.start {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{}: {request}: the store answered {} bytes for {}..{}",
                    self.url,
                    bytes.len(),
                    r.start,
                    r.end
                ),
            ));
        }
        Ok(bytes)
    }

    fn changed(&self) -> io::Error {
        RemoteError {
            url: self.url.to_string(),
            request: String::new(),
            kind: RemoteErrorKind::Changed {
                etag: self.id.etag.clone().unwrap_or_else(|| "?".into()),
            },
            status: None,
            code: None,
            request_id: None,
            retries: 0,
            detail: None,
        }
        .into_io()
    }

    fn note_failure(&self) {
        self.failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether all of `r` is cached (tests and `read_small`).
    fn holds(&self, r: Range<u64>) -> bool {
        self.lock().is_ok_and(|c| c.missing(r).is_empty())
    }
}

impl ByteSource for RemoteObject {
    fn path(&self) -> &Path {
        &self.path
    }

    fn identity(&self) -> &Identity {
        &self.id
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let size = self.id.size;
        let end = offset.checked_add(buf.len() as u64);
        let Some(end) = end.filter(|&e| e <= size) else {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "failed to fill whole buffer",
            ));
        };
        if buf.is_empty() {
            return Ok(());
        }
        let gaps = {
            let mut c = self.lock()?;
            let gaps = c.missing(offset..end);
            if gaps.is_empty() {
                c.touch(offset..end);
                c.copy(buf, offset);
                return Ok(());
            }
            gaps
        };
        if buf.len() >= STREAM_MIN {
            let bytes = self
                .fetch(offset..end)
                .inspect_err(|_| self.note_failure())?;
            buf.copy_from_slice(&bytes);
            return Ok(());
        }
        let first = gaps.first().map_or(offset, |g| g.start);
        let last = gaps.last().map_or(end, |g| g.end);
        let fetch_end = last.max(first.saturating_add(READ_AHEAD)).min(size);
        let bytes = self
            .fetch(first..fetch_end)
            .inspect_err(|_| self.note_failure())?;
        let mut c = self.lock()?;
        c.insert(first, &bytes, false);
        c.touch(offset..end);
        c.evict();
        if c.copy(buf, offset) {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "{}: cache lost bytes {offset}..{end} (a bug in ckpt-io)",
                self.url
            )))
        }
    }

    fn failed_reads(&self) -> u64 {
        self.failed.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn prefetch(&self, ranges: &[Range<u64>]) {
        let size = self.id.size;
        let Ok(c) = self.lock() else { return };
        let mut parts: Vec<Range<u64>> = Vec::new();
        let mut clipped: Vec<Range<u64>> = ranges
            .iter()
            .map(|r| r.start.min(size)..r.end.min(size))
            .filter(|r| r.start < r.end)
            .collect();
        clipped.sort_by_key(|r| r.start);
        for r in clipped {
            for g in c.missing(r) {
                match parts.last_mut() {
                    Some(last) if g.start <= last.end.saturating_add(COALESCE_GAP) => {
                        last.end = last.end.max(g.end);
                    }
                    _ => parts.push(g),
                }
            }
        }
        let total: u64 = parts.iter().map(|r| r.end - r.start).sum();
        let budget = PIN_CAP.saturating_sub(c.pinned) as u64;
        drop(c);
        if parts.is_empty() || total > budget {
            return;
        }
        let store = self.store.clone();
        let loc = self.loc.clone();
        let if_match = self.if_match();
        let asked = parts.clone();
        let got = rt::run(async move {
            let futs = asked.into_iter().map(move |r| {
                let (store, loc, if_match) = (store.clone(), loc.clone(), if_match.clone());
                async move {
                    let (res, trace) = get(
                        store,
                        loc,
                        Some(GetRange::Bounded(r.clone())),
                        if_match,
                        false,
                    )
                    .await;
                    (r, res, trace)
                }
            });
            let out: Vec<_> = futures_util::stream::iter(futs)
                .buffer_unordered(PREFETCH_WIDTH)
                .collect()
                .await;
            Ok(out)
        });
        // A hint never fails: what could not be fetched is fetched (and its error reported)
        // by the read that needs it.
        let Ok(got) = got else { return };
        for (r, res, trace) in got {
            if let Ok(bytes) = self.checked(res, &trace, String::new(), r.clone())
                && let Ok(mut c) = self.lock()
            {
                c.insert(r.start, &bytes, true);
            }
        }
    }
}

/// The process-wide LRU of open objects.
static OPEN: Mutex<VecDeque<Arc<RemoteObject>>> = Mutex::new(VecDeque::new());

fn lru_find(url: &RemoteUrl, id: Option<&Identity>) -> Option<Arc<RemoteObject>> {
    let mut g = OPEN.lock().ok()?;
    let i = g.iter().position(|o| {
        o.url == *url
            && id.is_none_or(|id| {
                o.id.size == id.size
                    && match (&o.id.etag, &id.etag) {
                        (Some(a), Some(b)) => same_etag(a, b),
                        (None, None) => o.id.mtime_ns == id.mtime_ns,
                        _ => false,
                    }
            })
    })?;
    let o = g.remove(i)?;
    g.push_back(o.clone());
    Some(o)
}

fn lru_put(o: &Arc<RemoteObject>) {
    if let Ok(mut g) = OPEN.lock() {
        g.retain(|x| x.url != o.url);
        g.push_back(o.clone());
        while g.len() > LRU_CAP {
            g.pop_front();
        }
    }
}

/// Forget every open object (with [`crate::forget_listings`]).
pub fn forget_open() {
    if let Ok(mut g) = OPEN.lock() {
        g.clear();
    }
}

fn not_an_object(url: &RemoteUrl) -> io::Error {
    io::Error::new(
        io::ErrorKind::IsADirectory,
        format!("{url}: a prefix (folder), not an object"),
    )
}

/// See [`super::open`].
pub fn open(url: &RemoteUrl, known: Option<&Identity>) -> io::Result<Arc<RemoteObject>> {
    if url.key.is_empty() {
        return Err(not_an_object(url));
    }
    if let Some(o) = lru_find(url, known) {
        return Ok(o);
    }
    let store = store::store_for(url)?;
    let loc = os_path(url)?;
    let known = match known {
        Some(id) => Some(id.clone()),
        None => match listing::memoized_entry(url) {
            Some((Kind::File, Some(id))) => Some(id),
            Some((Kind::Dir, _)) => return Err(not_an_object(url)),
            _ => None,
        },
    };
    let o = match known {
        Some(id) => Arc::new(RemoteObject::new(url, store, loc, id)),
        None => Arc::new(open_unknown(url, store, loc)?),
    };
    lru_put(&o);
    Ok(o)
}

/// Round 1 of an object whose identity is not known: see the module docs.
fn open_unknown(
    url: &RemoteUrl,
    store: Arc<dyn ObjectStore>,
    loc: OsPath,
) -> io::Result<RemoteObject> {
    let (s2, l2) = (store.clone(), loc.clone());
    let ((tail, ttrace), (head, _)) = rt::run(async move {
        let a = get(
            s2.clone(),
            l2.clone(),
            Some(GetRange::Suffix(TAIL)),
            None,
            false,
        );
        let b = get(s2, l2, Some(GetRange::Bounded(0..HEAD)), None, false);
        Ok(futures_util::future::join(a, b).await)
    })?;
    let (meta, trange, tbytes) = match tail {
        Ok(t) => t,
        Err(e)
            if !matches!(e, object_store::Error::NotFound { .. })
                && (ttrace.status == Some(416) || e.to_string().contains("non-partial")) =>
        {
            return open_by_head(url, store, loc);
        }
        Err(e) => {
            return Err(request_error(
                url,
                format!("GET {}", range_text(&GetRange::Suffix(TAIL))),
                &e,
                &ttrace,
                None,
            ));
        }
    };
    let id = identity_of(&meta);
    let o = RemoteObject::new(url, store, loc, id);
    if tbytes.len() as u64 != trange.end - trange.start || trange.end != meta.size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{url}: the store answered a bad range for the object's tail"),
        ));
    }
    {
        let mut c = o.lock()?;
        c.insert(trange.start, &tbytes, true);
        if trange.start > 0
            && let Ok((hmeta, hrange, hbytes)) = head
        {
            if let (Some(a), Some(b)) = (&o.id.etag, &hmeta.e_tag)
                && !same_etag(a, b)
            {
                drop(c);
                return Err(o.changed());
            }
            if hmeta.size == o.id.size && hbytes.len() as u64 == hrange.end - hrange.start {
                c.insert(hrange.start, &hbytes, true);
            }
        }
    }
    Ok(o)
}

/// An object that refused a range (empty objects answer 416): learn its identity by HEAD.
fn open_by_head(
    url: &RemoteUrl,
    store: Arc<dyn ObjectStore>,
    loc: OsPath,
) -> io::Result<RemoteObject> {
    let (s2, l2) = (store.clone(), loc.clone());
    let (res, trace) = rt::run(async move { Ok(get(s2, l2, None, None, true).await) })?;
    let (meta, _, _) = res.map_err(|e| request_error(url, "HEAD".into(), &e, &trace, None))?;
    if meta.size != 0 {
        return Err(io::Error::other(format!(
            "{url}: the store refused a range request of an object of {} bytes",
            meta.size
        )));
    }
    Ok(RemoteObject::new(url, store, loc, identity_of(&meta)))
}

/// See [`super::read_small`].
pub fn read_small(url: &RemoteUrl, limit: u64) -> Result<Vec<u8>, OpenError> {
    if url.key.is_empty() {
        return Err(OpenError::NotAFile {
            what: "a prefix (folder)",
        });
    }
    let listed = match listing::memoized_entry(url) {
        Some((Kind::File, Some(id))) => Some(id),
        Some((Kind::Dir, _)) => {
            return Err(OpenError::NotAFile {
                what: "a prefix (folder)",
            });
        }
        _ => None,
    };
    if let Some(o) = lru_find(url, listed.as_ref())
        && o.id.size <= limit
        && o.holds(0..o.id.size)
    {
        let mut buf = vec![0u8; o.id.size as usize];
        o.read_exact_at(&mut buf, 0)?;
        return Ok(buf);
    }
    if let Some(id) = &listed
        && id.size > limit
    {
        return Err(OpenError::TooLarge { limit });
    }
    let store = store::store_for(url)?;
    let loc = os_path(url)?;
    let if_match = listed
        .as_ref()
        .and_then(|id| id.etag.as_deref())
        .map(quoted);
    let (s2, l2) = (store.clone(), loc.clone());
    let (res, trace) = rt::run(async move {
        let _permit = rt::permit().await;
        Ok(traced(async move {
            let opts = GetOptions {
                if_match,
                ..Default::default()
            };
            let r = s2.get_opts(&l2, opts).await?;
            let meta = r.meta.clone();
            if meta.size > limit {
                // Dropping the body closes the response unread.
                return Ok((meta, None));
            }
            let mut stream = r.into_stream();
            let mut buf = Vec::with_capacity(meta.size as usize);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                buf.extend_from_slice(&chunk);
                if buf.len() as u64 > limit {
                    return Ok((meta, None));
                }
            }
            Ok((meta, Some(buf)))
        })
        .await)
    })?;
    let etag = listed.as_ref().and_then(|id| id.etag.clone());
    let (meta, buf) =
        res.map_err(|e| request_error(url, "GET".into(), &e, &trace, etag.as_deref()))?;
    let Some(buf) = buf else {
        return Err(OpenError::TooLarge { limit });
    };
    if buf.len() as u64 != meta.size {
        return Err(OpenError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{url}: GET: {} bytes of {}", buf.len(), meta.size),
        )));
    }
    if buf.len() <= CACHE_CAP {
        let o = Arc::new(RemoteObject::new(url, store, loc, identity_of(&meta)));
        if let Ok(mut c) = o.lock() {
            c.insert(0, &Bytes::from(buf.clone()), true);
        }
        lru_put(&o);
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No credentials anywhere: the 403 is the metadata service's, and the message says so
    /// and lists where credentials were looked for, instead of blaming the bucket.
    #[test]
    fn a_failed_credential_lookup_is_named_with_the_chain() {
        let e = object_store::Error::Generic {
            store: "S3",
            source: "Error performing PUT http://169.254.169.254/latest/api/token in 2ms - \
                     Server returned non-2xx status code: 403 Forbidden"
                .into(),
        };
        let url = RemoteUrl {
            scheme: crate::Scheme::S3,
            bucket: "b".into(),
            key: String::new(),
        };
        let trace = Trace {
            attempts: 1,
            status: Some(403),
            code: None,
            request_id: None,
        };
        let text = request_error(&url, "LIST".into(), &e, &trace, None).to_string();
        assert!(
            text.starts_with("s3://b: LIST (getting credentials): 403 Forbidden; credentials were looked for in: AWS_ACCESS_KEY_ID"),
            "{text}"
        );
        let other = object_store::Error::Generic {
            store: "S3",
            source: "Server returned non-2xx status code: 503".into(),
        };
        let text = request_error(&url, "LIST".into(), &other, &trace, None).to_string();
        assert!(!text.contains("credentials"), "{text}");
    }

    #[test]
    fn cache_finds_gaps_inserts_only_them_and_evicts_loose_blocks() {
        let mut c = Cache::default();
        assert_eq!(c.missing(0..10), vec![0..10]);
        c.insert(2, &Bytes::from_static(b"2345"), false);
        assert_eq!(c.missing(0..10), vec![0..2, 6..10]);
        assert_eq!(c.missing(3..5), Vec::<Range<u64>>::new());
        c.insert(0, &Bytes::from_static(b"01234567"), true);
        assert_eq!(c.missing(0..8), Vec::<Range<u64>>::new());
        assert_eq!(c.blocks.len(), 3, "only the gaps were added");
        let mut b = [0u8; 8];
        assert!(c.copy(&mut b, 0));
        assert_eq!(&b, b"01234567");
        assert_eq!((c.loose, c.pinned), (4, 4));
        // Loose blocks over the cap are evicted, least recently used first; pinned ones stay.
        let big = Bytes::from(vec![7u8; CACHE_CAP]);
        c.insert(100, &big, false);
        c.evict();
        assert!(c.loose <= CACHE_CAP);
        assert_eq!(c.missing(2..6), vec![2..6], "the old loose block went");
        assert!(c.missing(0..2).is_empty(), "pinned stays");
    }

    #[test]
    fn fnv_is_stable_and_never_zero() {
        assert_eq!(fnv(""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(fnv("\"a\""), fnv("\"b\""));
        assert!(fnv("x") > 0);
    }
}

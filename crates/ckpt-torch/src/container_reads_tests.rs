//! How the readers read: one source for the scan and the reader, and the prefetch hints that
//! make an object in a bucket cost a few requests (issue 15). A simulated remote source (bytes
//! in memory that answer like an object: no file, no bytes to borrow) models the request
//! plan of the real one (explicit prefetches coalesced at a 64 KiB gap, a miss fetched with
//! 16 KiB of read-ahead) and records every hint and read.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ckpt_io::{ByteSource, Identity};

use super::*;
use crate::doc::View;

/// Gap below which a remote source merges two ranges into one request.
const COALESCE: u64 = 64 << 10;
/// What a remote source fetches on a miss, at least.
const READ_AHEAD: u64 = 16 << 10;

#[derive(Debug, Default)]
struct Log {
    /// The ranges fetched so far (what the source holds).
    cached: Vec<Range<u64>>,
    /// Requests made: the range and why ("prefetch" or "miss").
    gets: Vec<(Range<u64>, &'static str)>,
    /// Every `read_exact_at`.
    reads: Vec<Range<u64>>,
    /// Reads that were not covered by what was fetched before them.
    misses: Vec<Range<u64>>,
    /// Every `prefetch` call's ranges.
    hints: Vec<Vec<Range<u64>>>,
}

#[derive(Debug)]
struct SimRemote {
    path: PathBuf,
    bytes: Arc<[u8]>,
    id: Identity,
    log: Mutex<Log>,
}

impl SimRemote {
    fn new(path: &str, bytes: Vec<u8>) -> Arc<SimRemote> {
        let id = Identity {
            size: bytes.len() as u64,
            mtime_ns: 1,
            version: 7,
            etag: Some("\"e\"".into()),
        };
        Arc::new(SimRemote {
            path: PathBuf::from(path),
            bytes: bytes.into(),
            id,
            log: Mutex::new(Log::default()),
        })
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap()
    }
}

/// The parts of `r` not in `have`.
fn missing(have: &[Range<u64>], r: &Range<u64>) -> Vec<Range<u64>> {
    let mut sorted: Vec<Range<u64>> = have.to_vec();
    sorted.sort_by_key(|h| h.start);
    let mut out = Vec::new();
    let mut at = r.start;
    for h in sorted {
        if h.end <= at || h.start >= r.end {
            continue;
        }
        if h.start > at {
            out.push(at..h.start);
        }
        at = at.max(h.end);
        if at >= r.end {
            break;
        }
    }
    if at < r.end {
        out.push(at..r.end);
    }
    out
}

impl ByteSource for SimRemote {
    fn path(&self) -> &Path {
        &self.path
    }
    fn identity(&self) -> &Identity {
        &self.id
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let end = offset + buf.len() as u64;
        let mut log = self.log();
        log.reads.push(offset..end);
        if !missing(&log.cached, &(offset..end)).is_empty() {
            log.misses.push(offset..end);
            let fetched = offset..(offset + (buf.len() as u64).max(READ_AHEAD)).min(self.id.size);
            log.gets.push((fetched.clone(), "miss"));
            log.cached.push(fetched);
        }
        let s = usize::try_from(offset).unwrap();
        match self.bytes.get(s..s + buf.len()) {
            Some(b) => {
                buf.copy_from_slice(b);
                Ok(())
            }
            None => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "failed to fill whole buffer",
            )),
        }
    }
    fn prefetch(&self, ranges: &[Range<u64>]) {
        let mut log = self.log();
        log.hints.push(ranges.to_vec());
        let mut want: Vec<Range<u64>> = ranges
            .iter()
            .flat_map(|r| missing(&log.cached, r))
            .collect();
        want.sort_by_key(|r| r.start);
        let mut groups: Vec<Range<u64>> = Vec::new();
        for r in want {
            match groups.last_mut() {
                Some(g) if r.start <= g.end.saturating_add(COALESCE) => g.end = g.end.max(r.end),
                _ => groups.push(r),
            }
        }
        for g in groups {
            log.gets.push((g.clone(), "prefetch"));
            log.cached.push(g);
        }
    }
}

/// A Lightning checkpoint (ModelCheckpoint scores, optimizer state) of about `bytes` bytes.
fn lightning(bytes: u64) -> Vec<u8> {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("epoch=3-step=400.ckpt");
    ckpt_test_support::write_lightning_checkpoint(
        &p,
        &ckpt_test_support::model_tensors(8, bytes / 3),
    )
    .unwrap();
    std::fs::read(&p).unwrap()
}

/// What the catalog does with a checkpoint: scan and open it, summarize it.
fn catalog_like(src: Arc<dyn ByteSource>) -> (crate::scan::FileScan, Checkpoint) {
    let (scan, ck) = Checkpoint::scan_and_open_source(
        src,
        &crate::scan::ScanLimits::default(),
        &Options::default(),
    );
    let ck = ck.unwrap();
    let s = ck.summary_with(Vec::new());
    assert_eq!(s.callbacks.len(), 1);
    assert!(s.callbacks[0].best_model_score.is_some());
    assert!(s.callbacks[0].current_score.is_some());
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    (scan, ck)
}

/// The request plan of issue 15 §2.3, pinned: a Lightning checkpoint of a few megabytes is
/// read in three requests (head, tail, the callbacks' scores mid-file), every one of them
/// asked for by a hint before anything was read from it: no read ever misses.
#[test]
fn a_remote_lightning_checkpoint_is_scanned_opened_and_summarized_in_three_requests() {
    let bytes = lightning(6 << 20);
    let len = bytes.len() as u64;
    let sim = SimRemote::new("s3://bucket/run/checkpoints/epoch=3-step=400.ckpt", bytes);
    let (scan, ck) = catalog_like(sim.clone());
    assert!(scan.problems.is_empty(), "{:?}", scan.problems);
    assert_eq!(ck.format_name(), "zip");
    let log = sim.log();
    assert!(
        log.misses.is_empty(),
        "reads outside the hints: {:?}",
        log.misses
    );
    let gets: Vec<&Range<u64>> = log.gets.iter().map(|(r, _)| r).collect();
    assert_eq!(gets.len(), 3, "requests: {:?}", log.gets);
    // Head and tail first, then the scores somewhere in between.
    assert_eq!(*gets[0], 0..HEAD_HINT);
    assert_eq!(*gets[1], len - TAIL_HINT..len);
    assert!(gets[2].start > HEAD_HINT && gets[2].end < len - TAIL_HINT);
    assert!(gets[2].end - gets[2].start < 4 << 10, "{:?}", gets[2]);
    // The first thing done was the hint; every read came after it.
    assert_eq!(log.hints[0], vec![0..HEAD_HINT, len - TAIL_HINT..len]);
    let fetched: u64 = gets.iter().map(|r| r.end - r.start).sum();
    assert!(
        fetched < HEAD_HINT + TAIL_HINT + (4 << 10),
        "{fetched} bytes fetched of {len}"
    );
}

/// Opening alone (`inspect`) hints the same way: the head and tail, then the scores.
#[test]
fn a_remote_checkpoint_opened_and_summarized_costs_the_same_three_requests() {
    let bytes = lightning(6 << 20);
    let sim = SimRemote::new("s3://bucket/run/last.ckpt", bytes);
    let ck = Checkpoint::open_source(sim.clone(), &Options::default()).unwrap();
    let s = ck.summary_with(Vec::new());
    assert!(s.callbacks[0].best_model_score.is_some());
    let log = sim.log();
    assert!(log.misses.is_empty(), "{:?}", log.misses);
    assert_eq!(log.gets.len(), 3, "{:?}", log.gets);
}

/// An object of at most `REMOTE_WHOLE` bytes is read whole, in one read and one request,
/// and the scan and the reader both read that copy.
#[test]
fn a_small_remote_checkpoint_is_read_whole_in_one_read() {
    let bytes = lightning(64 << 10);
    let len = bytes.len() as u64;
    assert!(len <= REMOTE_WHOLE, "{len}");
    let sim = SimRemote::new("s3://bucket/run/small.ckpt", bytes);
    let (scan, ck) = catalog_like(sim.clone());
    assert!(scan.problems.is_empty(), "{:?}", scan.problems);
    assert_eq!(ck.size, len);
    let log = sim.log();
    assert_eq!(log.reads, vec![0..len]);
    assert_eq!(log.gets.len(), 1, "{:?}", log.gets);
    assert!(
        log.hints.is_empty(),
        "nothing to hint once in memory: {:?}",
        log.hints
    );
}

/// One source serves the scan and the reader: nothing is opened again by path (the path is
/// a URL this build cannot open, so a second open would show as a problem or an error),
/// not even for a TorchScript archive's judgement, which opens the archive as a checkpoint.
/// Read whole and by ranges, the results are the local file's.
#[test]
fn scan_and_open_reads_its_one_source_and_opens_nothing_by_path() {
    let w = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let limits = crate::scan::ScanLimits::default();
    let opts = Options::default();
    for f in [
        w.join("fixtures/torchscript/scripted_convbn.pt"),
        w.join("fixtures/torchscript/hostile_os_system.pt"),
        w.join("fixtures/formats/legacy.pt"),
        w.join("fixtures/formats/params.pt"),
        w.join("examples/lightning/checkpoints/last.ckpt"),
    ] {
        let local_scan = crate::scan::scan_path(&f, &limits);
        let local_ck = Checkpoint::open_with(&f, &opts).unwrap();
        let url = format!("s3://bucket/{}", f.file_name().unwrap().to_string_lossy());
        // The same scan (its texts name the path the source was given).
        let shown = |s: &crate::scan::FileScan| {
            format!("{s:?}")
                .replace(&url, "PATH")
                .replace(&f.display().to_string(), "PATH")
        };
        for small in [SMALL_FILE, 0] {
            let at = format!("{} (whole up to {small})", f.display());
            let sim = SimRemote::new(&url, std::fs::read(&f).unwrap());
            let (scan, ck) = Checkpoint::scan_and_open_in(sim.clone(), &limits, &opts, small);
            let ck = ck.unwrap_or_else(|e| panic!("{at}: {e}"));
            assert_eq!(shown(&scan), shown(&local_scan), "{at}");
            assert_eq!(ck.format, local_ck.format, "{at}");
            assert_eq!(ck.pickle_sha256, local_ck.pickle_sha256, "{at}");
            assert_eq!(
                ck.torchscript.is_some(),
                local_ck.torchscript.is_some(),
                "{at}"
            );
            let log = sim.log();
            if small == 0 {
                assert!(log.reads.len() > 1, "{at}: read by ranges");
            } else {
                assert_eq!(log.reads.len(), 1, "{at}: read whole");
            }
        }
    }
}

/// Each chunk of a DCP file is a small archive inside a large file: a chunk of at most
/// `REMOTE_WHOLE` bytes is asked for whole, in one hint, before anything is read from it.
#[test]
fn a_small_dcp_chunk_is_prefetched_whole() {
    let inner = lightning(64 << 10);
    let mut bytes = vec![7u8; 1 << 20];
    let off = bytes.len() as u64;
    bytes.extend_from_slice(&inner);
    bytes.extend_from_slice(&[9u8; 1 << 20]);
    let sim = SimRemote::new("s3://bucket/dcp/__0_0.distcp", bytes);
    let ck = Checkpoint::open_range_in(sim.clone(), off, inner.len() as u64, &Options::default())
        .unwrap();
    assert_eq!(ck.summary_with(Vec::new()).epoch, Some(3));
    let log = sim.log();
    assert_eq!(log.hints[0], vec![off..off + inner.len() as u64]);
    assert!(log.misses.is_empty(), "{:?}", log.misses);
    assert_eq!(log.gets.len(), 1, "{:?}", log.gets);
}

/// A path that cannot be opened (here: an I/O error, as a URL this build cannot read
/// gives) is an `Error::Io` naming it for the reader and a problem naming it for the scan,
/// never a panic.
#[test]
fn an_unopenable_url_is_an_io_error_naming_it() {
    let url = Path::new("s3://bucket/run/x.ckpt");
    let e = std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "s3://bucket/run/x.ckpt: this build of ckpt cannot read object storage (feature `remote`)",
    );
    let msg = e.to_string();
    let scan = crate::scan::file::scan_of_open_error(url, &OpenError::Io(e));
    // The URL once: the error names it already.
    assert_eq!(scan.problems, vec![msg.clone()]);
    let e = std::io::Error::new(std::io::ErrorKind::Unsupported, msg.clone());
    let err = open_error(url, OpenError::Io(e));
    assert_eq!(err.to_string(), msg);
    match err {
        Error::Io { path, source } => {
            assert_eq!(path, url);
            assert_eq!(source.to_string(), msg);
        }
        other => panic!("{other:?}"),
    }
    // A local error does not name its path: it is put in front.
    let local = Path::new("/x/y.ckpt");
    let e = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
    assert_eq!(
        open_error(local, OpenError::Io(e)).to_string(),
        "/x/y.ckpt: gone"
    );
}

/// Tensor bytes copied from a local file (the kernel's `copy_file_range`), from memory and
/// from an object (positioned reads) are the same bytes.
#[test]
fn tensors_copy_alike_from_a_file_from_memory_and_from_an_object() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("m.ckpt");
    std::fs::write(&p, lightning(3 << 20)).unwrap();
    let from_file = Checkpoint::open(&p).unwrap();
    assert!(from_file.source().as_file().is_some());
    let bytes: Arc<[u8]> = std::fs::read(&p).unwrap().into();
    let from_mem = Checkpoint::open_source(
        ckpt_io::mem(&p, bytes.clone(), Identity::default()),
        &Options::default(),
    )
    .unwrap();
    let sim = SimRemote::new("s3://bucket/m.ckpt", bytes.to_vec());
    let from_object = Checkpoint::open_source(sim, &Options::default()).unwrap();
    let copy = |ck: &Checkpoint, name: &str| {
        let out_path = d.path().join(name);
        let mut out = std::fs::File::create(&out_path).unwrap();
        let sd = ck.doc.at_path(ck.doc.root(), "state_dict").unwrap();
        let View::Dict(items) = ck.doc.view(sd) else {
            panic!("no state dict")
        };
        let mut n = 0;
        for (_, v) in items {
            if let View::Tensor(t) = ck.doc.view(*v) {
                n += ck.copy_tensor(t, "t", &mut out, &out_path).unwrap();
            }
        }
        drop(out);
        assert!(n > 1 << 20);
        std::fs::read(&out_path).unwrap()
    };
    let a = copy(&from_file, "a");
    assert_eq!(a, copy(&from_mem, "b"));
    assert_eq!(a, copy(&from_object, "c"));
}

/// The catalog's way in with the identity a listing gave: locally the identity is not used
/// (the file is opened and read as by `scan_and_open`), and the result is the same.
#[test]
fn scan_and_open_known_is_scan_and_open() {
    let d = tempfile::tempdir().unwrap();
    let limits = crate::scan::ScanLimits::default();
    let opts = Options::default();
    for (name, bytes) in [("small.ckpt", 64 << 10), ("large.ckpt", 3 << 20)] {
        let p = d.path().join(name);
        std::fs::write(&p, lightning(bytes)).unwrap();
        let (scan, ck) = Checkpoint::scan_and_open(&p, &limits, &opts);
        let stale = Identity {
            size: 1,
            ..Identity::default()
        };
        let (scan_k, ck_k) = Checkpoint::scan_and_open_known(&p, &stale, &limits, &opts);
        assert_eq!(format!("{scan:?}"), format!("{scan_k:?}"));
        let (ck, ck_k) = (ck.unwrap(), ck_k.unwrap());
        assert_eq!(ck.pickle_sha256, ck_k.pickle_sha256);
        assert_eq!(ck_k.source().len(), std::fs::metadata(&p).unwrap().len());
        assert_eq!(format!("{:?}", ck.src), format!("{:?}", ck_k.src));
    }
    // A path that is not there: the scan's problem and the reader's error, as before.
    let gone = d.path().join("gone.ckpt");
    let (scan, ck) = Checkpoint::scan_and_open_known(&gone, &Identity::default(), &limits, &opts);
    assert_eq!(scan.problems.len(), 1);
    assert!(scan.problems[0].starts_with(&format!("{}: ", gone.display())));
    assert!(matches!(ck, Err(Error::Io { .. })));
}

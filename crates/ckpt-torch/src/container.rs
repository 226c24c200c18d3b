//! Opening a checkpoint: sniff the container, read the pickle (kilobytes), index the storages
//! (offsets only; no tensor bytes are read here).

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ckpt_io::{ByteSource, Identity, OpenError};

use ckpt_pickle::{ErrorKind as PickleErrorKind, Limits, Value};

use crate::doc::{Doc, Node, NodeId, PersIdStyle, StorageRef, TensorKind, TensorRef};
use crate::error::{Error, Result};

/// The container a checkpoint was found in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// torch >= 1.6 zip archive; `root` is the folder holding `data.pkl`.
    Zip { root: String },
    /// The pre-1.6 stream: magic number, protocol, sys_info, pickle, storage keys, storages.
    Legacy,
    /// A `.safetensors` file (header only is read).
    Safetensors,
    /// A bare pickle (no torch framing): not something torch.save writes, but something
    /// people (and attackers) name `.pt`.
    Pickle,
}

impl Format {
    pub fn name(&self) -> &'static str {
        match self {
            Format::Zip { .. } => "zip",
            Format::Legacy => "legacy",
            Format::Safetensors => "safetensors",
            Format::Pickle => "pickle",
        }
    }
}

/// Byte order of tensor data as recorded in the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    Little,
    Big,
}

/// Knobs for opening untrusted files.
#[derive(Debug, Clone)]
pub struct Options {
    pub limits: Limits,
    /// Largest pickle we are willing to read into memory.
    pub max_pickle_bytes: u64,
    /// Give values their torch meaning (tensors, known types). Off for security scans, which
    /// must report on pickles whose calls are malformed as tensors.
    pub classify: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limits: Limits::default(),
            max_pickle_bytes: 1 << 30,
            classify: true,
        }
    }
}

/// Where one storage's bytes are: absolute file offset and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extent {
    pub offset: u64,
    pub len: u64,
}

#[derive(Debug)]
pub(crate) enum StorageIndex {
    /// Zip entries by name: local header offset, stored size, compression method.
    Zip {
        root: String,
        entries: HashMap<String, (u64, u64, u16)>,
    },
    /// Direct extents by storage key (legacy).
    Extents(HashMap<String, Extent>),
    /// safetensors: tensor `i` is stored under its own name, which is the document's string
    /// `NodeId(i)`; `extents[i]` is where its bytes are and `by_name` lists the tensors in
    /// name order, for a binary search. No name is held twice: a map keyed by copies of the
    /// names cost 64 bytes and an allocation a tensor.
    Named {
        by_name: Vec<u32>,
        extents: Vec<Extent>,
    },
}

/// An opened checkpoint: its decoded pickle and how to reach tensor bytes.
#[derive(Debug)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub format: Format,
    pub doc: Doc,
    /// File size in bytes.
    pub size: u64,
    pub byteorder: ByteOrder,
    /// Zip: `version` / `.format_version` record; legacy: protocol version.
    pub version: Option<String>,
    /// Name of the pickle inside the container (`best/data.pkl`), for messages.
    pub pickle_entry: String,
    /// Bytes of pickle decoded.
    pub pickle_bytes: u64,
    /// sha256 (hex) of the pickle bytes (the safetensors header for safetensors): a
    /// fingerprint that changes whenever anything but tensor data changes.
    pub pickle_sha256: String,
    /// Safetensors `__metadata__`, when present.
    pub safetensors_metadata: Vec<(String, String)>,
    /// The other pickles of a legacy stream (magic, protocol, sys_info, storage keys), kept
    /// so a security scan sees every global in the file.
    pub aux_pickles: Vec<(String, ckpt_pickle::Pickle)>,
    /// A TorchScript archive (`torch.jit.save`: the zip has `constants.pkl`): its code files,
    /// class table and constants (`crate::torchscript`).
    pub torchscript: Option<Box<crate::torchscript::TorchScript>>,
    /// Where every byte comes from: a local file, the whole file already in memory (a small
    /// file scanned and opened by [`Checkpoint::scan_and_open`]), or an object in a bucket.
    /// Shared with the other chunks of a DCP file opened through `open_range_in`.
    pub(crate) src: Src,
    /// Where the checkpoint starts in `src` (non-zero for a chunk inside a DCP file).
    pub(crate) base: u64,
    pub(crate) storages: StorageIndex,
}

/// A checkpoint's [`ByteSource`]; its Debug says what kind and how many bytes instead of
/// listing them (a small file's source holds all its bytes).
#[derive(Clone)]
pub(crate) struct Src(pub(crate) Arc<dyn ByteSource>);

impl std::fmt::Debug for Src {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.0.as_bytes().is_some() {
            "in memory"
        } else if self.0.as_file().is_some() {
            "file"
        } else {
            "ranges"
        };
        write!(f, "Src(<{kind}, {} bytes>)", self.0.len())
    }
}

/// Bytes allowed for a zip local header's name and extra fields beyond the name's length
/// when a read is planned before the header itself is read (prefetch hints): torch pads
/// the extra field so data starts 64-byte aligned (at most 4 + 63 bytes), and a ZIP64 field
/// adds 20. A header larger than this costs one more request, never a wrong byte.
pub(crate) const LOCAL_HEADER_SLACK: u64 = 256;

/// Where a zip member's local header, name, extra field and `data_len` bytes of data lie,
/// as far as can be known without reading the header (see [`LOCAL_HEADER_SLACK`]).
pub(crate) fn member_span(header: u64, name_len: usize, data_len: u64) -> Range<u64> {
    let end = header
        .saturating_add(30)
        .saturating_add(name_len as u64)
        .saturating_add(LOCAL_HEADER_SLACK)
        .saturating_add(data_len);
    header..end
}

/// The head (torch writes `data.pkl` and the small records first) and tail (end of central
/// directory, ZIP64 records, the directory itself, `version`) of a zip a reader reads first.
/// 128 KiB: a `data.pkl` of up to about that size (a few hundred tensors with their optimizer
/// state) then costs no second request; ckpt-io's first read of an object opened by URL is
/// the same size (`ckpt_io::remote` `HEAD`).
pub(crate) const HEAD_HINT: u64 = 128 << 10;
/// The tail read with the head: the end-of-central-directory search window (64 KiB of
/// comment plus the 22-byte record).
pub(crate) const TAIL_HINT: u64 = (64 << 10) + 22;
/// Sources (other than local files and memory) this small are read whole: one request.
pub(crate) const REMOTE_WHOLE: u64 = 256 << 10;

/// The ranges a reader of a `size`-byte file or object reads first: the whole of it when it
/// is small, else its head and its tail.
pub(crate) fn first_reads(size: u64) -> Vec<Range<u64>> {
    if size <= REMOTE_WHOLE {
        std::iter::once(0..size).collect()
    } else {
        vec![0..HEAD_HINT, size.saturating_sub(TAIL_HINT)..size]
    }
}

/// Whether hints are worth computing for `src`: a local file or bytes in memory are read
/// where they are, and a hint for them would only cost the work of building it.
pub(crate) fn wants_hints(src: &dyn ByteSource) -> bool {
    src.as_file().is_none() && src.as_bytes().is_none()
}

/// Open `path` as a [`ByteSource`], with the errors [`Checkpoint::open_with`] gives: what is
/// not a regular file is not a checkpoint (a FIFO would block the open or the read forever,
/// a device never end: see [`ckpt_io::open`]), the rest is I/O naming the path (a URL this
/// build cannot read, too).
fn open_source_at(path: &Path) -> Result<Arc<dyn ByteSource>> {
    ckpt_io::open(path).map_err(|e| open_error(path, e))
}

/// An [`OpenError`] as the reader reports it.
fn open_error(path: &Path, e: OpenError) -> Error {
    match e {
        OpenError::NotAFile { what } => Error::NotACheckpoint {
            path: path.to_path_buf(),
            reason: if what == "a directory" {
                what.into()
            } else {
                format!("{what}, not a regular file")
            },
        },
        OpenError::Io(source) => Error::Io {
            path: path.to_path_buf(),
            source,
        },
        e @ OpenError::TooLarge { .. } => Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        },
    }
}

impl Checkpoint {
    /// Open with default limits.
    pub fn open(path: impl AsRef<Path>) -> Result<Checkpoint> {
        Self::open_with(path, &Options::default())
    }

    pub fn open_with(path: impl AsRef<Path>, opts: &Options) -> Result<Checkpoint> {
        crate::bug::failpoint(path.as_ref());
        let src = open_source_at(path.as_ref())?;
        Self::open_window(src, None, opts, None)
    }

    /// [`Checkpoint::open_with`] on a source already open (its path names it in messages).
    pub fn open_source(src: Arc<dyn ByteSource>, opts: &Options) -> Result<Checkpoint> {
        Self::open_window(src, None, opts, None)
    }

    /// The source every byte of this checkpoint is read from (its identity is the version
    /// that was read). For a chunk of a DCP file, the whole `.distcp` file's.
    pub fn source(&self) -> &Arc<dyn ByteSource> {
        &self.src.0
    }

    /// Scan the file as `ckpt scan` does ([`crate::scan::scan_path`], unchanged) and open it
    /// as [`Checkpoint::open_with`] does, decoding the `data.pkl` torch reads once instead of
    /// twice: the scan's decoding of it is installed when it is exactly what the reader would
    /// decode (same bytes, same frame mode, limits no tighter; see `Predecoded::fits`), and the
    /// reader decodes as usual otherwise. The result is the pair `(scan_path(..),
    /// open_with(..))` would give; the catalog reads thousands of small checkpoints this way.
    ///
    /// The file is opened once ([`ckpt_io::open`]) and that one source serves both the scan
    /// and the reader. A local regular file of at most [`SMALL_FILE`] bytes (an object of at
    /// most [`REMOTE_WHOLE`]) is read whole, in one read, and both read that copy (the
    /// catalog's small checkpoints cost one read, not dozens); anything larger is read by
    /// ranges. A path that cannot be opened gets the scan's and the reader's usual reports.
    pub fn scan_and_open(
        path: impl AsRef<Path>,
        scan_limits: &crate::scan::ScanLimits,
        opts: &Options,
    ) -> (crate::scan::FileScan, Result<Checkpoint>) {
        Self::scan_and_open_reading_whole(path.as_ref(), None, scan_limits, opts, SMALL_FILE)
    }

    /// [`Checkpoint::scan_and_open`] of a file or object whose identity is already known
    /// (from the listing that found it: [`ckpt_io::open_known`]), so no request is made to
    /// learn it and every remote read is conditional on that version. For a local path
    /// `identity` is not used (the file is opened and `fstat`ed as usual).
    pub fn scan_and_open_known(
        path: impl AsRef<Path>,
        identity: &Identity,
        scan_limits: &crate::scan::ScanLimits,
        opts: &Options,
    ) -> (crate::scan::FileScan, Result<Checkpoint>) {
        Self::scan_and_open_reading_whole(
            path.as_ref(),
            Some(identity),
            scan_limits,
            opts,
            SMALL_FILE,
        )
    }

    /// [`Checkpoint::scan_and_open`] of a source already open.
    pub fn scan_and_open_source(
        src: Arc<dyn ByteSource>,
        scan_limits: &crate::scan::ScanLimits,
        opts: &Options,
    ) -> (crate::scan::FileScan, Result<Checkpoint>) {
        Self::scan_and_open_in(src, scan_limits, opts, SMALL_FILE)
    }

    /// [`Checkpoint::scan_and_open`], reading local files of at most `small_file` bytes whole.
    fn scan_and_open_reading_whole(
        path: &Path,
        known: Option<&Identity>,
        scan_limits: &crate::scan::ScanLimits,
        opts: &Options,
        small_file: u64,
    ) -> (crate::scan::FileScan, Result<Checkpoint>) {
        crate::bug::failpoint(path);
        let opened = match known {
            Some(id) => ckpt_io::open_known(path, id),
            None => ckpt_io::open(path),
        };
        match opened {
            Ok(src) => Self::scan_and_open_in(src, scan_limits, opts, small_file),
            Err(e) => {
                let scan = crate::scan::file::scan_of_open_error(path, &e);
                (scan, Err(open_error(path, e)))
            }
        }
    }

    /// The scan and the reader on one source (read whole first when small).
    fn scan_and_open_in(
        src: Arc<dyn ByteSource>,
        scan_limits: &crate::scan::ScanLimits,
        opts: &Options,
        small_file: u64,
    ) -> (crate::scan::FileScan, Result<Checkpoint>) {
        let src = whole_if_small(src, small_file);
        let (scan, pre) = crate::scan::file::scan_source_keeping(&src, scan_limits, true);
        let ck = Self::open_window(src, None, opts, pre);
        (scan, ck)
    }

    /// Open a checkpoint stored inside a larger file, at `offset` for `len` bytes (each chunk
    /// of a DCP `*.distcp` file is a complete torch.save archive). All offsets in the returned
    /// checkpoint are relative to the window.
    pub fn open_range(
        path: impl AsRef<Path>,
        offset: u64,
        len: u64,
        opts: &Options,
    ) -> Result<Checkpoint> {
        let src = open_source_at(path.as_ref())?;
        Self::open_window(src, Some((offset, len)), opts, None)
    }

    /// `open_range` on a source already open: the thousands of chunks of a large DCP
    /// checkpoint share one source per `.distcp` file instead of one each (and, for a local
    /// file, its descriptor, so tensor bytes are still copied by the kernel).
    pub fn open_range_in(
        src: Arc<dyn ByteSource>,
        offset: u64,
        len: u64,
        opts: &Options,
    ) -> Result<Checkpoint> {
        Self::open_window(src, Some((offset, len)), opts, None)
    }

    /// `pre`: a scan's decoding of the `data.pkl` torch reads, installed instead of decoding
    /// the same bytes again when it fits (see [`Checkpoint::scan_and_open`]).
    fn open_window(
        src: Arc<dyn ByteSource>,
        window: Option<(u64, u64)>,
        opts: &Options,
        pre: Option<crate::scan::file::Predecoded>,
    ) -> Result<Checkpoint> {
        let path = src.path().to_path_buf();
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let file_len = src.len();
        let (base, size) = match window {
            None => (0, file_len),
            Some((off, len)) => {
                if off.checked_add(len).is_none_or(|e| e > file_len) {
                    return Err(Error::Zip {
                        path,
                        detail: format!(
                            "range {off}+{len} runs past the end of the {file_len}-byte file"
                        ),
                    });
                }
                (off, len)
            }
        };
        if size == 0 {
            return Err(Error::Empty { path });
        }
        // What every container is read from first: all of a small file, else the head (the
        // sniff, a zip's `data.pkl` and small records, a pickle stream) and the tail (a zip's
        // directory), asked for together (one round of requests for an object).
        if wants_hints(&*src) {
            let hint: Vec<Range<u64>> = first_reads(size)
                .into_iter()
                .map(|r| base + r.start..base + r.end)
                .collect();
            src.prefetch(&hint);
        }
        let mut head = vec![0u8; size.min(512) as usize];
        src.read_exact_at(&mut head, base).map_err(io)?;
        let mut ck = Checkpoint {
            path,
            format: Format::Pickle,
            doc: Doc::default(),
            size,
            byteorder: ByteOrder::Little,
            version: None,
            pickle_entry: String::new(),
            pickle_bytes: 0,
            pickle_sha256: String::new(),
            safetensors_metadata: Vec::new(),
            aux_pickles: Vec::new(),
            torchscript: None,
            src: Src(src),
            base,
            storages: StorageIndex::Extents(HashMap::new()),
        };
        if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
            ck.open_zip(opts, pre)?;
            if opts.classify {
                ck.check_storages()?;
            }
        } else if looks_like_safetensors(&head, size) {
            // Before the pickle check: a 128-byte safetensors header starts `80 00 …`, which
            // also looks like a PROTO opcode.
            ck.open_safetensors()?;
        } else if head.len() >= 2 && head[0] == 0x80 && head[1] <= 5 {
            ck.open_pickle_stream(opts)?;
        } else {
            return Err(Error::NotACheckpoint {
                reason: sniff_reason(&head),
                path: ck.path,
            });
        }
        Ok(ck)
    }

    pub(crate) fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.src
            .0
            .read_exact_at(buf, self.base + offset)
            .map_err(|source| Error::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// Whether prefetch hints mean anything for this checkpoint's source (see
    /// [`wants_hints`]); callers skip building them otherwise.
    pub(crate) fn wants_hints(&self) -> bool {
        wants_hints(&*self.src.0)
    }

    /// Tell the source which ranges (relative to this checkpoint, clipped to it) are about
    /// to be read; see [`ByteSource::prefetch`].
    pub(crate) fn prefetch(&self, ranges: &[Range<u64>]) {
        if !self.wants_hints() {
            return;
        }
        let shifted: Vec<Range<u64>> = ranges
            .iter()
            .filter_map(|r| {
                let (s, e) = (r.start.min(self.size), r.end.min(self.size));
                (s < e).then(|| self.base + s..self.base + e)
            })
            .collect();
        if !shifted.is_empty() {
            self.src.0.prefetch(&shifted);
        }
    }

    /// [`member_span`] of the zip entries `names` (those present), for a hint; a data length
    /// above `max` counts as `max` (a reader that refuses it reads no more than its header).
    pub(crate) fn entry_spans<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
        extra: u64,
        max: u64,
    ) -> Vec<Range<u64>> {
        let StorageIndex::Zip { entries, .. } = &self.storages else {
            return Vec::new();
        };
        names
            .into_iter()
            .filter_map(|n| {
                let &(header, size, _) = entries.get(n)?;
                let r = member_span(header, n.len(), size.min(max));
                Some(r.start..r.end.saturating_add(extra))
            })
            .collect()
    }

    /// Read `len` bytes at `offset`, checking the range against the file size first.
    pub fn read_range(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.check_range(offset, len)?;
        let n = usize::try_from(len).map_err(|_| Error::Zip {
            path: self.path.clone(),
            detail: "range too large for memory".into(),
        })?;
        let mut buf = vec![0u8; n];
        self.read_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// Fill `buf` from `offset`, checking the range against the file size first (as
    /// [`Checkpoint::read_range`] does, into a buffer the caller reuses).
    pub(crate) fn read_into(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        self.read_at(buf, offset)
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        let end = offset.checked_add(len).filter(|e| *e <= self.size);
        if end.is_none() {
            return Err(Error::Zip {
                path: self.path.clone(),
                detail: format!(
                    "range {offset}+{len} runs past the end of the {}-byte file",
                    self.size
                ),
            });
        }
        Ok(())
    }

    fn decode_pickle(
        &mut self,
        data: &[u8],
        entry: &str,
        opts: &Options,
        style: PersIdStyle,
    ) -> Result<()> {
        let pickle =
            ckpt_pickle::decode_with(data, &opts.limits).map_err(|source| Error::Pickle {
                path: self.path.clone(),
                entry: entry.to_owned(),
                source,
            })?;
        self.install_pickle(data, pickle, entry, opts, style)
    }

    /// Make `pickle` (decoded from `data`) this checkpoint's document.
    fn install_pickle(
        &mut self,
        data: &[u8],
        pickle: ckpt_pickle::Pickle,
        entry: &str,
        opts: &Options,
        style: PersIdStyle,
    ) -> Result<()> {
        self.pickle_bytes = pickle.end;
        self.pickle_entry = entry.to_owned();
        self.pickle_sha256 =
            crate::tensor::sha256_hex(data.get(..pickle.end as usize).unwrap_or(data));
        if !opts.classify {
            self.doc = Doc::unclassified(pickle);
            return Ok(());
        }
        self.doc = Doc::classify(pickle, style).map_err(|e| Error::Malformed {
            path: self.path.clone(),
            entry: entry.to_owned(),
            offset: e.offset,
            what: e.what,
            detail: e.detail,
        })?;
        Ok(())
    }

    // ------------------------------------------------------------------ zip
    fn open_zip(
        &mut self,
        opts: &Options,
        pre: Option<crate::scan::file::Predecoded>,
    ) -> Result<()> {
        // The central directory as torch's reader (miniz) reads it, parsed once: every entry
        // and, for names given twice, the copy torch reads. Only when that parse fails is the
        // `zip` crate asked (for its error, or an archive it still makes sense of).
        let members = crate::zipdir::central_directory(
            &mut |off, n| {
                self.read_range(off, n)
                    .map_err(|e| std::io::Error::other(e.to_string()))
            },
            self.size,
        );
        let (entries, names, torch_pkl) = match members {
            Ok(members) => {
                let mut entries: HashMap<String, (u64, u64, u16)> =
                    HashMap::with_capacity(members.len());
                let mut names: Vec<String> = Vec::with_capacity(members.len());
                for m in &members {
                    let name = String::from_utf8_lossy(&m.name).into_owned();
                    if entries
                        .insert(name.clone(), (m.header, m.compressed, method_of(m.method)))
                        .is_none()
                    {
                        names.push(name);
                    }
                }
                let torch_pkl = Self::torch_copies(&members, &mut entries);
                (entries, names, torch_pkl)
            }
            Err(_) => {
                let (entries, names) = self.zip_crate_entries()?;
                (entries, names, None)
            }
        };
        // `<root>/data.pkl`; the root is the file stem, `archive`, or anything else.
        let pkl = torch_pkl.or_else(|| {
            names
                .iter()
                .filter(|n| {
                    n.ends_with("data.pkl")
                        && (n.as_str() == "data.pkl" || n.ends_with("/data.pkl"))
                })
                .min_by_key(|n| n.matches('/').count())
                .cloned()
        });
        let Some(pkl) = pkl else {
            let mut listed: Vec<&str> = names.iter().map(String::as_str).take(5).collect();
            if names.len() > 5 {
                listed.push("…");
            }
            return Err(Error::NoDataPkl {
                path: self.path.clone(),
                entries: if listed.is_empty() {
                    "none".into()
                } else {
                    listed.join(", ")
                },
            });
        };
        let root = pkl
            .strip_suffix("data.pkl")
            .unwrap_or("")
            .trim_end_matches('/')
            .to_owned();
        let prefix = if root.is_empty() {
            String::new()
        } else {
            format!("{root}/")
        };
        self.storages = StorageIndex::Zip {
            root: root.clone(),
            entries,
        };
        let (byteorder, format_version, version) = (
            format!("{prefix}byteorder"),
            format!("{prefix}.format_version"),
            format!("{prefix}version"),
        );
        if self.wants_hints() {
            // `data.pkl` and the few bytes after it (torch writes `.format_version`,
            // `.storage_alignment` and `byteorder` there), and the small records wherever
            // they are: one round, usually already covered by the head and the tail.
            let mut hint = self.entry_spans([pkl.as_str()], 4 << 10, opts.max_pickle_bytes);
            hint.extend(self.entry_spans(
                [
                    byteorder.as_str(),
                    format_version.as_str(),
                    version.as_str(),
                ],
                0,
                256,
            ));
            self.prefetch(&hint);
        }
        if let Some(bo) = self.small_entry(&byteorder)?
            && bo.trim() == "big"
        {
            self.byteorder = ByteOrder::Big;
        }
        self.version = match self.small_entry(&format_version)? {
            Some(v) => Some(v.trim().to_owned()),
            None => self.small_entry(&version)?.map(|v| v.trim().to_owned()),
        };
        let data = self.entry_bytes(&pkl, opts.max_pickle_bytes)?;
        self.format = Format::Zip { root };
        match pre.filter(|p| p.fits(&data, &opts.limits)) {
            // The scan decoded these very bytes: the same decoding, not done twice.
            Some(p) => self.install_pickle(&data, p.pickle, &pkl, opts, PersIdStyle::Zip)?,
            None => self.decode_pickle(&data, &pkl, opts, PersIdStyle::Zip)?,
        }
        crate::torchscript::attach(self, &prefix, opts)
    }

    /// The container's name for users: `torchscript` for a TorchScript archive (a zip that
    /// `torch.load` hands to `torch.jit.load`), else [`Format::name`].
    pub fn format_name(&self) -> &'static str {
        if self.torchscript.is_some() {
            "torchscript"
        } else {
            self.format.name()
        }
    }

    /// Point every duplicated name at the copy torch reads, and return the name of the
    /// `data.pkl` torch would read (`<first entry's folder>/data.pkl`, found as miniz finds
    /// it), when there is one.
    fn torch_copies(
        members: &[crate::zipdir::Member],
        entries: &mut HashMap<String, (u64, u64, u16)>,
    ) -> Option<String> {
        let names: Vec<&[u8]> = members.iter().map(|m| m.name.as_slice()).collect();
        let mut folded: Vec<Vec<u8>> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        folded.sort();
        for w in folded.chunk_by(|a, b| a == b).filter(|w| w.len() > 1) {
            if let Some(i) = crate::zipdir::torch_zip_lookup(&names, &w[0]) {
                let m = &members[i];
                for n in names.iter().filter(|n| n.eq_ignore_ascii_case(&w[0])) {
                    entries.insert(
                        String::from_utf8_lossy(n).into_owned(),
                        (m.header, m.compressed, method_of(m.method)),
                    );
                }
            }
        }
        let i = crate::zipdir::torch_data_pkl(&names)?;
        let name = String::from_utf8_lossy(names[i]).into_owned();
        let m = &members[i];
        entries.insert(name.clone(), (m.header, m.compressed, method_of(m.method)));
        Some(name)
    }

    /// The entries as the `zip` crate reads the central directory (one per name): for an
    /// archive our own reading of it refused, so the error (or the reading) is the crate's.
    #[allow(clippy::type_complexity)]
    fn zip_crate_entries(&self) -> Result<(HashMap<String, (u64, u64, u16)>, Vec<String>)> {
        let zerr = |path: &Path, e: zip::result::ZipError| Error::Zip {
            path: path.to_path_buf(),
            detail: e.to_string(),
        };
        let src = self.src.0.clone();
        // Buffered: the central directory is parsed in many small reads.
        let reader = std::io::BufReader::with_capacity(
            64 << 10,
            Window {
                src,
                base: self.base,
                len: self.size,
                pos: 0,
            },
        );
        let archive = zip::ZipArchive::new(reader).map_err(|e| zerr(&self.path, e))?;
        let mut entries: HashMap<String, (u64, u64, u16)> = HashMap::with_capacity(archive.len());
        let mut names: Vec<String> = Vec::new();
        for i in 0..archive.len() {
            let e = archive.by_index_data(i).map_err(|e| zerr(&self.path, e))?;
            let name = String::from_utf8_lossy(e.name_raw()).into_owned();
            let method: u16 = match e.compression() {
                zip::CompressionMethod::Stored => 0,
                m if m == zip::CompressionMethod::DEFLATE => 8,
                _ => u16::MAX,
            };
            entries.insert(
                name.clone(),
                (e.header_start(), e.compressed_size(), method),
            );
            names.push(name);
        }
        Ok((entries, names))
    }

    /// Absolute offset and length of a stored zip entry's data (reads its local header).
    pub(crate) fn zip_entry_extent(&self, name: &str) -> Result<Option<Extent>> {
        match self.zip_entry_data(name)? {
            None => Ok(None),
            Some((ext, 0)) => Ok(Some(ext)),
            Some((_, method)) => Err(Error::Compressed {
                path: self.path.clone(),
                entry: name.to_owned(),
                method: if method == 8 {
                    "deflate".into()
                } else {
                    "a method torch cannot read".into()
                },
            }),
        }
    }

    /// A zip entry's data as stored (deflated or not; `torch.jit.save` compresses `code/`)
    /// and whether it is deflated. `Ok(None)` when more than `max` bytes are stored.
    pub(crate) fn entry_raw(&self, name: &str, max: u64) -> Result<Option<(Vec<u8>, bool)>> {
        let Some((ext, method)) = self.zip_entry_data(name)? else {
            return Err(Error::Zip {
                path: self.path.clone(),
                detail: format!("entry {name} vanished"),
            });
        };
        if ext.len > max {
            return Ok(None);
        }
        Ok(Some((self.read_range(ext.offset, ext.len)?, method != 0)))
    }

    /// Where a zip entry's (possibly compressed) data is, and its compression method.
    fn zip_entry_data(&self, name: &str) -> Result<Option<(Extent, u16)>> {
        let StorageIndex::Zip { entries, .. } = &self.storages else {
            return Ok(None);
        };
        let Some(&(header, size, method)) = entries.get(name) else {
            return Ok(None);
        };
        let mut lh = [0u8; 30];
        if header.checked_add(30).is_none_or(|e| e > self.size) {
            return Err(Error::Zip {
                path: self.path.clone(),
                detail: format!("local header of {name} lies past the end of the file"),
            });
        }
        self.read_at(&mut lh, header)?;
        if lh[..4] != *b"PK\x03\x04" {
            return Err(Error::Zip {
                path: self.path.clone(),
                detail: format!("bad local header signature for {name}"),
            });
        }
        let name_len = u64::from(u16::from_le_bytes([lh[26], lh[27]]));
        let extra_len = u64::from(u16::from_le_bytes([lh[28], lh[29]]));
        let data = header + 30 + name_len + extra_len;
        if data.checked_add(size).is_none_or(|e| e > self.size) {
            return Err(Error::Zip {
                path: self.path.clone(),
                detail: format!(
                    "entry {name} claims {size} bytes at offset {data}, past the end of the {}-byte file",
                    self.size
                ),
            });
        }
        Ok(Some((
            Extent {
                offset: data,
                len: size,
            },
            method,
        )))
    }

    /// An entry's bytes, stored or deflated (torch reads deflated records), never more than
    /// `max` of them: a deflated entry that would inflate past `max` (a zip bomb) is refused.
    pub(crate) fn entry_bytes(&self, name: &str, max: u64) -> Result<Vec<u8>> {
        let (ext, method) = self.zip_entry_data(name)?.ok_or_else(|| Error::Zip {
            path: self.path.clone(),
            detail: format!("entry {name} vanished"),
        })?;
        if ext.len > max {
            return Err(Error::PickleTooLarge {
                path: self.path.clone(),
                entry: name.to_owned(),
                size: ext.len,
                limit: max,
            });
        }
        let raw = self.read_range(ext.offset, ext.len)?;
        match method {
            0 => Ok(raw),
            8 => crate::zipdir::inflate(
                &raw,
                max.min(crate::scan::MAX_INFLATED),
                self.claimed_size(name),
            )
            .map_err(|detail| Error::Zip {
                path: self.path.clone(),
                detail: format!("entry {name}: {detail}"),
            }),
            _ => Err(Error::Compressed {
                path: self.path.clone(),
                entry: name.to_owned(),
                method: "a method torch cannot read".into(),
            }),
        }
    }

    /// The uncompressed size an entry's local header claims (absent with a data descriptor):
    /// a zip bomb that says what it is gets refused before anything is inflated.
    fn claimed_size(&self, name: &str) -> Option<u64> {
        let StorageIndex::Zip { entries, .. } = &self.storages else {
            return None;
        };
        let &(header, _, _) = entries.get(name)?;
        let lh = self.read_range(header, 30).ok()?;
        let n = u64::from(u32::from_le_bytes([lh[22], lh[23], lh[24], lh[25]]));
        (n != 0 && n != 0xFFFF_FFFF).then_some(n)
    }

    fn small_entry(&self, name: &str) -> Result<Option<String>> {
        match self.zip_entry_data(name)? {
            Some((ext, _)) if ext.len <= 256 => {
                let b = self.entry_bytes(name, 4096)?;
                Ok(Some(String::from_utf8_lossy(&b).into_owned()))
            }
            _ => Ok(None),
        }
    }

    // ------------------------------------------------------------------ pickle streams
    /// Decode one pickle starting at `offset`, reading a growing window of the file so that we
    /// never read more than the pickle (plus slack) and never the storages after it.
    fn decode_at(
        &self,
        offset: u64,
        opts: &Options,
        what: &str,
    ) -> Result<(Vec<u8>, ckpt_pickle::Pickle)> {
        let mut window: u64 = 64 << 10;
        loop {
            let avail = self.size.saturating_sub(offset);
            let len = window.min(avail);
            let buf = self.read_range(offset, len)?;
            // A window that ends before the pickle's STOP cannot decode: say so from the
            // opcodes alone instead of decoding the prefix (which builds as many values as it
            // holds, only to throw them away).
            let result = if len < avail && ckpt_pickle::find_stop(&buf).is_none() {
                Err(ckpt_pickle::Error {
                    offset: len,
                    kind: PickleErrorKind::Truncated,
                })
            } else {
                ckpt_pickle::decode_with(&buf, &opts.limits)
            };
            match result {
                Ok(p) => return Ok((buf, p)),
                Err(e) if e.kind == PickleErrorKind::Truncated && len < avail => {
                    if window >= opts.max_pickle_bytes {
                        return Err(Error::PickleTooLarge {
                            path: self.path.clone(),
                            entry: what.to_owned(),
                            size: window,
                            limit: opts.max_pickle_bytes,
                        });
                    }
                    window = window.saturating_mul(4);
                }
                Err(e)
                    if matches!(e.kind, PickleErrorKind::LengthPastEnd { .. }) && len < avail =>
                {
                    window = window.saturating_mul(4).max(len + 1);
                    if window > opts.max_pickle_bytes.saturating_mul(2) {
                        return Err(Error::Pickle {
                            path: self.path.clone(),
                            entry: what.to_owned(),
                            source: e,
                        });
                    }
                }
                Err(mut e) => {
                    e.offset = e.offset.saturating_add(0);
                    return Err(Error::Pickle {
                        path: self.path.clone(),
                        entry: what.to_owned(),
                        source: e,
                    });
                }
            }
        }
    }

    fn open_pickle_stream(&mut self, opts: &Options) -> Result<()> {
        // Legacy files start with a pickled magic number; anything else is a bare pickle.
        let (first_buf, first) = self.decode_at(0, opts, "pickle")?;
        let first_end = first.end;
        let is_magic = crate::scan::file::is_legacy_magic(&first);
        if !is_magic {
            self.format = Format::Pickle;
            // Already decoded: install it rather than decode it a second time.
            let end = first_end as usize;
            let data = first_buf.get(..end).unwrap_or(&first_buf);
            return self.install_pickle(data, first, "pickle", opts, PersIdStyle::Zip);
        }
        self.format = Format::Legacy;
        let mut pos = first_end;
        self.aux_pickles.push(("legacy magic number".into(), first));
        let (_, proto) = self.decode_at(pos, opts, "legacy protocol record")?;
        if let Value::Int(v) = proto.get(proto.root()) {
            self.version = Some(v.to_string());
        }
        pos += proto.end;
        self.aux_pickles
            .push(("legacy protocol record".into(), proto));
        let (_, sys_info) = self.decode_at(pos, opts, "legacy sys_info record")?;
        if let Some(le) = sys_info.dict_get(sys_info.root(), "little_endian")
            && matches!(sys_info.get(le), Value::Bool(false))
        {
            self.byteorder = ByteOrder::Big;
        }
        pos += sys_info.end;
        self.aux_pickles
            .push(("legacy sys_info record".into(), sys_info));
        let (buf, main) = self.decode_at(pos, opts, "legacy pickle")?;
        let main_end = main.end;
        let data = buf.get(..main_end as usize).unwrap_or(&buf);
        self.install_pickle(data, main, "legacy pickle", opts, PersIdStyle::Legacy)?;
        pos += main_end;
        let keys = match self.decode_at(pos, opts, "legacy storage key list") {
            Ok((_, k)) => k,
            // A legacy stream whose pickle names no storages may end right there.
            Err(_) if pos == self.size && self.doc.storages().next().is_none() => return Ok(()),
            Err(e) => return Err(e),
        };
        pos += keys.end;
        if !opts.classify {
            self.aux_pickles
                .push(("legacy storage key list".into(), keys));
            return Ok(());
        }
        let key_list: Vec<String> = match keys.get(keys.root()) {
            Value::List(items) | Value::Tuple(items) => items
                .iter()
                .filter_map(|k| match keys.get(*k) {
                    Value::Str(s) => Some(s.to_owned()),
                    Value::Int(i) => Some(i.to_string()),
                    _ => None,
                })
                .collect(),
            _ => {
                return Err(Error::Legacy {
                    path: self.path.clone(),
                    detail: "storage key list is not a list".into(),
                });
            }
        };
        // Element sizes per key, from the storages the pickle references.
        let mut elem: HashMap<&str, u64> = HashMap::new();
        for s in self.doc.storages() {
            elem.insert(s.key.as_str(), s.dtype.size());
        }
        let mut extents = HashMap::with_capacity(key_list.len());
        for key in &key_list {
            let mut n = [0u8; 8];
            if pos.checked_add(8).is_none_or(|e| e > self.size) {
                return Err(Error::Legacy {
                    path: self.path.clone(),
                    detail: format!("truncated before storage {key} at byte {pos}"),
                });
            }
            self.read_at(&mut n, pos)?;
            let numel = i64::from_le_bytes(n);
            let esize = elem.get(key.as_str()).copied().unwrap_or(1);
            let len = u64::try_from(numel)
                .ok()
                .and_then(|n| n.checked_mul(esize))
                .ok_or_else(|| Error::Legacy {
                    path: self.path.clone(),
                    detail: format!("storage {key} has invalid size {numel}"),
                })?;
            let data = pos + 8;
            if data.checked_add(len).is_none_or(|e| e > self.size) {
                return Err(Error::Legacy {
                    path: self.path.clone(),
                    detail: format!(
                        "storage {key} claims {len} bytes at byte {data}, past the end of the file"
                    ),
                });
            }
            extents.insert(key.clone(), Extent { offset: data, len });
            pos = data + len;
        }
        self.storages = StorageIndex::Extents(extents);
        Ok(())
    }

    // ------------------------------------------------------------------ safetensors
    /// Read and validate the header (see [`crate::safetensors`]: typed records, limits from
    /// the file's own size), then give each tensor a node and an extent.
    fn open_safetensors(&mut self) -> Result<()> {
        let bad = |path: &Path, e: crate::safetensors::HeaderError| Error::Safetensors {
            path: path.to_path_buf(),
            detail: e.to_string(),
        };
        let mut n = [0u8; 8];
        self.read_at(&mut n, 0)?;
        let hlen = u64::from_le_bytes(n);
        crate::safetensors::check_header_len(hlen, self.size).map_err(|e| bad(&self.path, e))?;
        let header = self.read_range(8, hlen)?;
        self.pickle_sha256 = crate::tensor::sha256_hex(&header);
        let data_start = 8 + hlen;
        let parsed = crate::safetensors::parse_header(&header, self.size - data_start)
            .map_err(|e| bad(&self.path, e))?;
        drop(header);
        // Node ids: the names are the document's pickle strings `0..n` (one shared text
        // table; plain nodes cost a bit each), the tensors `n..2n`, the dict `2n`.
        let n = parsed.len();
        let mut names = ckpt_pickle::Pickle::new();
        for t in parsed.tensors() {
            names.push(Value::Str(t.name));
        }
        let mut doc = Doc::unclassified(names);
        doc.reserve_nodes(n.saturating_add(1));
        let mut items: Vec<(NodeId, NodeId)> = Vec::with_capacity(n);
        let mut extents = Vec::with_capacity(n);
        for (i, t) in parsed.tensors().enumerate() {
            let numel = t.numel();
            let mut stride = vec![0i64; t.shape.len()];
            let mut acc: i64 = 1;
            for (i, d) in t.shape.iter().enumerate().rev() {
                stride[i] = acc;
                acc = acc.saturating_mul(i64::try_from(*d).unwrap_or(i64::MAX));
            }
            extents.push(Extent {
                offset: data_start + t.begin,
                len: t.end - t.begin,
            });
            let t_id = doc.push_node(Node::Tensor(Box::new(TensorRef {
                dtype: t.dtype,
                stride,
                offset: 0,
                storage: Some(StorageRef {
                    key: t.name.to_owned(),
                    dtype: t.dtype,
                    numel,
                    location: "cpu".into(),
                    view_offset_bytes: 0,
                }),
                shape: t.shape.to_vec(),
                requires_grad: false,
                kind: TensorKind::Tensor,
            })));
            items.push((NodeId(u32::try_from(i).unwrap_or(u32::MAX)), t_id));
        }
        let root = doc.push_node(Node::Dict(items));
        doc.set_root(root);
        let crate::safetensors::Header {
            by_name, metadata, ..
        } = parsed;
        self.safetensors_metadata = metadata;
        self.doc = doc;
        self.storages = StorageIndex::Named { by_name, extents };
        self.format = Format::Safetensors;
        self.pickle_entry = "header".into();
        self.pickle_bytes = hlen;
        Ok(())
    }

    /// A safetensors storage by name: a binary search of the name index (see
    /// [`StorageIndex::Named`]).
    fn named_extent(&self, by_name: &[u32], extents: &[Extent], key: &str) -> Option<Extent> {
        // The names are the pickle's strings `0..n` (read there directly: no node lookup).
        let name = |i: u32| self.doc.pickle.as_str(NodeId(i)).unwrap_or("");
        let at = by_name.binary_search_by(|i| name(*i).cmp(key)).ok()?;
        extents.get(*by_name.get(at)? as usize).copied()
    }

    /// Where a storage's bytes are in the file.
    pub(crate) fn storage_extent(&self, s: &StorageRef) -> Result<Extent> {
        match &self.storages {
            StorageIndex::Zip { root, .. } => {
                let name = if root.is_empty() {
                    format!("data/{}", s.key)
                } else {
                    format!("{root}/data/{}", s.key)
                };
                self.zip_entry_extent(&name)?
                    .ok_or_else(|| Error::MissingStorage {
                        path: self.path.clone(),
                        key: name,
                    })
            }
            StorageIndex::Extents(m) => {
                m.get(&s.key).copied().ok_or_else(|| Error::MissingStorage {
                    path: self.path.clone(),
                    key: s.key.clone(),
                })
            }
            StorageIndex::Named { by_name, extents } => self
                .named_extent(by_name, extents, &s.key)
                .ok_or_else(|| Error::MissingStorage {
                    path: self.path.clone(),
                    key: s.key.clone(),
                }),
        }
    }

    /// Where a small storage's bytes are likely to be, for a hint, without reading anything
    /// (a zip member's local header is not read: see [`member_span`]). `None` for a storage
    /// over 4 KiB (a one-element view of a large storage is not worth fetching whole).
    pub(crate) fn storage_hint(&self, s: &StorageRef) -> Option<Range<u64>> {
        const SMALL: u64 = 4 << 10;
        match &self.storages {
            StorageIndex::Zip { root, entries } => {
                let name = if root.is_empty() {
                    format!("data/{}", s.key)
                } else {
                    format!("{root}/data/{}", s.key)
                };
                let &(header, size, _) = entries.get(&name)?;
                (size <= SMALL).then(|| member_span(header, name.len(), size))
            }
            StorageIndex::Extents(m) => m
                .get(&s.key)
                .filter(|e| e.len <= SMALL)
                .map(|e| e.offset..e.offset.saturating_add(e.len)),
            StorageIndex::Named { by_name, extents } => self
                .named_extent(by_name, extents, &s.key)
                .filter(|e| e.len <= SMALL)
                .map(|e| e.offset..e.offset.saturating_add(e.len)),
        }
    }

    /// Where a storage's bytes are in the file: (absolute offset, length). What a memory map
    /// of the file serves tensors from, as `torch.load(mmap=True)` does; a compressed zip
    /// member has no such place and is an error, as it is for torch.
    pub fn storage_span(&self, s: &StorageRef) -> Result<(u64, u64)> {
        let e = self.storage_extent(s)?;
        Ok((e.offset, e.len))
    }

    /// A zip storage's bytes when its member is deflate-compressed (torch inflates such
    /// members; nothing can map them): at most `max` bytes inflated, the storage's size as the
    /// pickle states it, so a member claiming more is refused, not inflated.
    pub fn storage_inflated(&self, s: &StorageRef, max: u64) -> Result<Vec<u8>> {
        let StorageIndex::Zip { root, .. } = &self.storages else {
            return Err(Error::MissingStorage {
                path: self.path.clone(),
                key: s.key.clone(),
            });
        };
        let name = if root.is_empty() {
            format!("data/{}", s.key)
        } else {
            format!("{root}/data/{}", s.key)
        };
        // A tiny member deflates to more bytes than it holds: the stored size gets a little
        // room; the inflated bytes are still capped near `max`.
        self.entry_bytes(&name, max.saturating_add(1024))
    }

    /// Check that every storage the pickle references exists (cheap: zip directory lookups).
    pub fn check_storages(&self) -> Result<()> {
        match &self.storages {
            StorageIndex::Zip { root, entries } => {
                let prefix = if root.is_empty() {
                    "data/".to_owned()
                } else {
                    format!("{root}/data/")
                };
                let mut name = String::with_capacity(prefix.len() + 16);
                for s in self.doc.storages() {
                    name.clear();
                    name.push_str(&prefix);
                    name.push_str(&s.key);
                    if !entries.contains_key(&name) {
                        return Err(Error::MissingStorage {
                            path: self.path.clone(),
                            key: name,
                        });
                    }
                }
                Ok(())
            }
            StorageIndex::Extents(m) => {
                for s in self.doc.storages() {
                    if !m.contains_key(&s.key) {
                        return Err(Error::MissingStorage {
                            path: self.path.clone(),
                            key: s.key.clone(),
                        });
                    }
                }
                Ok(())
            }
            StorageIndex::Named { by_name, extents } => {
                for s in self.doc.storages() {
                    if self.named_extent(by_name, extents, &s.key).is_none() {
                        return Err(Error::MissingStorage {
                            path: self.path.clone(),
                            key: s.key.clone(),
                        });
                    }
                }
                Ok(())
            }
        }
    }
}

/// A safetensors file starts with a little-endian header length and `{"` (or `{}`). The
/// length is not compared with the file here: a header claiming more than the file holds is
/// still a (broken) safetensors file, and `open_safetensors` says so.
fn looks_like_safetensors(head: &[u8], _size: u64) -> bool {
    if head.len() < 10 {
        return false;
    }
    let n = u64::from_le_bytes([
        head[0], head[1], head[2], head[3], head[4], head[5], head[6], head[7],
    ]);
    n >= 2
        && n <= crate::safetensors::MAX_HEADER_BYTES.max(1 << 32)
        && head[8] == b'{'
        && matches!(head[9], b'"' | b'}' | b' ' | b'\n' | b'\r' | b'\t')
}

/// A one-phrase guess of what a non-checkpoint file is.
fn sniff_reason(head: &[u8]) -> String {
    if head.starts_with(b"version https://git-lfs.github.com/spec") {
        return "Git LFS pointer file (the real file was never fetched: run `git lfs pull`)".into();
    }
    if head.len() > 262 && &head[257..262] == b"ustar" {
        return "tar archive (torch < 0.1.10 tar checkpoints are not supported)".into();
    }
    if head.starts_with(b"\x89HDF") {
        return "HDF5 file (Keras/TensorFlow weights?)".into();
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        return "gzip-compressed file".into();
    }
    if head.starts_with(b"GGUF") {
        return "GGUF file (llama.cpp)".into();
    }
    if std::str::from_utf8(head).is_ok() && head.iter().all(|b| *b >= 0x20 || b"\n\r\t".contains(b))
    {
        return "a text file".into();
    }
    let hex: Vec<String> = head.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("unrecognized content (starts with {})", hex.join(" "))
}

/// A byte range of a source as a `Read + Seek` of its own (for the zip reader).
struct Window {
    src: Arc<dyn ByteSource>,
    base: u64,
    len: u64,
    pos: u64,
}

impl std::io::Read for Window {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        let at = self.base + self.pos;
        self.src.read_exact_at(&mut buf[..n], at)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl std::io::Seek for Window {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let new = match to {
            std::io::SeekFrom::Start(p) => Some(p),
            std::io::SeekFrom::End(d) => self.len.checked_add_signed(d),
            std::io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start of the window",
            )),
        }
    }
}

/// Files of at most this many bytes are read whole by [`Checkpoint::scan_and_open`].
pub const SMALL_FILE: u64 = 1 << 20;

/// `src` itself, or (when it is small enough to be read whole: a local file of at most
/// `small_file` bytes, an object of at most [`REMOTE_WHOLE`] and `small_file`) all its bytes in memory, read
/// in one read, with its identity. A read that fails keeps `src`: reading it by ranges then
/// reports the problem where it is.
fn whole_if_small(src: Arc<dyn ByteSource>, small_file: u64) -> Arc<dyn ByteSource> {
    if src.as_bytes().is_some() {
        return src;
    }
    let limit = if src.as_file().is_some() {
        small_file
    } else {
        REMOTE_WHOLE.min(small_file)
    };
    let len = src.len();
    if len > limit {
        return src;
    }
    let Ok(n) = usize::try_from(len) else {
        return src;
    };
    let mut bytes = vec![0u8; n];
    if src.read_exact_at(&mut bytes, 0).is_err() {
        return src;
    }
    ckpt_io::mem(src.path(), bytes.into(), src.identity().clone())
}

/// A zip compression method as the storage index keeps it: 0 stored, 8 deflate, anything else
/// unsupported (`u16::MAX`).
fn method_of(method: u16) -> u16 {
    match method {
        0 => 0,
        8 => 8,
        _ => u16::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::View;

    /// Every regular file under `dir`, sorted (symlinks not followed).
    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let ft = e.file_type().unwrap();
                if ft.is_dir() {
                    todo.push(e.path());
                } else if ft.is_file() {
                    out.push(e.path());
                }
            }
        }
        out.sort();
        out
    }

    /// `s` with the entries of every `by_name: {…}` map (a TorchScript class table, a hash
    /// map whose Debug order differs between two instances) sorted.
    fn canonical(s: &str) -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find("by_name: {") {
            let start = i + "by_name: {".len();
            out.push_str(&rest[..start]);
            let body = &rest[start..];
            // Split the map's entries at depth 0, outside strings.
            let (mut depth, mut in_str, mut esc) = (0i32, false, false);
            let mut entries = Vec::new();
            let mut from = 0;
            let mut end = body.len();
            for (k, c) in body.char_indices() {
                if in_str {
                    match (esc, c) {
                        (true, _) => esc = false,
                        (false, '\\') => esc = true,
                        (false, '"') => in_str = false,
                        _ => {}
                    }
                    continue;
                }
                match c {
                    '"' => in_str = true,
                    '{' | '[' | '(' => depth += 1,
                    '}' | ']' | ')' if depth > 0 => depth -= 1,
                    '}' => {
                        end = k;
                        break;
                    }
                    ',' if depth == 0 => {
                        entries.push(body[from..k].trim());
                        from = k + 1;
                    }
                    _ => {}
                }
            }
            entries.push(body[from..end].trim());
            entries.sort();
            out.push_str(&entries.join(", "));
            rest = &body[end..];
        }
        out.push_str(rest);
        out
    }

    /// What a checkpoint is, as text: every field but the file handle (its Debug names a
    /// descriptor number), hash maps sorted.
    fn shown(ck: &Result<Checkpoint>) -> String {
        let ck = match ck {
            Ok(ck) => ck,
            Err(e) => return format!("error: {e}"),
        };
        let storages = match &ck.storages {
            StorageIndex::Zip { root, entries } => {
                format!(
                    "zip {root:?} {:?}",
                    entries.iter().collect::<std::collections::BTreeMap<_, _>>()
                )
            }
            StorageIndex::Extents(m) => {
                format!(
                    "extents {:?}",
                    m.iter().collect::<std::collections::BTreeMap<_, _>>()
                )
            }
            StorageIndex::Named { by_name, extents } => {
                format!("named {by_name:?} {extents:?}")
            }
        };
        canonical(&format!(
            "{:?}\n{:?}\n{} {:?} {:?} {:?} {} {} {:?}\n{:?}\n{:?}\n{} {storages}",
            ck.format,
            ck.doc,
            ck.size,
            ck.byteorder,
            ck.version,
            ck.pickle_entry,
            ck.pickle_bytes,
            ck.pickle_sha256,
            ck.safetensors_metadata,
            ck.aux_pickles,
            ck.torchscript,
            ck.base,
        ))
    }

    /// The bytes (or the error) of the first tensors of a checkpoint, read as `tensor_sha256`
    /// reads them: from the snapshot when there is one, else from the file.
    fn tensor_bytes(ck: &Checkpoint) -> Vec<String> {
        (0..ck.doc.len())
            .filter_map(|i| match ck.doc.view(NodeId(i as u32)) {
                View::Tensor(t) if t.numel().saturating_mul(t.dtype.size()) <= 1 << 16 => {
                    Some(match ck.read_tensor(t, "t") {
                        Ok(b) => format!("{b:?}"),
                        Err(e) => format!("error: {e}"),
                    })
                }
                _ => None,
            })
            .take(8)
            .collect()
    }

    /// `scan_and_open` gives exactly what `scan_path` and `open_with` give one after the
    /// other, for every file under `dirs`; returns how many files reused the scan's decoding.
    fn scan_and_open_equals_scan_then_open(dirs: &[PathBuf]) -> (usize, usize) {
        let limits = crate::scan::ScanLimits::default();
        let opts = Options::default();
        let (mut files, mut reused) = (0, 0);
        for dir in dirs {
            for f in files_under(dir) {
                files += 1;
                let scan_alone = format!("{:?}", crate::scan::scan_path(&f, &limits));
                let ck_alone = shown(&Checkpoint::open_with(&f, &opts));
                // Read whole (the default for small files, then for all), and record by record.
                for small in [SMALL_FILE, u64::MAX, 0] {
                    let (scan, ck) =
                        Checkpoint::scan_and_open_reading_whole(&f, None, &limits, &opts, small);
                    let at = format!("{} (whole up to {small} bytes)", f.display());
                    assert_eq!(format!("{scan:?}"), scan_alone, "{at}");
                    assert_eq!(shown(&ck), ck_alone, "{at}");
                    if let Ok(ck) = &ck {
                        let ck_file = Checkpoint::open_with(&f, &opts).unwrap();
                        assert_eq!(tensor_bytes(ck), tensor_bytes(&ck_file), "{at}");
                    }
                }
                let (_, pre) = crate::scan::file::scan_path_keeping(&f, &limits, true);
                if pre.is_some() {
                    reused += 1;
                }
            }
        }
        (files, reused)
    }

    fn workspace() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// The catalog's one-decode path changes nothing, on every fixture and example: hostile
    /// zips (duplicated `data.pkl`, frames across ends, bombs), legacy files, TorchScript,
    /// safetensors, damaged archives. And it does reuse the decoding where it can.
    #[test]
    fn scan_and_open_is_scan_then_open_on_every_fixture() {
        let w = workspace();
        let (files, reused) =
            scan_and_open_equals_scan_then_open(&[w.join("fixtures"), w.join("examples")]);
        assert!(files >= 300, "only {files} files");
        assert!(
            reused >= 20,
            "only {reused} of {files} files reused the scan's decoding"
        );
    }

    /// The same on the reference corpus (`../shared/corpus/data` or `$CKPT_CORPUS`).
    #[test]
    #[ignore = "needs ../shared/corpus"]
    fn scan_and_open_is_scan_then_open_on_the_corpus() {
        let dir = std::env::var_os("CKPT_CORPUS")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("../shared/corpus/data"));
        assert!(
            dir.join("expected").is_dir(),
            "corpus not found (set CKPT_CORPUS)"
        );
        let (files, reused) = scan_and_open_equals_scan_then_open(&[dir]);
        assert!(
            files >= 100 && reused >= 20,
            "{files} files, {reused} reused"
        );
    }

    /// The scan's decoding is handed over only for what the reader would decode alike: other
    /// bytes, another frame mode or a tighter limit make it decode again.
    #[test]
    fn a_predecoded_pickle_fits_only_the_same_bytes_mode_and_looser_limits() {
        let p = workspace().join("examples/lightning");
        let f = files_under(&p)
            .into_iter()
            .find(|f| f.extension().is_some_and(|e| e == "ckpt"))
            .unwrap();
        let (_, pre) =
            crate::scan::file::scan_path_keeping(&f, &crate::scan::ScanLimits::default(), true);
        let pre = pre.expect("the scan decoded data.pkl");
        let bytes = pre.bytes.clone();
        let open = Limits::default();
        assert!(pre.fits(&bytes, &open));
        assert!(!pre.fits(&bytes[..bytes.len() - 1], &open));
        let mut other = bytes.clone();
        other[bytes.len() / 2] ^= 1;
        assert!(!pre.fits(&other, &open));
        let buffer = Limits {
            frames: ckpt_pickle::FrameMode::Buffer,
            ..open
        };
        assert!(!pre.fits(&bytes, &buffer));
        let tight = Limits {
            max_memo: pre.limits.max_memo - 1,
            ..open
        };
        assert!(!pre.fits(&bytes, &tight));
        // Exactly the scan's limits fit.
        assert!(pre.fits(&bytes, &pre.limits));
        // The small file was read whole; a Debug of the checkpoint does not list its bytes.
        let (_, ck) =
            Checkpoint::scan_and_open(&f, &crate::scan::ScanLimits::default(), &Options::default());
        let size = std::fs::metadata(&f).unwrap().len();
        assert_eq!(
            format!("{:?}", ck.unwrap().src),
            format!("Src(<in memory, {size} bytes>)")
        );
    }

    /// A safetensors file whose header is 128 bytes starts `80 00 00 …`, which is also how a
    /// pickle's PROTO opcode looks; it must still be read as safetensors.
    #[test]
    fn a_128_byte_safetensors_header_is_not_a_pickle() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.safetensors");
        let mut header = String::from(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#);
        while header.len() < 128 {
            header.push(' ');
        }
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&[0u8; 8]);
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(bytes[0], 0x80);
        let ck = Checkpoint::open(&p).unwrap();
        assert_eq!(ck.format, Format::Safetensors);
    }

    #[test]
    fn a_range_inside_a_file_opens_as_its_own_checkpoint() {
        let d = tempfile::tempdir().unwrap();
        let inner = d.path().join("inner.pt");
        ckpt_test_support::write_lightning_checkpoint(
            &inner,
            &ckpt_test_support::model_tensors(2, 4096),
        )
        .unwrap();
        let body = std::fs::read(&inner).unwrap();
        let outer = d.path().join("outer.distcp");
        let mut bytes = vec![7u8; 1000];
        bytes.extend_from_slice(&body);
        bytes.extend_from_slice(&[9u8; 500]);
        std::fs::write(&outer, &bytes).unwrap();
        let ck =
            Checkpoint::open_range(&outer, 1000, body.len() as u64, &Options::default()).unwrap();
        assert_eq!(ck.summary_with(Vec::new()).epoch, Some(3));
        let whole = Checkpoint::open(&inner).unwrap();
        let t = |c: &Checkpoint| match c
            .doc
            .view(c.doc.at_path(c.doc.root(), "state_dict").unwrap())
        {
            View::Dict(items) => match c.doc.view(items[0].1) {
                View::Tensor(t) => c.tensor_sha256(t, "x").unwrap(),
                _ => panic!("not a tensor"),
            },
            _ => panic!("no state dict"),
        };
        assert_eq!(t(&ck), t(&whole));
        assert!(
            Checkpoint::open_range(&outer, 1000, bytes.len() as u64, &Options::default()).is_err()
        );
    }
}

#[cfg(test)]
#[path = "container_reads_tests.rs"]
mod reads_tests;

//! The decoder loop. One opcode at a time, no recursion: the depth of the input never becomes
//! depth of the Rust stack.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;

use crate::error::{Error, ErrorKind};
use crate::opcode::{Arg, Opcode};
use crate::value::{
    ArenaFull, BigInt, Construct, Global, GlobalSite, Object, Pickle, Tag, Value, ValueId,
};

/// Bounds on what one pickle may make the decoder hold. The defaults are far above any real
/// checkpoint (a 70B-parameter model's pickle has ~10^5 values) and far below what would hurt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Values in the arena (each opcode creates at most one).
    pub max_values: usize,
    /// Entries on the VM stack at once.
    pub max_stack: usize,
    /// Open MARKs at once.
    pub max_marks: usize,
    /// Memo entries.
    pub max_memo: usize,
    /// Items in one list, tuple, dict or set.
    pub max_container_len: usize,
    /// Bytes of one LONG1/LONG4 integer (Python itself refuses to print ints over 4300 digits).
    pub max_int_bytes: usize,
    /// How FRAME opcodes shape what is read (see [`FrameMode`]).
    pub frames: FrameMode,
}

/// How the decoder reads a stream with FRAME opcodes. CPython's C unpickler (`_pickle.c`)
/// treats a frame differently depending on where its bytes come from, and the two readings
/// part ways exactly when an opcode crosses the end of a frame, which `pickle` never writes
/// but an attacker can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FrameMode {
    /// `pickle.load(file)` on a stream without `peek` — what `torch.load` does for
    /// `data.pkl` (it wraps the record in `io.BytesIO`). `load_frame` reads the whole frame
    /// into the unpickler's buffer; a later read that does not fit in what is left of that
    /// buffer drops the rest of it and reads fresh bytes from the stream *after* the frame
    /// (`_Unpickler_ReadImpl` → `_Unpickler_ReadFromFile`). Lines (`readline`) behave the
    /// same. Only BINBYTES/SHORT_BINBYTES/BINBYTES8/BYTEARRAY8 payloads are read with
    /// `_Unpickler_ReadInto`, which takes the buffer's tail and continues from the stream, so
    /// they stay contiguous.
    #[default]
    Stream,
    /// `pickle.loads(bytes)`: the whole input is the buffer, FRAME only checks that its
    /// length is present and every read is contiguous.
    Buffer,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_values: 16 << 20,
            // Python's pickler never stacks more than a container's items at once, and writes
            // lists, dicts and sets in batches of 1,000 (APPENDS/SETITEMS/ADDITEMS): 1M is far
            // above any real pickle, and a stack flood costs 4x less memory than at 4M.
            max_stack: 1 << 20,
            max_marks: 1 << 20,
            max_memo: 8 << 20,
            max_container_len: 8 << 20,
            max_int_bytes: 8 << 10,
            frames: FrameMode::default(),
        }
    }
}

/// Decode one pickle from the start of `data` (trailing bytes after STOP are left alone; see
/// [`Pickle::end`]) with default limits.
pub fn decode(data: &[u8]) -> Result<Pickle, Error> {
    decode_with(data, &Limits::default())
}

/// Decode one pickle with explicit limits.
pub fn decode_with(data: &[u8], limits: &Limits) -> Result<Pickle, Error> {
    match decode_partial(data, limits) {
        (p, None) => Ok(p),
        (_, Some(e)) => Err(e),
    }
}

/// Decode one pickle and return what was decoded even when decoding fails: the globals and
/// extension codes seen before the error are exactly what `pickle.load` would already have
/// imported by then, so a security scan must keep them (a truncated hostile pickle is still
/// hostile). On error the returned arena has no root.
pub fn decode_partial(data: &[u8], limits: &Limits) -> (Pickle, Option<Error>) {
    // Every opcode is at least one byte and creates at most one value, so the arena never
    // needs more than one slot per input byte: reserved once, it never reallocates — a
    // reallocation copies the whole arena and, for a large pickle, briefly holds it twice.
    // Untouched reserved pages cost address space, not memory. `data` may run on past STOP
    // (a legacy file's storages), so the reservation stops at RESERVE_MAX values (128 MB of
    // address space); a pickle with more grows as usual.
    const RESERVE_MAX: usize = 16 << 20;
    let mut out = Pickle::new();
    out.reserve(
        data.len()
            .saturating_add(1)
            .min(limits.max_values)
            .min(RESERVE_MAX),
    );
    let mut vm = Vm {
        data,
        pos: 0,
        buf_end: 0,
        op_start: 0,
        out,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: Memo {
            // The walk saves memory on large pickles and costs a pass over the opcodes; a
            // small one's memo is small whatever it holds (at most one entry per input byte),
            // and storing every entry is what a walk that cannot tell does anyway.
            reads: if data.len() > MEMO_WALK_MIN {
                memo_reads(data)
            } else {
                None
            },
            ..Memo::default()
        },
        interned: hashbrown::HashTable::new(),
        hasher: foldhash::fast::RandomState::default(),
        limits: *limits,
        scratch: Vec::new(),
        scratch_pairs: Vec::new(),
    };
    let err = vm.run().err();
    if err.is_some() {
        vm.out.root = None;
    }
    // The memo and stack go first. The arena's unused reservation is not given back with
    // `shrink_to_fit`: that would copy every value to a new block (holding both at once) to
    // return pages that were never touched and so hold no memory.
    let Vm { out, .. } = vm;
    let mut out = out;
    dedup_keys(&mut out);
    out.globals.shrink_to_fit();
    (out, err)
}

struct Vm<'a> {
    data: &'a [u8],
    /// Next byte to read (`next_read_idx` of the C unpickler, as an offset into `data`).
    pos: usize,
    /// [`FrameMode::Stream`]: end of the unpickler's input buffer, which is also where the
    /// underlying stream stands. Bytes in `pos..buf_end` were read ahead by a FRAME.
    buf_end: usize,
    op_start: usize,
    out: Pickle,
    stack: Vec<ValueId>,
    marks: Vec<usize>,
    memo: Memo,
    /// Global names already in the arena's table: each GLOBAL is still a value of its own
    /// (scans report every site), but a name repeated a million times is stored once.
    /// Looked up by a hash of the borrowed `(module, name)`, so a name already seen costs no
    /// allocation (torch's zip pickler memoizes nothing: every tensor repeats its globals).
    interned: hashbrown::HashTable<ValueId>,
    hasher: foldhash::fast::RandomState,
    limits: Limits,
    /// The items a MARK opcode pops, and their pairs, between uses (see [`Vm::take_from`]).
    scratch: Vec<ValueId>,
    scratch_pairs: Vec<(ValueId, ValueId)>,
}

/// The memo: dense chunks for the indices pickle writes (0, 1, 2 … in order), a map for any
/// other (a hostile LONG_BINPUT 4000000000 must not allocate 4 G slots). Chunks, not one
/// vector: growing never copies what is there, so a memo of 5M entries costs 20 MB, not the
/// 50 MB a doubling vector briefly holds while it moves. A chunk is 1 MB, large enough that
/// allocators map it on its own and give it back to the system when the memo is dropped
/// (after decoding, before the document is classified).
#[derive(Default)]
struct Memo {
    dense: Vec<Vec<ValueId>>,
    /// Slots in `dense` (written or holes).
    dense_len: usize,
    sparse: HashMap<u64, ValueId>,
    /// Entries set (stored or not).
    count: usize,
    /// The indices the pickle ever reads back, when a walk over its opcodes could tell (see
    /// [`memo_reads`]): an entry no GET asks for is counted (so limits and MEMOIZE numbering
    /// stay exact) but not stored. Python memoizes every container and string it writes and
    /// reads back only the shared ones: for a pickle of 5M lists this is the difference
    /// between a 20 MB memo and none.
    reads: Option<Vec<u64>>,
    /// Indices put so far (bits), for indices below [`READS_MAX`] when `reads` is known.
    put: Vec<u64>,
}

/// Memo indices tracked by bits; a pickle that names a larger one is decoded with a full memo.
const READS_MAX: u64 = 1 << 26;

/// Inputs of at most this many bytes are decoded with a full memo, without the [`memo_reads`]
/// walk: their memo holds at most this many entries (4 MB).
const MEMO_WALK_MIN: usize = 1 << 20;

fn bit(bits: &[u64], i: u64) -> bool {
    bits.get((i / 64) as usize)
        .is_some_and(|w| w & (1 << (i % 64)) != 0)
}

fn set_bit(bits: &mut Vec<u64>, i: u64) {
    let w = (i / 64) as usize;
    if bits.len() <= w {
        bits.resize(w + 1, 0);
    }
    if let Some(x) = bits.get_mut(w) {
        *x |= 1 << (i % 64);
    }
}

/// The memo indices that GET, BINGET and LONG_BINGET read, from a walk over the opcodes by
/// their argument layout (no values built). `None` when the walk cannot be sure it reads the
/// stream as the decoder will: an opcode that crosses the end of a FRAME (the decoder then
/// jumps), a FRAME inside a frame, or an index of [`READS_MAX`] or more. Where the decoder
/// would stop (truncation, an unknown opcode, a bad line), the walk stops too: every GET the
/// decoder executes is one the walk saw.
fn memo_reads(data: &[u8]) -> Option<Vec<u64>> {
    let mut reads: Vec<u64> = Vec::new();
    let mut pos = 0usize;
    let mut frame_end: Option<usize> = None;
    let line_end = |from: usize| -> Option<usize> {
        Some(from + data.get(from..)?.iter().position(|b| *b == b'\n')? + 1)
    };
    let len_at = |at: usize, n: usize| -> Option<u64> {
        let b = data.get(at..at.checked_add(n)?)?;
        let mut a = [0u8; 8];
        a.get_mut(..n)?.copy_from_slice(b);
        Some(u64::from_le_bytes(a))
    };
    loop {
        let at = pos;
        let Some(op) = data.get(at).and_then(|b| Opcode::from_byte(*b)) else {
            return Some(reads);
        };
        let arg = at + 1;
        let end = match op.arg() {
            Arg::None => Some(arg),
            Arg::Fixed(n) => arg.checked_add(n).filter(|e| *e <= data.len()),
            Arg::Line => line_end(arg),
            Arg::TwoLines => line_end(arg).and_then(line_end),
            Arg::LenU8 | Arg::LenU32 | Arg::LenI32 | Arg::LenU64 => {
                let w = match op.arg() {
                    Arg::LenU8 => 1,
                    Arg::LenU64 => 8,
                    _ => 4,
                };
                let n = len_at(arg, w);
                let n = match (op.arg(), n) {
                    (Arg::LenI32, Some(n)) if n as u32 as i32 >= 0 => Some(n as u32 as u64),
                    (Arg::LenI32, _) => None,
                    (_, n) => n,
                };
                n.and_then(|n| usize::try_from(n).ok())
                    .and_then(|n| (arg + w).checked_add(n))
                    .filter(|e| *e <= data.len())
            }
        };
        let Some(end) = end else {
            return Some(reads);
        };
        if let Some(fe) = frame_end
            && at < fe
            && end > fe
        {
            return None;
        }
        match op {
            Opcode::Stop => return Some(reads),
            Opcode::Frame => {
                if frame_end.is_some_and(|fe| at < fe) {
                    return None;
                }
                let n = usize::try_from(len_at(arg, 8)?).ok()?;
                frame_end = Some(end.checked_add(n)?);
            }
            Opcode::Get | Opcode::BinGet | Opcode::LongBinGet => {
                let idx = match op {
                    Opcode::BinGet => len_at(arg, 1),
                    Opcode::LongBinGet => len_at(arg, 4),
                    _ => data
                        .get(arg..end - 1)
                        .and_then(|l| std::str::from_utf8(l).ok())
                        .and_then(|l| l.strip_suffix('\r').unwrap_or(l).trim().parse::<u64>().ok()),
                };
                let Some(idx) = idx else {
                    return Some(reads);
                };
                if idx >= READS_MAX {
                    return None;
                }
                set_bit(&mut reads, idx);
            }
            _ => {}
        }
        pos = end;
    }
}

/// A `dense` slot never written.
const HOLE: ValueId = ValueId(u32::MAX);
const MEMO_CHUNK: usize = 1 << 18;

impl Memo {
    fn dense_slot(&self, i: usize) -> Option<ValueId> {
        self.dense.get(i / MEMO_CHUNK)?.get(i % MEMO_CHUNK).copied()
    }

    fn get(&self, idx: u64) -> Option<ValueId> {
        let i = usize::try_from(idx).unwrap_or(usize::MAX);
        if i < self.dense_len {
            return self.dense_slot(i).filter(|id| *id != HOLE);
        }
        self.sparse.get(&idx).copied()
    }

    /// Is `idx` followed by bits (see [`Memo::reads`])?
    fn tracked(&self, idx: u64) -> bool {
        self.reads.is_some() && idx < READS_MAX
    }

    fn contains(&self, idx: u64) -> bool {
        if self.tracked(idx) {
            return bit(&self.put, idx);
        }
        self.get(idx).is_some()
    }

    fn len(&self) -> usize {
        self.count
    }

    /// Is `idx` the next dense slot of a memo that stores every entry (what pickle writes:
    /// 0, 1, 2 … in order)? Then [`Memo::push_next`] is [`Memo::insert`] without its checks.
    fn is_next(&self, idx: u64) -> bool {
        self.reads.is_none() && self.sparse.is_empty() && idx == self.dense_len as u64
    }

    /// [`Memo::insert`] of the index [`Memo::is_next`] accepted: a fresh entry at the end.
    fn push_next(&mut self, id: ValueId) {
        self.push_dense(id);
        self.count += 1;
    }

    /// Append `id` at index `dense_len` of the dense part, starting a chunk when one is full.
    /// The first chunk grows by doubling (a small pickle's memo stays small); the others are
    /// allocated whole (growing them would leave freed blocks behind that an allocator may
    /// keep for a while).
    fn push_dense(&mut self, id: ValueId) {
        let at = self.dense_len / MEMO_CHUNK;
        if self.dense.len() <= at {
            self.dense.push(if at == 0 {
                Vec::new()
            } else {
                Vec::with_capacity(MEMO_CHUNK)
            });
        }
        if let Some(chunk) = self.dense.get_mut(at) {
            chunk.push(id);
            self.dense_len += 1;
        }
    }

    fn insert(&mut self, idx: u64, id: ValueId) {
        let fresh = !self.contains(idx);
        if fresh {
            self.count += 1;
        }
        if self.tracked(idx) {
            set_bit(&mut self.put, idx);
            if !self.reads.as_ref().is_some_and(|r| bit(r, idx)) {
                return;
            }
        }
        let i = usize::try_from(idx).unwrap_or(usize::MAX);
        // Near the end (at most doubling, so holes cost at most half): grow the dense part.
        if i >= self.dense_len && i <= self.dense_len.saturating_mul(2).saturating_add(4096) {
            if !self.sparse.is_empty() {
                self.sparse.remove(&idx);
            }
            while self.dense_len <= i {
                let before = self.dense_len;
                self.push_dense(HOLE);
                if self.dense_len == before {
                    break;
                }
            }
        }
        match self
            .dense
            .get_mut(i / MEMO_CHUNK)
            .and_then(|c| c.get_mut(i % MEMO_CHUNK))
        {
            Some(slot) if i < self.dense_len => *slot = id,
            _ => {
                self.sparse.insert(idx, id);
            }
        }
    }
}

type R<T> = Result<T, Error>;

impl<'a> Vm<'a> {
    fn err(&self, kind: ErrorKind) -> Error {
        Error {
            offset: self.op_start as u64,
            kind,
        }
    }

    fn truncated(&self) -> Error {
        Error {
            offset: self.data.len() as u64,
            kind: ErrorKind::Truncated,
        }
    }

    /// Where a read of `n` bytes starts: at `pos` when it fits in the frame buffer (or there
    /// is none), else — [`FrameMode::Stream`] — at the stream position after the buffer, the
    /// buffer's tail being dropped. Records the drop: the two frame modes disagree there.
    fn read_start(&mut self, n: usize) -> usize {
        if self.limits.frames == FrameMode::Buffer || self.pos >= self.buf_end {
            return self.pos;
        }
        if self.pos.checked_add(n).is_some_and(|e| e <= self.buf_end) {
            return self.pos;
        }
        self.out.frame_straddles.push(self.op_start as u64);
        self.buf_end
    }

    /// `_Unpickler_Read`: `n` bytes, from the frame buffer or (when they do not fit) from the
    /// stream after it.
    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let start = self.read_start(n);
        let end = start
            .checked_add(n)
            .filter(|e| *e <= self.data.len())
            .ok_or_else(|| self.truncated())?;
        let s = &self.data[start..end];
        self.pos = end;
        self.buf_end = self.buf_end.max(end);
        Ok(s)
    }

    /// `_Unpickler_ReadInto` (the payload of BINBYTES & co.): the buffer's tail, then the
    /// stream — contiguous in both frame modes.
    fn take_into(&mut self, opcode: &'static str, len: u64) -> R<&'a [u8]> {
        let available = (self.data.len() - self.pos) as u64;
        if len > available {
            return Err(self.err(ErrorKind::LengthPastEnd {
                opcode,
                claimed: len,
                available,
            }));
        }
        // len <= available <= usize::MAX
        let end = self.pos + len as usize;
        let s = &self.data[self.pos..end];
        self.pos = end;
        self.buf_end = self.buf_end.max(end);
        Ok(s)
    }

    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> R<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// Take `len` bytes announced by `opcode`; the length is checked against what is present
    /// before anything is allocated.
    fn take_len(&mut self, opcode: &'static str, len: u64) -> R<&'a [u8]> {
        let start = match usize::try_from(len) {
            Ok(n) => self.read_start(n),
            Err(_) => self.pos,
        };
        let available = (self.data.len() - start) as u64;
        if len > available {
            return Err(self.err(ErrorKind::LengthPastEnd {
                opcode,
                claimed: len,
                available,
            }));
        }
        // len <= available <= usize::MAX
        let end = start + len as usize;
        let s = &self.data[start..end];
        self.pos = end;
        self.buf_end = self.buf_end.max(end);
        Ok(s)
    }

    /// `_Unpickler_Readline`: a line from the frame buffer, or (when the buffer holds no
    /// newline) a fresh `readline()` from the stream after it.
    fn line(&mut self) -> R<&'a [u8]> {
        let in_buffer = self.limits.frames == FrameMode::Stream && self.pos < self.buf_end;
        if in_buffer {
            let rest = &self.data[self.pos..self.buf_end];
            if let Some(i) = rest.iter().position(|b| *b == b'\n') {
                self.pos += i + 1;
                return Ok(&rest[..i]);
            }
            self.out.frame_straddles.push(self.op_start as u64);
            self.pos = self.buf_end;
        }
        let rest = &self.data[self.pos..];
        match rest.iter().position(|b| *b == b'\n') {
            Some(i) => {
                self.pos += i + 1;
                self.buf_end = self.buf_end.max(self.pos);
                Ok(&rest[..i])
            }
            None => Err(self.truncated()),
        }
    }

    fn line_str(&mut self, opcode: &'static str) -> R<&'a str> {
        let l = self.line()?;
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        std::str::from_utf8(l).map_err(|_| {
            self.err(ErrorKind::Malformed {
                opcode,
                detail: "line is not UTF-8".into(),
            })
        })
    }

    fn check_count(&self) -> R<()> {
        if self.out.len() >= self.limits.max_values {
            return Err(self.err(ErrorKind::LimitExceeded {
                what: "value count",
                limit: self.limits.max_values as u64,
            }));
        }
        Ok(())
    }

    fn full(&self) -> Error {
        self.err(ErrorKind::LimitExceeded {
            what: "arena size",
            limit: u64::from(u32::MAX),
        })
    }

    fn new_value(&mut self, v: Value<'_>) -> R<ValueId> {
        self.check_count()?;
        self.out.try_push(v).map_err(|ArenaFull| self.full())
    }

    fn push_id(&mut self, id: ValueId) -> R<()> {
        if self.stack.len() >= self.limits.max_stack {
            return Err(self.err(ErrorKind::LimitExceeded {
                what: "stack depth",
                limit: self.limits.max_stack as u64,
            }));
        }
        self.stack.push(id);
        Ok(())
    }

    fn push(&mut self, v: Value<'_>) -> R<()> {
        let id = self.new_value(v)?;
        self.push_id(id)
    }

    fn pop(&mut self, opcode: &'static str) -> R<ValueId> {
        // Values above the innermost mark belong to it; popping past a mark is an underflow.
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err(ErrorKind::StackUnderflow { opcode, needed: 1 }));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.err(ErrorKind::StackUnderflow { opcode, needed: 1 }))
    }

    fn top(&self, opcode: &'static str) -> R<ValueId> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err(ErrorKind::StackUnderflow { opcode, needed: 1 }));
        }
        self.stack
            .last()
            .copied()
            .ok_or_else(|| self.err(ErrorKind::StackUnderflow { opcode, needed: 1 }))
    }

    /// For APPENDS/SETITEMS/ADDITEMS: pop the innermost MARK and the items above it, and find
    /// their target just below the MARK (itself above the next MARK). None when there are no
    /// items: CPython then returns before looking at the target, whatever it is.
    fn marked_items(&mut self, opcode: &'static str) -> R<Option<(ValueId, Vec<ValueId>)>> {
        let x = self
            .marks
            .pop()
            .ok_or_else(|| self.err(ErrorKind::NoMark { opcode }))?;
        let len = self.stack.len();
        let floor = self.marks.last().copied().unwrap_or(0);
        if x == 0 || x > len || x - 1 < floor {
            return Err(self.err(ErrorKind::StackUnderflow { opcode, needed: 1 }));
        }
        if x == len {
            return Ok(None);
        }
        let target = self.stack[x - 1];
        let items = self.take_from(x);
        self.check_len(items.len())?;
        Ok(Some((target, items)))
    }

    fn pop_mark(&mut self, opcode: &'static str) -> R<Vec<ValueId>> {
        let m = self
            .marks
            .pop()
            .ok_or_else(|| self.err(ErrorKind::NoMark { opcode }))?;
        let items = self.take_from(m.min(self.stack.len()));
        self.check_len(items.len())?;
        Ok(items)
    }

    /// The stack from `at` on, moved into the reusable buffer (hand it back with
    /// [`Vm::recycle`]): one allocation per decode instead of one per container.
    fn take_from(&mut self, at: usize) -> Vec<ValueId> {
        let mut items = std::mem::take(&mut self.scratch);
        items.clear();
        items.extend(self.stack.drain(at..));
        items
    }

    fn recycle(&mut self, items: Vec<ValueId>) {
        self.scratch = items;
    }

    fn recycle_pairs(&mut self, pairs: Vec<(ValueId, ValueId)>) {
        self.scratch_pairs = pairs;
    }

    fn check_len(&self, n: usize) -> R<()> {
        if n > self.limits.max_container_len {
            return Err(self.err(ErrorKind::LimitExceeded {
                what: "container size",
                limit: self.limits.max_container_len as u64,
            }));
        }
        Ok(())
    }

    fn memo_put(&mut self, idx: u64) -> R<()> {
        let top = self.top("PUT")?;
        if self.memo.is_next(idx) {
            // A fresh entry: the limit applies as below.
            if self.memo.len() >= self.limits.max_memo {
                return Err(self.err(ErrorKind::LimitExceeded {
                    what: "memo size",
                    limit: self.limits.max_memo as u64,
                }));
            }
            self.memo.push_next(top);
            return Ok(());
        }
        if !self.memo.contains(idx) && self.memo.len() >= self.limits.max_memo {
            return Err(self.err(ErrorKind::LimitExceeded {
                what: "memo size",
                limit: self.limits.max_memo as u64,
            }));
        }
        self.memo.insert(idx, top);
        Ok(())
    }

    fn memo_get(&mut self, idx: u64) -> R<()> {
        let id = self
            .memo
            .get(idx)
            .ok_or_else(|| self.err(ErrorKind::MemoMissing(idx)))?;
        self.push_id(id)
    }

    fn global(&mut self, module: &str, name: &str) -> R<ValueId> {
        self.check_count()?;
        let Vm {
            interned,
            hasher,
            out,
            ..
        } = self;
        let hash = hasher.hash_one((module, name));
        let found = interned
            .find(hash, |at| {
                out.interned_global(*at)
                    .is_some_and(|g| g.module == module && g.name == name)
            })
            .copied();
        let at = match found {
            Some(at) => at,
            None => {
                let g = Global {
                    module: module.to_owned(),
                    name: name.to_owned(),
                };
                let at = out.intern_global(g).map_err(|_| self.full())?;
                let Vm {
                    interned,
                    hasher,
                    out,
                    ..
                } = self;
                interned.insert_unique(hash, at, |at| {
                    out.interned_global(*at)
                        .map_or(0, |g| hasher.hash_one((g.module.as_str(), g.name.as_str())))
                });
                at
            }
        };
        let id = self.out.push_interned_global(at);
        self.out.globals.push(GlobalSite {
            id,
            offset: self.op_start as u64,
        });
        Ok(id)
    }

    fn object(
        &mut self,
        callee: ValueId,
        args: ValueId,
        kwargs: Option<ValueId>,
        construct: Construct,
    ) -> R<()> {
        let obj = Object {
            callee,
            args,
            kwargs,
            construct,
            state: None,
            dict_items: Vec::new(),
            list_items: Vec::new(),
            offset: self.op_start as u64,
        };
        self.check_count()?;
        let id = self.out.push_object(obj).map_err(|_| self.full())?;
        self.push_id(id)
    }

    fn ensure_tuple(&mut self, opcode: &'static str, id: ValueId) -> R<ValueId> {
        match self.out.get(id) {
            Value::Tuple(_) => Ok(id),
            // Python accepts any sequence for REDUCE args only as a tuple; be exact.
            other => Err(self.err(ErrorKind::WrongType {
                opcode,
                expected: "a tuple of arguments",
                found: other.kind(),
            })),
        }
    }

    /// INT and LONG text, read as `_pickle.c` reads it: INT tries C's `strtol(s, 0)` (so
    /// `010` is 8 and `0x10` is 16), then both fall back to `int(s, 0)` (prefixes `0x`/`0o`/
    /// `0b`, underscores between digits, surrounding whitespace). A reader that only knows
    /// decimal would stop where CPython goes on.
    fn push_int_text(&mut self, opcode: &'static str, text: &str) -> R<()> {
        if text.len() > self.limits.max_int_bytes.saturating_mul(3) {
            return Err(self.err(ErrorKind::LimitExceeded {
                what: "integer size",
                limit: self.limits.max_int_bytes as u64,
            }));
        }
        let t = if opcode == "LONG" {
            text.strip_suffix('L').unwrap_or(text)
        } else {
            text
        };
        if opcode == "INT"
            && let Some(v) = strtol0(t)
        {
            return self.push(Value::Int(v));
        }
        match py_int0(t) {
            Some(PyInt::Small(v)) => self.push(Value::Int(v)),
            Some(PyInt::Decimal(digits)) => match BigInt::from_decimal(&digits) {
                Some(b) => self.push(Value::BigInt(&b)),
                None => Err(self.err(ErrorKind::Malformed {
                    opcode,
                    detail: format!("not an integer: {:?}", truncate(t)),
                })),
            },
            Some(PyInt::TooBig) => Err(self.err(ErrorKind::Unsupported(
                "a non-decimal integer literal over 128 bits",
            ))),
            None => Err(self.err(ErrorKind::Malformed {
                opcode,
                detail: format!("not an integer: {:?}", truncate(t)),
            })),
        }
    }

    fn long_bytes(&mut self, opcode: &'static str, n: u64) -> R<()> {
        if n > self.limits.max_int_bytes as u64 {
            return Err(self.err(ErrorKind::LimitExceeded {
                what: "integer size",
                limit: self.limits.max_int_bytes as u64,
            }));
        }
        let bytes = self.take_len(opcode, n)?;
        let big = BigInt::from_twos_complement_le(bytes);
        match big.to_i64() {
            Some(i) => self.push(Value::Int(i)),
            None => self.push(Value::BigInt(&big)),
        }
    }

    fn string_value(bytes: &[u8]) -> Value<'_> {
        // torch.load unpickles with encoding="utf-8": Python 2 `str` becomes `str`. Bytes that
        // are not UTF-8 would make Python fail; we keep them as bytes instead of failing.
        match std::str::from_utf8(bytes) {
            Ok(s) => Value::Str(s),
            Err(_) => Value::Bytes(bytes),
        }
    }

    fn push_utf8(&mut self, bytes: &[u8]) -> R<()> {
        // CPython decodes with 'surrogatepass'; lone surrogates are not representable in Rust
        // strings, so such text is replaced rather than rejected.
        match std::str::from_utf8(bytes) {
            Ok(s) => self.push(Value::Str(s)),
            Err(_) => self.push(Value::Str(&String::from_utf8_lossy(bytes))),
        }
    }

    fn run(&mut self) -> R<()> {
        loop {
            self.op_start = self.pos;
            let op = self.u8()?;
            match Opcode::from_byte(op) {
                // ---- framing and control
                Some(Opcode::Proto) => {
                    let p = self.u8()?;
                    if p > 5 {
                        return Err(self.err(ErrorKind::Unsupported("pickle protocol above 5")));
                    }
                    self.out.protocol = self.out.protocol.max(p);
                }
                Some(Opcode::Frame) => {
                    // FRAME: `load_frame` reads the whole frame (into the buffer, for a
                    // stream) and rewinds to its start; its opcodes are then read as usual.
                    let n = u64::from_le_bytes(self.array()?);
                    let start = match usize::try_from(n) {
                        Ok(len) => self.read_start(len),
                        Err(_) => self.pos,
                    };
                    let available = (self.data.len() - start) as u64;
                    if n > available {
                        return Err(self.err(ErrorKind::LengthPastEnd {
                            opcode: "FRAME",
                            claimed: n,
                            available,
                        }));
                    }
                    self.pos = start;
                    // n <= available
                    self.buf_end = self.buf_end.max(start + n as usize);
                }
                Some(Opcode::Stop) => {
                    let top = match self.stack.pop() {
                        Some(t) => t,
                        None => return Err(self.err(ErrorKind::EmptyStop)),
                    };
                    self.out.root = Some(top);
                    self.out.end = self.pos as u64;
                    return Ok(());
                }
                Some(Opcode::Mark) => {
                    if self.marks.len() >= self.limits.max_marks {
                        return Err(self.err(ErrorKind::LimitExceeded {
                            what: "open MARK",
                            limit: self.limits.max_marks as u64,
                        }));
                    }
                    self.marks.push(self.stack.len());
                }
                Some(Opcode::Pop) => {
                    // load_pop: a MARK on top of the stack is what POP removes.
                    if self.marks.last() == Some(&self.stack.len()) {
                        self.marks.pop();
                    } else {
                        self.pop("POP")?;
                    }
                }
                Some(Opcode::PopMark) => {
                    let items = self.pop_mark("POP_MARK")?;
                    self.recycle(items);
                }
                Some(Opcode::Dup) => {
                    let t = self.top("DUP")?;
                    self.push_id(t)?;
                }
                // ---- scalars
                Some(Opcode::None) => self.push(Value::None)?,
                Some(Opcode::NewTrue) => self.push(Value::Bool(true))?,
                Some(Opcode::NewFalse) => self.push(Value::Bool(false))?,
                Some(Opcode::Int) => {
                    let l = self.line_str("INT")?;
                    match l {
                        "00" => self.push(Value::Bool(false))?,
                        "01" => self.push(Value::Bool(true))?,
                        _ => self.push_int_text("INT", l)?,
                    }
                }
                Some(Opcode::BinInt) => {
                    let v = i32::from_le_bytes(self.array()?);
                    self.push(Value::Int(i64::from(v)))?;
                }
                Some(Opcode::BinInt1) => {
                    let v = self.u8()?;
                    self.push(Value::Int(i64::from(v)))?;
                }
                Some(Opcode::BinInt2) => {
                    let v = u16::from_le_bytes(self.array()?);
                    self.push(Value::Int(i64::from(v)))?;
                }
                Some(Opcode::Long) => {
                    let l = self.line_str("LONG")?;
                    self.push_int_text("LONG", l)?;
                }
                Some(Opcode::Long1) => {
                    let n = self.u8()?;
                    self.long_bytes("LONG1", u64::from(n))?;
                }
                Some(Opcode::Long4) => {
                    let n = i32::from_le_bytes(self.array()?);
                    if n < 0 {
                        return Err(self.err(ErrorKind::BadLength {
                            opcode: "LONG4",
                            length: i64::from(n),
                        }));
                    }
                    self.long_bytes("LONG4", n as u64)?;
                }
                Some(Opcode::Float) => {
                    let l = self.line_str("FLOAT")?;
                    let f = parse_py_float(l.trim()).ok_or_else(|| {
                        self.err(ErrorKind::Malformed {
                            opcode: "FLOAT",
                            detail: format!("not a float: {:?}", truncate(l)),
                        })
                    })?;
                    self.push(Value::Float(f))?;
                }
                Some(Opcode::BinFloat) => {
                    let f = f64::from_be_bytes(self.array()?);
                    self.push(Value::Float(f))?;
                }
                // ---- strings and bytes
                Some(Opcode::String) => {
                    let l = self.line()?;
                    let bytes = unquote_py_string(l).ok_or_else(|| {
                        self.err(ErrorKind::Malformed {
                            opcode: "STRING",
                            detail: "not a quoted string".into(),
                        })
                    })?;
                    self.push(Self::string_value(&bytes))?;
                }
                Some(Opcode::BinString) => {
                    let n = i32::from_le_bytes(self.array()?);
                    if n < 0 {
                        return Err(self.err(ErrorKind::BadLength {
                            opcode: "BINSTRING",
                            length: i64::from(n),
                        }));
                    }
                    let b = self.take_len("BINSTRING", n as u64)?;
                    self.push(Self::string_value(b))?;
                }
                Some(Opcode::ShortBinString) => {
                    let n = self.u8()?;
                    let b = self.take_len("SHORT_BINSTRING", u64::from(n))?;
                    self.push(Self::string_value(b))?;
                }
                Some(Opcode::Unicode) => {
                    let l = self.line()?;
                    let s = raw_unicode_escape(l);
                    self.push(Value::Str(&s))?;
                }
                Some(Opcode::BinUnicode) => {
                    let n = u32::from_le_bytes(self.array()?);
                    let b = self.take_len("BINUNICODE", u64::from(n))?;
                    self.push_utf8(b)?;
                }
                Some(Opcode::ShortBinUnicode) => {
                    let n = self.u8()?;
                    let b = self.take_len("SHORT_BINUNICODE", u64::from(n))?;
                    self.push_utf8(b)?;
                }
                Some(Opcode::BinUnicode8) => {
                    let n = u64::from_le_bytes(self.array()?);
                    let b = self.take_len("BINUNICODE8", n)?;
                    self.push_utf8(b)?;
                }
                Some(Opcode::BinBytes) => {
                    let n = u32::from_le_bytes(self.array()?);
                    let b = self.take_into("BINBYTES", u64::from(n))?;
                    self.push(Value::Bytes(b))?;
                }
                Some(Opcode::ShortBinBytes) => {
                    let n = self.u8()?;
                    let b = self.take_into("SHORT_BINBYTES", u64::from(n))?;
                    self.push(Value::Bytes(b))?;
                }
                Some(Opcode::BinBytes8) => {
                    let n = u64::from_le_bytes(self.array()?);
                    let b = self.take_into("BINBYTES8", n)?;
                    self.push(Value::Bytes(b))?;
                }
                Some(Opcode::ByteArray8) => {
                    let n = u64::from_le_bytes(self.array()?);
                    let b = self.take_into("BYTEARRAY8", n)?;
                    self.push(Value::ByteArray(b))?;
                }
                Some(Opcode::NextBuffer | Opcode::ReadonlyBuffer) => {
                    return Err(self.err(ErrorKind::Unsupported(
                        "out-of-band buffers (pickle protocol 5 NEXT_BUFFER/READONLY_BUFFER)",
                    )));
                }
                // ---- containers
                Some(Opcode::EmptyTuple) => self.push(Value::Tuple(&[]))?,
                Some(Opcode::Tuple) => {
                    let items = self.pop_mark("TUPLE")?;
                    self.push(Value::Tuple(&items))?;
                    self.recycle(items);
                }
                Some(t @ (Opcode::Tuple1 | Opcode::Tuple2 | Opcode::Tuple3)) => {
                    let n = usize::from(t as u8 - Opcode::Tuple1 as u8) + 1;
                    let name = t.name();
                    let mut items = [ValueId(0); 3];
                    let items = &mut items[..n];
                    for slot in items.iter_mut().rev() {
                        *slot = self.pop(name)?;
                    }
                    self.push(Value::Tuple(items))?;
                }
                Some(Opcode::EmptyList) => self.push(Value::List(&[]))?,
                Some(Opcode::List) => {
                    let items = self.pop_mark("LIST")?;
                    self.push(Value::List(&items))?;
                    self.recycle(items);
                }
                Some(Opcode::EmptyDict) => self.push(Value::Dict(&[]))?,
                Some(Opcode::Dict) => {
                    let items = self.pop_mark("DICT")?;
                    let pairs = self.pairs("DICT", &items)?;
                    self.recycle(items);
                    self.push(Value::Dict(&pairs))?;
                    self.recycle_pairs(pairs);
                }
                Some(Opcode::EmptySet) => self.push(Value::Set(&[]))?,
                Some(Opcode::FrozenSet) => {
                    let items = self.pop_mark("FROZENSET")?;
                    self.push(Value::FrozenSet(&items))?;
                    self.recycle(items);
                }
                Some(Opcode::Append) => {
                    let v = self.pop("APPEND")?;
                    let target = self.top("APPEND")?;
                    self.extend_list("APPEND", target, &[v])?;
                }
                Some(Opcode::Appends) => {
                    let Some((target, items)) = self.marked_items("APPENDS")? else {
                        continue;
                    };
                    self.extend_list("APPENDS", target, &items)?;
                    self.recycle(items);
                }
                Some(Opcode::SetItem) => {
                    let v = self.pop("SETITEM")?;
                    let k = self.pop("SETITEM")?;
                    let target = self.top("SETITEM")?;
                    self.extend_dict("SETITEM", target, &[(k, v)])?;
                }
                Some(Opcode::SetItems) => {
                    let Some((target, items)) = self.marked_items("SETITEMS")? else {
                        continue;
                    };
                    let pairs = self.pairs("SETITEMS", &items)?;
                    self.recycle(items);
                    self.extend_dict("SETITEMS", target, &pairs)?;
                    self.recycle_pairs(pairs);
                }
                Some(Opcode::AddItems) => {
                    let Some((target, items)) = self.marked_items("ADDITEMS")? else {
                        continue;
                    };
                    let limit = self.limits.max_container_len;
                    let (len, found) = match self.out.get(target) {
                        Value::Set(s) => (s.len(), "set"),
                        other => (0, other.kind()),
                    };
                    if found != "set" {
                        return Err(self.err(ErrorKind::WrongType {
                            opcode: "ADDITEMS",
                            expected: "a set",
                            found,
                        }));
                    }
                    if len + items.len() > limit {
                        return Err(self.err(ErrorKind::LimitExceeded {
                            what: "container size",
                            limit: limit as u64,
                        }));
                    }
                    self.out
                        .extend_items(target, &items)
                        .map_err(|_| self.full())?;
                    self.recycle(items);
                }
                // ---- memo
                Some(Opcode::Put) => {
                    let l = self.line_str("PUT")?;
                    let idx = l.trim().parse::<u64>().map_err(|_| {
                        self.err(ErrorKind::Malformed {
                            opcode: "PUT",
                            detail: "bad memo index".into(),
                        })
                    })?;
                    self.memo_put(idx)?;
                }
                Some(Opcode::BinPut) => {
                    let idx = self.u8()?;
                    self.memo_put(u64::from(idx))?;
                }
                Some(Opcode::LongBinPut) => {
                    let idx = u32::from_le_bytes(self.array()?);
                    self.memo_put(u64::from(idx))?;
                }
                Some(Opcode::Memoize) => {
                    let idx = self.memo.len() as u64;
                    self.memo_put(idx)?;
                }
                Some(Opcode::Get) => {
                    let l = self.line_str("GET")?;
                    let idx = l.trim().parse::<u64>().map_err(|_| {
                        self.err(ErrorKind::Malformed {
                            opcode: "GET",
                            detail: "bad memo index".into(),
                        })
                    })?;
                    self.memo_get(idx)?;
                }
                Some(Opcode::BinGet) => {
                    let idx = self.u8()?;
                    self.memo_get(u64::from(idx))?;
                }
                Some(Opcode::LongBinGet) => {
                    let idx = u32::from_le_bytes(self.array()?);
                    self.memo_get(u64::from(idx))?;
                }
                // ---- globals and calls (recorded, never performed)
                Some(Opcode::Global) => {
                    let module = self.line_str("GLOBAL")?;
                    let name = self.line_str("GLOBAL")?;
                    let id = self.global(module, name)?;
                    self.push_id(id)?;
                }
                Some(Opcode::StackGlobal) => {
                    let name = self.pop("STACK_GLOBAL")?;
                    let module = self.pop("STACK_GLOBAL")?;
                    let (Some(m), Some(n)) = (self.out.as_str(module), self.out.as_str(name))
                    else {
                        return Err(self.err(ErrorKind::WrongType {
                            opcode: "STACK_GLOBAL",
                            expected: "two strings",
                            found: "something else",
                        }));
                    };
                    let (m, n) = (m.to_owned(), n.to_owned());
                    let id = self.global(&m, &n)?;
                    self.push_id(id)?;
                }
                Some(Opcode::Ext1) => {
                    let code = self.u8()?;
                    self.extension(u32::from(code))?;
                }
                Some(Opcode::Ext2) => {
                    let code = u16::from_le_bytes(self.array()?);
                    self.extension(u32::from(code))?;
                }
                Some(Opcode::Ext4) => {
                    let code = i32::from_le_bytes(self.array()?);
                    self.extension(code as u32)?;
                }
                Some(Opcode::Reduce) => {
                    let args = self.pop("REDUCE")?;
                    let callee = self.pop("REDUCE")?;
                    let args = self.ensure_tuple("REDUCE", args)?;
                    self.object(callee, args, None, Construct::Reduce)?;
                }
                Some(Opcode::NewObj) => {
                    let args = self.pop("NEWOBJ")?;
                    let cls = self.pop("NEWOBJ")?;
                    let args = self.ensure_tuple("NEWOBJ", args)?;
                    self.object(cls, args, None, Construct::NewObj)?;
                }
                Some(Opcode::NewObjEx) => {
                    let kwargs = self.pop("NEWOBJ_EX")?;
                    let args = self.pop("NEWOBJ_EX")?;
                    let cls = self.pop("NEWOBJ_EX")?;
                    let args = self.ensure_tuple("NEWOBJ_EX", args)?;
                    self.object(cls, args, Some(kwargs), Construct::NewObjEx)?;
                }
                Some(Opcode::Inst) => {
                    let module = self.line_str("INST")?;
                    let name = self.line_str("INST")?;
                    let items = self.pop_mark("INST")?;
                    let cls = self.global(module, name)?;
                    let args = self.new_value(Value::Tuple(&items))?;
                    self.recycle(items);
                    self.object(cls, args, None, Construct::Inst)?;
                }
                Some(Opcode::Obj) => {
                    let mut items = self.pop_mark("OBJ")?;
                    if items.is_empty() {
                        return Err(self.err(ErrorKind::StackUnderflow {
                            opcode: "OBJ",
                            needed: 1,
                        }));
                    }
                    let cls = items.remove(0);
                    let args = self.new_value(Value::Tuple(&items))?;
                    self.object(cls, args, None, Construct::Obj)?;
                }
                Some(Opcode::Build) => {
                    let state = self.pop("BUILD")?;
                    let target = self.top("BUILD")?;
                    // load_build does nothing with a None state, whatever the target is.
                    let noop = matches!(self.out.get(state), Value::None)
                        && !matches!(self.out.get(target), Value::Object(_));
                    if !noop {
                        self.build(target, state)?;
                    }
                }
                Some(Opcode::PersId) => {
                    let l = self.line()?;
                    let s = Self::string_value(l);
                    let pid = self.new_value(s)?;
                    self.push(Value::PersId(&pid))?;
                }
                Some(Opcode::BinPersId) => {
                    let pid = self.pop("BINPERSID")?;
                    self.push(Value::PersId(&pid))?;
                }
                None => return Err(self.err(ErrorKind::UnknownOpcode(op))),
            }
        }
    }

    fn extension(&mut self, code: u32) -> R<()> {
        self.out.extensions.push((code, self.op_start as u64));
        self.push(Value::Extension(&code))
    }

    /// `items` as key/value pairs, in the reusable pair buffer (hand it back with
    /// [`Vm::recycle_pairs`]).
    fn pairs(&mut self, opcode: &'static str, items: &[ValueId]) -> R<Vec<(ValueId, ValueId)>> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err(ErrorKind::Malformed {
                opcode,
                detail: "odd number of items".into(),
            }));
        }
        let mut pairs = std::mem::take(&mut self.scratch_pairs);
        pairs.clear();
        pairs.extend(items.chunks_exact(2).map(|c| (c[0], c[1])));
        Ok(pairs)
    }

    fn extend_list(&mut self, opcode: &'static str, target: ValueId, items: &[ValueId]) -> R<()> {
        let limit = self.limits.max_container_len;
        let len = match self.out.get(target) {
            Value::List(l) => l.len(),
            Value::Object(o) => o.list_items.len(),
            other => {
                return Err(self.err(ErrorKind::WrongType {
                    opcode,
                    expected: "a list or object",
                    found: other.kind(),
                }));
            }
        };
        if len.saturating_add(items.len()) > limit {
            return Err(self.err(ErrorKind::LimitExceeded {
                what: "container size",
                limit: limit as u64,
            }));
        }
        match self.out.object_mut(target) {
            Some(o) => o.list_items.extend_from_slice(items),
            None => self
                .out
                .extend_items(target, items)
                .map_err(|_| self.full())?,
        }
        Ok(())
    }

    fn extend_dict(
        &mut self,
        opcode: &'static str,
        target: ValueId,
        pairs: &[(ValueId, ValueId)],
    ) -> R<()> {
        let limit = self.limits.max_container_len;
        let len = match self.out.get(target) {
            Value::Dict(d) => d.len(),
            Value::Object(o) => o.dict_items.len(),
            other => {
                return Err(self.err(ErrorKind::WrongType {
                    opcode,
                    expected: "a dict or object",
                    found: other.kind(),
                }));
            }
        };
        if len.saturating_add(pairs.len()) > limit {
            return Err(self.err(ErrorKind::LimitExceeded {
                what: "container size",
                limit: limit as u64,
            }));
        }
        match self.out.object_mut(target) {
            Some(o) => o.dict_items.extend_from_slice(pairs),
            None => self
                .out
                .extend_pairs(target, pairs)
                .map_err(|_| self.full())?,
        }
        Ok(())
    }

    fn build(&mut self, target: ValueId, state: ValueId) -> R<()> {
        let found = self.out.get(target).kind();
        match self.out.object_mut(target) {
            Some(o) => {
                // A second BUILD on one object is unusual; the last state wins, as
                // `__setstate__` would overwrite.
                o.state = Some(state);
                Ok(())
            }
            None => Err(self.err(ErrorKind::WrongType {
                opcode: "BUILD",
                expected: "an object",
                found,
            })),
        }
    }
}

/// C's `strtol(s, &end, 0)` accepting only when it consumes the whole text and fits.
fn strtol0(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r') {
        i += 1;
    }
    let neg = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let hex = b.get(i) == Some(&b'0')
        && matches!(b.get(i + 1), Some(b'x' | b'X'))
        && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
    let (base, start) = if hex {
        (16, i + 2)
    } else if b.get(i) == Some(&b'0') {
        (8, i)
    } else {
        (10, i)
    };
    let digits = &s[start..];
    if digits.is_empty() {
        return None;
    }
    let mut v: i128 = 0;
    for c in digits.chars() {
        let d = c.to_digit(base)?;
        v = v
            .checked_mul(i128::from(base))?
            .checked_add(i128::from(d))?;
        if v > i128::from(i64::MAX) + 1 {
            return None;
        }
    }
    i64::try_from(if neg { -v } else { v }).ok()
}

enum PyInt {
    Small(i64),
    /// A decimal literal too large for i64, as optional sign and digits.
    Decimal(String),
    TooBig,
}

/// Python's `int(s, 0)`.
fn py_int0(s: &str) -> Option<PyInt> {
    let t = s.trim();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let lower = t.to_ascii_lowercase();
    let (base, body, prefixed) = if lower.starts_with("0x") {
        (16, &t[2..], true)
    } else if lower.starts_with("0o") {
        (8, &t[2..], true)
    } else if lower.starts_with("0b") {
        (2, &t[2..], true)
    } else {
        (10, t, false)
    };
    // Underscores only between digits (and right after a prefix).
    let body = if prefixed {
        body.strip_prefix('_').unwrap_or(body)
    } else {
        body
    };
    if body.is_empty() || body.starts_with('_') || body.ends_with('_') || body.contains("__") {
        return None;
    }
    let digits: String = body.chars().filter(|c| *c != '_').collect();
    if !digits.chars().all(|c| c.is_digit(base)) {
        return None;
    }
    if base == 10 && digits.len() > 1 && digits.starts_with('0') && digits.chars().any(|c| c != '0')
    {
        return None;
    }
    let mut v: u128 = 0;
    let mut overflow = false;
    for c in digits.chars() {
        let d = u128::from(c.to_digit(base)?);
        match v
            .checked_mul(u128::from(base))
            .and_then(|x| x.checked_add(d))
        {
            Some(x) => v = x,
            None => {
                overflow = true;
                break;
            }
        }
    }
    let small = (!overflow)
        .then(|| i128::try_from(v).ok())
        .flatten()
        .map(|v| if neg { -v } else { v })
        .and_then(|v| i64::try_from(v).ok());
    Some(match small {
        Some(v) => PyInt::Small(v),
        None if base == 10 => PyInt::Decimal(format!("{}{digits}", if neg { "-" } else { "" })),
        None => PyInt::TooBig,
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Python's `float()` for what FLOAT writes (`repr` of a float: `1.5`, `inf`, `nan`, `1e-05`).
fn parse_py_float(s: &str) -> Option<f64> {
    match s {
        "inf" | "+inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" | "-nan" | "+nan" => Some(f64::NAN),
        _ => s.parse::<f64>().ok(),
    }
}

/// Decode a protocol-0 STRING argument: a Python bytes literal in single or double quotes.
fn unquote_py_string(line: &[u8]) -> Option<Vec<u8>> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() < 2 {
        return None;
    }
    let q = line[0];
    if (q != b'\'' && q != b'"') || line[line.len() - 1] != q {
        return None;
    }
    let body = &line[1..line.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let e = *body.get(i + 1)?;
        i += 2;
        match e {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'\\' => out.push(b'\\'),
            b'\'' => out.push(b'\''),
            b'"' => out.push(b'"'),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'\n' => {}
            b'x' => {
                let h = body.get(i..i + 2)?;
                let h = std::str::from_utf8(h).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v: u32 = u32::from(e - b'0');
                let mut n = 1;
                while n < 3 {
                    match body.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                            n += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

/// Python's `raw-unicode-escape` decoding (protocol-0 UNICODE): bytes are Latin-1 except
/// `\uXXXX` and `\UXXXXXXXX`.
fn raw_unicode_escape(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let c = line[i];
        if c == b'\\' && i + 1 < line.len() && (line[i + 1] == b'u' || line[i + 1] == b'U') {
            let n = if line[i + 1] == b'u' { 4 } else { 8 };
            if let Some(hex) = line.get(i + 2..i + 2 + n)
                && let Ok(h) = std::str::from_utf8(hex)
                && let Ok(cp) = u32::from_str_radix(h, 16)
            {
                out.push(char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER));
                i += 2 + n;
                continue;
            }
        }
        out.push(char::from(c));
        i += 1;
    }
    out
}

/// Python dicts and sets cannot hold equal keys twice; a pickle can say so (SETITEM twice with
/// one key). Keep the first position and the last value, as CPython's dict would.
fn dedup_keys(p: &mut Pickle) {
    #[derive(Hash, PartialEq, Eq)]
    enum Key<'a> {
        Str(&'a str),
        Int(i64),
        Bytes(&'a [u8]),
        None,
    }
    fn key(p: &Pickle, id: ValueId) -> Option<Key<'_>> {
        match p.get(id) {
            Value::Str(s) => Some(Key::Str(s)),
            Value::Int(i) => Some(Key::Int(i)),
            Value::Bool(b) => Some(Key::Int(i64::from(b))),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(Key::Int(f as i64)),
            Value::Bytes(b) => Some(Key::Bytes(b)),
            Value::None => Some(Key::None),
            _ => None,
        }
    }
    /// Whether the keys are few (at most [`SMALL`]) and pairwise distinct, found without a
    /// hash map: nearly every dict of a checkpoint is a handful of string keys, and hashing
    /// them cost more than the rest of decoding. Larger containers keep the (randomly keyed)
    /// hash map, so a file of colliding keys still costs linear time.
    fn small_and_distinct(p: &Pickle, keys: impl ExactSizeIterator<Item = ValueId>) -> bool {
        const SMALL: usize = 16;
        if keys.len() > SMALL {
            return false;
        }
        let mut seen: [Option<Key<'_>>; SMALL] = Default::default();
        for (n, id) in keys.enumerate() {
            let Some(k) = key(p, id) else {
                continue;
            };
            if seen[..n].iter().flatten().any(|s| *s == k) {
                return false;
            }
            seen[n] = Some(k);
        }
        true
    }
    let mut fixes: Vec<(ValueId, Vec<(ValueId, ValueId)>)> = Vec::new();
    let mut set_fixes: Vec<(ValueId, Vec<ValueId>)> = Vec::new();
    for i in 0..p.len() {
        let id = ValueId(i as u32);
        match p.tag(id) {
            Some(Tag::Dict) => {}
            Some(Tag::Set | Tag::FrozenSet) => {
                let (Value::Set(items) | Value::FrozenSet(items)) = p.get(id) else {
                    continue;
                };
                if items.len() < 2 || small_and_distinct(p, items.iter().copied()) {
                    continue;
                }
                let mut seen: HashSet<Key<'_>> = HashSet::with_capacity(items.len());
                let mut out = Vec::with_capacity(items.len());
                for id in items {
                    match key(p, *id) {
                        Some(k) => {
                            if seen.insert(k) {
                                out.push(*id);
                            }
                        }
                        None => out.push(*id),
                    }
                }
                if out.len() != items.len() {
                    set_fixes.push((id, out));
                }
                continue;
            }
            _ => continue,
        }
        let Value::Dict(items) = p.get(id) else {
            continue;
        };
        if items.len() < 2 || small_and_distinct(p, items.iter().map(|(k, _)| *k)) {
            continue;
        }
        let mut seen: HashMap<Key<'_>, usize> = HashMap::with_capacity(items.len());
        let mut out: Vec<(ValueId, ValueId)> = Vec::new();
        let mut dup = false;
        for (k, val) in items {
            match key(p, *k) {
                Some(kk) => match seen.get(&kk) {
                    Some(&pos) => {
                        out[pos].1 = *val;
                        dup = true;
                    }
                    None => {
                        seen.insert(kk, out.len());
                        out.push((*k, *val));
                    }
                },
                None => out.push((*k, *val)),
            }
        }
        if dup {
            fixes.push((id, out));
        }
    }
    for (id, items) in fixes {
        p.shrink_pairs(id, &items);
    }
    for (id, items) in set_fixes {
        p.shrink_items(id, &items);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn py_string_literals() {
        assert_eq!(
            unquote_py_string(b"'a\\nb\\x41\\101'"),
            Some(b"a\nbAA".to_vec())
        );
        assert_eq!(unquote_py_string(b"\"q\""), Some(b"q".to_vec()));
        assert_eq!(unquote_py_string(b"noquote"), None);
    }

    /// Each case is what `pickle.loads(b"I<text>\\n.")` (INT) or `b"L<text>\\n."` (LONG)
    /// returned in CPython 3.11.
    #[test]
    fn int_and_long_text_as_cpython_reads_it() {
        let int = |t: &str| {
            strtol0(t).or_else(|| match py_int0(t) {
                Some(PyInt::Small(v)) => Some(v),
                _ => None,
            })
        };
        let long = |t: &str| match py_int0(t.strip_suffix('L').unwrap_or(t)) {
            Some(PyInt::Small(v)) => Some(v),
            _ => None,
        };
        for (t, v) in [
            ("0x10", Some(16)),
            ("010", Some(8)),
            (" 12", Some(12)),
            ("1_000", Some(1000)),
            ("0b101", Some(5)),
            ("0o17", Some(15)),
            ("-0x10", Some(-16)),
            ("+5", Some(5)),
            ("0x_1f", Some(31)),
            (" 0x10 ", Some(16)),
            ("000", Some(0)),
            ("0_0", Some(0)),
            ("abc", None),
            ("1 2", None),
            ("1__0", None),
        ] {
            assert_eq!(int(t), v, "INT {t:?}");
        }
        assert_eq!(long("0x10L"), Some(16));
        assert_eq!(long("010L"), None);
        assert_eq!(long("1_0"), Some(10));
        assert!(matches!(
            py_int0("99999999999999999999999"),
            Some(PyInt::Decimal(d)) if d == "99999999999999999999999"
        ));
    }

    /// Small inputs skip the memo walk (every entry stored); large ones store only the
    /// entries read back. Both decode alike: the same pickle, or the same error, whether it is
    /// given alone or followed by enough trailing bytes (ignored after STOP) to be walked.
    #[test]
    fn skipping_the_memo_walk_changes_nothing() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures");
        let mut inputs: Vec<Vec<u8>> = vec![
            include_bytes!("../benches/lightning_data.pkl").to_vec(),
            b"\x80\x02]q\x00h\x00j\x01\x01\x00\x00g7\r\n0000.".to_vec(),
            b"\x80\x04]\x94(]\x94]\x94h\x01h\x01e.".to_vec(),
        ];
        for sub in ["benign", "hostile"] {
            for e in std::fs::read_dir(format!("{dir}/{sub}")).unwrap().flatten() {
                let path = e.path();
                if path.extension().is_some_and(|x| x == "pkl") {
                    inputs.push(std::fs::read(path).unwrap());
                }
            }
        }
        assert!(inputs.len() > 20, "only {} inputs", inputs.len());
        for data in &inputs {
            assert!(data.len() <= MEMO_WALK_MIN);
            let mut long = data.clone();
            long.resize(MEMO_WALK_MIN + 1, b'N');
            for frames in [FrameMode::Stream, FrameMode::Buffer] {
                let limits = Limits {
                    frames,
                    ..Limits::default()
                };
                let (a, ea) = decode_partial(data, &limits);
                let (b, eb) = decode_partial(&long, &limits);
                if ea.is_none() {
                    assert_eq!(format!("{a:?}"), format!("{b:?}"));
                    assert!(eb.is_none());
                } else {
                    // An error at the end of the short input may be a different one when
                    // more bytes follow; what was decoded before it is the same.
                    assert_eq!(format!("{:?}", a.globals), format!("{:?}", b.globals));
                }
            }
        }
    }

    /// The scan's shortcuts read what `values()` reads: objects, globals and names.
    #[test]
    fn object_and_global_values_are_those_of_values() {
        let mut inputs: Vec<Pickle> =
            vec![decode(include_bytes!("../benches/lightning_data.pkl")).unwrap()];
        let mut hand = Pickle::new();
        let g = hand.push(Value::Global(&Global {
            module: "os".into(),
            name: "system".into(),
        }));
        let code = hand.push(Value::Extension(&7));
        let args = hand.push(Value::Tuple(&[code]));
        hand.push(Value::Object(&Object {
            callee: g,
            args,
            kwargs: None,
            construct: Construct::Reduce,
            state: None,
            dict_items: Vec::new(),
            list_items: Vec::new(),
            offset: 0,
        }));
        inputs.push(hand);
        for p in &inputs {
            let objects: Vec<(ValueId, &Object)> = p.object_values().collect();
            let globals: Vec<(ValueId, &Global)> = p.global_values().collect();
            let mut want_objects = Vec::new();
            let mut want_globals = Vec::new();
            for (i, v) in p.values().enumerate() {
                let id = ValueId(i as u32);
                match v {
                    Value::Object(o) => want_objects.push((id, o)),
                    Value::Global(g) => want_globals.push((id, g)),
                    _ => {}
                }
                let named = matches!(v, Value::Global(_) | Value::Extension(_));
                assert_eq!(p.is_name(id), named, "{v:?}");
            }
            assert!(!objects.is_empty() && !globals.is_empty());
            assert_eq!(objects, want_objects);
            assert_eq!(globals, want_globals);
            assert!(!p.is_name(ValueId(p.len() as u32)));
        }
    }

    /// The walk finds every index read back, and gives up where the decoder would read the
    /// stream differently from a straight walk.
    #[test]
    fn memo_reads_sees_every_get() {
        let reads = |d: &[u8]| {
            memo_reads(d).map(|b| (0..300).filter(|i| bit(&b, *i)).collect::<Vec<u64>>())
        };
        // ]q\x00 h\x00 ... : BINPUT 0, BINGET 0, LONG_BINGET 257, GET 7 (text), STOP.
        let p = b"\x80\x02]q\x00h\x00j\x01\x01\x00\x00g7\r\n0000.";
        assert_eq!(reads(p), Some(vec![0, 7, 257]));
        // A string holding GET bytes is not a GET.
        assert_eq!(reads(b"\x8c\x02h\x05."), Some(vec![]));
        // Where decoding stops (truncation), the walk stops: what it saw is returned.
        assert_eq!(reads(b"h\x03h"), Some(vec![3]));
        // An opcode across a FRAME end: the decoder jumps, the walk cannot follow.
        assert_eq!(reads(b"\x95\x01\x00\x00\x00\x00\x00\x00\x00h\x01."), None);
        // A well-formed frame is walked through.
        assert_eq!(
            reads(b"\x95\x03\x00\x00\x00\x00\x00\x00\x00Nh\x02."),
            Some(vec![2])
        );
        // An index too large for bits: the full memo is kept.
        assert_eq!(reads(b"j\xff\xff\xff\x7f."), None);
    }

    /// Entries never read back are counted, not stored: MEMOIZE numbering and the memo limit
    /// are what they were, and a read-back entry is found.
    #[test]
    fn unread_memo_entries_are_counted_not_stored() {
        // [[], [], x] where x is the first inner list fetched back by BINGET 1.
        let p = b"\x80\x04]\x94(]\x94]\x94h\x01e.";
        let v = decode(p).unwrap();
        let Value::List(items) = v.get(v.root()) else {
            panic!("{:?}", v.get(v.root()));
        };
        assert_eq!(items.len(), 3);
        assert_eq!(items[0], items[2]);
        assert_ne!(items[0], items[1]);
        let limits = Limits {
            max_memo: 2,
            ..Limits::default()
        };
        let e = decode_with(p, &limits).unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::LimitExceeded {
                what: "memo size",
                limit: 2
            }
        );
    }

    #[test]
    fn raw_unicode() {
        assert_eq!(
            raw_unicode_escape(b"a\\u00e9\\U0001F600"),
            "a\u{e9}\u{1F600}"
        );
        assert_eq!(raw_unicode_escape(&[0xe9]), "\u{e9}");
    }
}

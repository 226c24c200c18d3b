//! The decoded value model: an arena of values addressed by [`ValueId`], read as [`Value`]s.
//!
//! Why an arena: pickles share objects (the memo) and OmegaConf graphs contain cycles
//! (`_parent` points back up). Values refer to each other by index, so sharing costs nothing
//! (the 2^60-leaf memo bomb is 180 nodes here), cycles are representable, and dropping a
//! 100,000-deep structure is dropping a few `Vec`s, never a recursive `Drop`.
//!
//! Why this layout: a pickle spends one or two bytes per value (`]`, `]\x94`), so what a
//! value costs *here* decides what a 10 MB file costs in memory. Each value is one 8-byte
//! [`Slot`] (a tag and a 32-bit payload); what does not fit lives once in a shared table:
//! the items of every container in one `items` (or `pairs`) vector, the text of every string
//! in one `String`, wide ints, floats, globals (interned by the decoder) and objects in their
//! own vectors. An empty container costs its slot and nothing else; a list costs no
//! allocation of its own. [`Value`] is the borrowed view readers match on.

use std::fmt;

/// Index of a value in a [`Pickle`] arena.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

impl ValueId {
    /// The index as a `usize`.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A reference to a Python global (`module.name`), as named by GLOBAL, STACK_GLOBAL or INST.
/// Nothing is imported: this is just the name, as written in the pickle.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Global {
    pub module: String,
    pub name: String,
}

/// [`Global::qualname`], written without building a string.
impl std::fmt::Display for Global {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", normalize_module(&self.module), self.name)
    }
}

impl Global {
    /// `module.name` with Python 2 module names mapped the way Python 3's unpickler maps them
    /// (`__builtin__` -> `builtins`, `copy_reg` -> `copyreg`).
    pub fn qualname(&self) -> String {
        format!("{}.{}", normalize_module(&self.module), self.name)
    }

    /// Calls `f` with [`Global::qualname`], built on the stack when it fits: the classifiers
    /// match a name per call of a checkpoint (hundreds per file), and most are short.
    pub fn with_qualname<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        let module = normalize_module(&self.module);
        let len = module.len() + 1 + self.name.len();
        let mut buf = [0u8; 128];
        if let Some(out) = buf.get_mut(..len) {
            let (m, rest) = out.split_at_mut(module.len());
            m.copy_from_slice(module.as_bytes());
            if let Some((dot, n)) = rest.split_first_mut() {
                *dot = b'.';
                n.copy_from_slice(self.name.as_bytes());
            }
            if let Ok(q) = std::str::from_utf8(out) {
                return f(q);
            }
        }
        f(&self.qualname())
    }

    /// True when this global is `module.name` (after Python 2 name mapping).
    pub fn is(&self, module: &str, name: &str) -> bool {
        self.name == name && normalize_module(&self.module) == module
    }
}

/// Python 3's unpickler maps some Python 2 module names when reading protocol < 3 pickles
/// (`fix_imports`); we do the same so `__builtin__.set` and `builtins.set` are one thing.
pub fn normalize_module(module: &str) -> &str {
    match module {
        "__builtin__" | "exceptions" => "builtins",
        "copy_reg" => "copyreg",
        "cPickle" => "pickle",
        "UserDict" => "collections",
        "UserList" => "collections",
        "_abcoll" => "collections.abc",
        other => other,
    }
}

/// How a call-like opcode built an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Construct {
    /// `REDUCE`: `callee(*args)`.
    Reduce,
    /// `NEWOBJ`: `cls.__new__(cls, *args)`.
    NewObj,
    /// `NEWOBJ_EX`: `cls.__new__(cls, *args, **kwargs)`.
    NewObjEx,
    /// `INST` (protocol 0): `module.name(*args)`.
    Inst,
    /// `OBJ` (protocol 1): `cls(*args)`.
    Obj,
}

impl Construct {
    pub fn opcode_name(self) -> &'static str {
        match self {
            Construct::Reduce => "REDUCE",
            Construct::NewObj => "NEWOBJ",
            Construct::NewObjEx => "NEWOBJ_EX",
            Construct::Inst => "INST",
            Construct::Obj => "OBJ",
        }
    }
}

/// A call that was *not* made: the callee, its arguments, and whatever the pickle did to the
/// result afterwards (BUILD state, SETITEMS, APPENDS).
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub callee: ValueId,
    /// Always a `Value::Tuple`.
    pub args: ValueId,
    pub kwargs: Option<ValueId>,
    pub construct: Construct,
    /// The argument of BUILD (`__setstate__`), when there was one.
    pub state: Option<ValueId>,
    /// SETITEM(S) applied to the object (OrderedDict, defaultdict, dict subclasses).
    pub dict_items: Vec<(ValueId, ValueId)>,
    /// APPEND(S) applied to the object (list subclasses).
    pub list_items: Vec<ValueId>,
    /// Byte offset of the opcode that made the object.
    pub offset: u64,
}

/// An integer too large for `i64`, as sign and magnitude (little-endian 32-bit limbs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigInt {
    pub negative: bool,
    pub magnitude: Vec<u32>,
}

impl BigInt {
    /// From the little-endian two's-complement bytes of LONG1/LONG4.
    pub fn from_twos_complement_le(bytes: &[u8]) -> BigInt {
        let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
        let mut mag: Vec<u8> = bytes.to_vec();
        if negative {
            // magnitude = -(value) = invert + 1
            let mut carry = true;
            for b in mag.iter_mut() {
                *b = !*b;
                if carry {
                    let (nb, c) = b.overflowing_add(1);
                    *b = nb;
                    carry = c;
                }
            }
        }
        let mut magnitude = Vec::with_capacity(mag.len().div_ceil(4));
        for chunk in mag.chunks(4) {
            let mut limb = [0u8; 4];
            limb[..chunk.len()].copy_from_slice(chunk);
            magnitude.push(u32::from_le_bytes(limb));
        }
        let mut v = BigInt {
            negative,
            magnitude,
        };
        v.trim();
        v
    }

    /// From decimal digits (optionally signed), as written by INT/LONG in protocol 0.
    pub fn from_decimal(text: &str) -> Option<BigInt> {
        let (negative, digits) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut magnitude: Vec<u32> = Vec::new();
        for d in digits.bytes() {
            let mut carry = u64::from(d - b'0');
            for limb in magnitude.iter_mut() {
                let v = u64::from(*limb) * 10 + carry;
                *limb = v as u32;
                carry = v >> 32;
            }
            if carry != 0 {
                magnitude.push(carry as u32);
            }
        }
        let mut v = BigInt {
            negative,
            magnitude,
        };
        v.trim();
        Some(v)
    }

    fn trim(&mut self) {
        while self.magnitude.last() == Some(&0) {
            self.magnitude.pop();
        }
        if self.magnitude.is_empty() {
            self.negative = false;
        }
    }

    /// The value as `i64` when it fits.
    pub fn to_i64(&self) -> Option<i64> {
        if self.magnitude.len() > 2 {
            return None;
        }
        let mut m: u64 = 0;
        for (i, limb) in self.magnitude.iter().enumerate() {
            m |= u64::from(*limb) << (32 * i);
        }
        if self.negative {
            if m <= 1u64 << 63 {
                Some((m as i64).wrapping_neg())
            } else {
                None
            }
        } else {
            i64::try_from(m).ok()
        }
    }

    /// Approximate value as a float (for comparisons and summaries).
    pub fn to_f64(&self) -> f64 {
        let mut v = 0.0f64;
        for limb in self.magnitude.iter().rev() {
            v = v * 4294967296.0 + f64::from(*limb);
        }
        if self.negative { -v } else { v }
    }
}

impl fmt::Display for BigInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.magnitude.is_empty() {
            return f.write_str("0");
        }
        // Repeated division by 10^9; quadratic, which is why LONG sizes are limited.
        let mut limbs = self.magnitude.clone();
        let mut chunks: Vec<u32> = Vec::new();
        while !limbs.is_empty() {
            let mut rem: u64 = 0;
            for limb in limbs.iter_mut().rev() {
                let cur = (rem << 32) | u64::from(*limb);
                *limb = (cur / 1_000_000_000) as u32;
                rem = cur % 1_000_000_000;
            }
            chunks.push(rem as u32);
            while limbs.last() == Some(&0) {
                limbs.pop();
            }
        }
        if self.negative {
            f.write_str("-")?;
        }
        let mut first = true;
        for chunk in chunks.iter().rev() {
            if first {
                write!(f, "{chunk}")?;
                first = false;
            } else {
                write!(f, "{chunk:09}")?;
            }
        }
        Ok(())
    }
}

/// One decoded pickle value, as read from the arena: containers are slices of ids into it.
///
/// `PersId` and `Extension` hold references (into the value's slot) so that readers match
/// them the same way as the borrowed variants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    None,
    Bool(bool),
    Int(i64),
    BigInt(&'a BigInt),
    Float(f64),
    Str(&'a str),
    Bytes(&'a [u8]),
    ByteArray(&'a [u8]),
    Tuple(&'a [ValueId]),
    List(&'a [ValueId]),
    Dict(&'a [(ValueId, ValueId)]),
    Set(&'a [ValueId]),
    FrozenSet(&'a [ValueId]),
    Global(&'a Global),
    Object(&'a Object),
    /// A persistent id (PERSID/BINPERSID): the container resolves it (torch: storages).
    PersId(&'a ValueId),
    /// An extension-registry code (EXT1/2/4); what it names is known only to the writer's
    /// process, so it stays a number.
    Extension(&'a u32),
}

impl Value<'_> {
    /// A short name of the kind, for error messages and summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::ByteArray(_) => "bytearray",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::FrozenSet(_) => "frozenset",
            Value::Global(_) => "global",
            Value::Object(_) => "object",
            Value::PersId(_) => "persistent id",
            Value::Extension(_) => "extension",
        }
    }
}

/// Where a global was referenced, for security scans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalSite {
    pub id: ValueId,
    /// Byte offset of the GLOBAL / STACK_GLOBAL / INST opcode.
    pub offset: u64,
}

/// What a slot holds; the meaning of its payload depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tag {
    None,
    True,
    False,
    /// An int that fits in `i32`, in the payload's bits.
    SmallInt,
    /// Payload: index into `ints`.
    Int,
    /// Payload: index into `bigints`.
    BigInt,
    /// Payload: index into `floats`.
    Float,
    /// Payload: index into `spans` over `text`.
    Str,
    /// Payload: index into `spans` over `bytes`.
    Bytes,
    ByteArray,
    /// Payload: index into `seqs` over `items` ([`EMPTY`] for no items).
    Tuple,
    List,
    Set,
    FrozenSet,
    /// Payload: index into `seqs` over `pairs` ([`EMPTY`] for no items).
    Dict,
    /// Payload: index into `globals_tab`.
    Global,
    /// Payload: index into `objects`.
    Object,
    /// Payload: the id of the persistent id value.
    PersId,
    /// Payload: the extension code.
    Extension,
}

/// One value: 8 bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub(crate) tag: Tag,
    pub(crate) a: ValueId,
}

/// Payload of a container with no items (no `seqs` entry).
pub(crate) const EMPTY: ValueId = ValueId(u32::MAX);

/// A container's items: `len` used of `cap` reserved at `start` in the shared vector.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Seq {
    start: u32,
    len: u32,
    cap: u32,
}

/// A string's or bytes' place in the shared text or byte buffer.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Span {
    start: u32,
    len: u32,
}

/// A shared vector outgrew the 32-bit indices of the arena (over 4 G items or bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ArenaFull;

fn u32_of(n: usize) -> Result<u32, ArenaFull> {
    u32::try_from(n).map_err(|_| ArenaFull)
}

impl Seq {
    fn range(self) -> std::ops::Range<usize> {
        let s = self.start as usize;
        s..s + self.len as usize
    }

    /// A new run of `new` at the end of `arena`.
    fn fresh<T: Copy>(arena: &mut Vec<T>, new: &[T]) -> Result<Seq, ArenaFull> {
        let start = u32_of(arena.len())?;
        let len = u32_of(new.len())?;
        u32_of(arena.len() + new.len())?;
        arena.extend_from_slice(new);
        Ok(Seq {
            start,
            len,
            cap: len,
        })
    }

    /// Append `new` to this run: into its reserved room, in place when it ends the vector,
    /// else moved to the end with room to double (so a list filled in batches between other
    /// containers' items is copied O(log n) times, not once per batch).
    fn append<T: Copy + Default>(
        &mut self,
        arena: &mut Vec<T>,
        new: &[T],
    ) -> Result<(), ArenaFull> {
        let start = self.start as usize;
        let len = self.len as usize;
        let cap = self.cap as usize;
        let want = len + new.len();
        let want32 = u32_of(want)?;
        if want <= cap {
            if let Some(room) = arena.get_mut(start + len..start + want) {
                room.copy_from_slice(new);
            }
        } else if start + cap == arena.len() {
            arena.truncate(start + len);
            u32_of(arena.len() + new.len())?;
            arena.extend_from_slice(new);
            self.cap = want32;
        } else {
            let room = want.max(len.saturating_mul(2));
            let at = arena.len();
            let at32 = u32_of(at)?;
            u32_of(at + room)?;
            arena.extend_from_within(start..start + len);
            arena.extend_from_slice(new);
            arena.resize(at + room, T::default());
            self.start = at32;
            self.cap = u32_of(room)?;
        }
        self.len = want32;
        Ok(())
    }
}

/// A decoded pickle: the arena, its root, and what the decoder saw along the way.
#[derive(Debug, Clone, Default)]
pub struct Pickle {
    pub(crate) slots: Vec<Slot>,
    ints: Vec<i64>,
    floats: Vec<f64>,
    bigints: Vec<BigInt>,
    spans: Vec<Span>,
    text: String,
    bytes: Vec<u8>,
    seqs: Vec<Seq>,
    items: Vec<ValueId>,
    pairs: Vec<(ValueId, ValueId)>,
    globals_tab: Vec<Global>,
    objects: Vec<Object>,
    pub(crate) root: Option<ValueId>,
    /// Highest PROTO seen (0 when none).
    pub protocol: u8,
    /// Every global reference in the stream, in order.
    pub globals: Vec<GlobalSite>,
    /// Every extension code (EXT1/2/4) in the stream, with its offset.
    pub extensions: Vec<(u32, u64)>,
    /// Byte offset just past STOP.
    pub end: u64,
    /// Offsets of opcodes whose argument crossed the end of a FRAME (read under
    /// [`crate::FrameMode::Stream`]): `pickle` never writes this, and CPython reads such a
    /// stream differently from a file object and from bytes.
    pub frame_straddles: Vec<u64>,
}

impl Pickle {
    /// An empty arena, for building values by hand (tests, synthesized documents).
    pub fn new() -> Pickle {
        Pickle::default()
    }

    /// The value returned by STOP.
    pub fn root(&self) -> ValueId {
        self.root.unwrap_or(ValueId(0))
    }

    /// Set the root of a hand-built arena.
    pub fn set_root(&mut self, id: ValueId) {
        self.root = Some(id);
    }

    pub fn get(&self, id: ValueId) -> Value<'_> {
        match self.slots.get(id.index()) {
            Some(slot) => self.read(slot),
            None => Value::None,
        }
    }

    fn read<'a>(&'a self, slot: &'a Slot) -> Value<'a> {
        let i = slot.a.index();
        let seq = || self.seqs.get(i).copied().unwrap_or_default().range();
        let span = || {
            let s = self.spans.get(i).copied().unwrap_or_default();
            s.start as usize..s.start as usize + s.len as usize
        };
        match slot.tag {
            Tag::None => Value::None,
            Tag::True => Value::Bool(true),
            Tag::False => Value::Bool(false),
            Tag::SmallInt => Value::Int(i64::from(slot.a.0 as i32)),
            Tag::Int => Value::Int(self.ints.get(i).copied().unwrap_or(0)),
            Tag::BigInt => match self.bigints.get(i) {
                Some(b) => Value::BigInt(b),
                None => Value::None,
            },
            Tag::Float => Value::Float(self.floats.get(i).copied().unwrap_or(0.0)),
            Tag::Str => Value::Str(self.text.get(span()).unwrap_or("")),
            Tag::Bytes => Value::Bytes(self.bytes.get(span()).unwrap_or(&[])),
            Tag::ByteArray => Value::ByteArray(self.bytes.get(span()).unwrap_or(&[])),
            Tag::Tuple => Value::Tuple(self.items.get(seq()).unwrap_or(&[])),
            Tag::List => Value::List(self.items.get(seq()).unwrap_or(&[])),
            Tag::Set => Value::Set(self.items.get(seq()).unwrap_or(&[])),
            Tag::FrozenSet => Value::FrozenSet(self.items.get(seq()).unwrap_or(&[])),
            Tag::Dict => Value::Dict(self.pairs.get(seq()).unwrap_or(&[])),
            Tag::Global => match self.globals_tab.get(i) {
                Some(g) => Value::Global(g),
                None => Value::None,
            },
            Tag::Object => match self.objects.get(i) {
                Some(o) => Value::Object(o),
                None => Value::None,
            },
            Tag::PersId => Value::PersId(&slot.a),
            Tag::Extension => Value::Extension(&slot.a.0),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Append a value; ids are dense, so this is also how tests build arenas. Its contents
    /// are copied into the arena's shared tables.
    pub fn push(&mut self, v: Value<'_>) -> ValueId {
        match self.try_push(v) {
            Ok(id) => id,
            // Over 4 G items: the value stays None rather than wrap an index.
            Err(ArenaFull) => self.push_slot(Tag::None, ValueId(0)),
        }
    }

    pub(crate) fn push_slot(&mut self, tag: Tag, a: ValueId) -> ValueId {
        let id = ValueId(u32::try_from(self.slots.len()).unwrap_or(u32::MAX));
        self.slots.push(Slot { tag, a });
        id
    }

    fn side<T>(table: &mut Vec<T>, v: T) -> Result<ValueId, ArenaFull> {
        let at = u32_of(table.len())?;
        table.push(v);
        Ok(ValueId(at))
    }

    fn seq_of(&mut self, items: &[ValueId]) -> Result<ValueId, ArenaFull> {
        if items.is_empty() {
            return Ok(EMPTY);
        }
        let seq = Seq::fresh(&mut self.items, items)?;
        Self::side(&mut self.seqs, seq)
    }

    fn span_of_bytes(&mut self, b: &[u8]) -> Result<ValueId, ArenaFull> {
        let start = u32_of(self.bytes.len())?;
        let len = u32_of(b.len())?;
        u32_of(self.bytes.len() + b.len())?;
        self.bytes.extend_from_slice(b);
        Self::side(&mut self.spans, Span { start, len })
    }

    pub(crate) fn try_push(&mut self, v: Value<'_>) -> Result<ValueId, ArenaFull> {
        let (tag, a) = match v {
            Value::None => (Tag::None, ValueId(0)),
            Value::Bool(true) => (Tag::True, ValueId(0)),
            Value::Bool(false) => (Tag::False, ValueId(0)),
            Value::Int(i) => match i32::try_from(i) {
                Ok(small) => (Tag::SmallInt, ValueId(small as u32)),
                Err(_) => (Tag::Int, Self::side(&mut self.ints, i)?),
            },
            Value::BigInt(b) => (Tag::BigInt, Self::side(&mut self.bigints, b.clone())?),
            Value::Float(f) => (Tag::Float, Self::side(&mut self.floats, f)?),
            Value::Str(s) => {
                let start = u32_of(self.text.len())?;
                let len = u32_of(s.len())?;
                u32_of(self.text.len() + s.len())?;
                self.text.push_str(s);
                (Tag::Str, Self::side(&mut self.spans, Span { start, len })?)
            }
            Value::Bytes(b) => (Tag::Bytes, self.span_of_bytes(b)?),
            Value::ByteArray(b) => (Tag::ByteArray, self.span_of_bytes(b)?),
            Value::Tuple(items) => (Tag::Tuple, self.seq_of(items)?),
            Value::List(items) => (Tag::List, self.seq_of(items)?),
            Value::Set(items) => (Tag::Set, self.seq_of(items)?),
            Value::FrozenSet(items) => (Tag::FrozenSet, self.seq_of(items)?),
            Value::Dict(pairs) => {
                let a = if pairs.is_empty() {
                    EMPTY
                } else {
                    let seq = Seq::fresh(&mut self.pairs, pairs)?;
                    Self::side(&mut self.seqs, seq)?
                };
                (Tag::Dict, a)
            }
            Value::Global(g) => (Tag::Global, Self::side(&mut self.globals_tab, g.clone())?),
            Value::Object(o) => (Tag::Object, Self::side(&mut self.objects, o.clone())?),
            Value::PersId(pid) => (Tag::PersId, *pid),
            Value::Extension(code) => (Tag::Extension, ValueId(*code)),
        };
        Ok(self.push_slot(tag, a))
    }

    /// A global value whose name is already in the table at `index` (the decoder interns
    /// globals: a pickle that names one class a million times stores its name once).
    pub(crate) fn push_interned_global(&mut self, index: ValueId) -> ValueId {
        self.push_slot(Tag::Global, index)
    }

    /// The name at `index` of the global table.
    pub(crate) fn interned_global(&self, index: ValueId) -> Option<&Global> {
        self.globals_tab.get(index.index())
    }

    /// Where the global value `id` stands in the table of distinct names (GLOBAL opcodes
    /// naming the same thing share one): lets a reader do per-name work once per name.
    pub fn global_slot(&self, id: ValueId) -> Option<usize> {
        match self.slots.get(id.index()) {
            Some(s) if s.tag == Tag::Global && s.a.index() < self.globals_tab.len() => {
                Some(s.a.index())
            }
            _ => None,
        }
    }

    /// The name at `slot` of the table of distinct names ([`Pickle::global_slot`]).
    pub fn global_at(&self, slot: usize) -> Option<&Global> {
        self.globals_tab.get(slot)
    }

    /// Whether `get(id)` is a global, an object (a call) or a persistent id: the values a
    /// reader gives a meaning beyond their plain pickle value. Read from the slot's tag alone,
    /// so a pass over every value can skip the plain ones without building them.
    pub fn is_name_call_or_pid(&self, id: ValueId) -> bool {
        matches!(
            self.slots.get(id.index()).map(|s| s.tag),
            Some(Tag::Global | Tag::Object | Tag::PersId)
        )
    }

    /// How many distinct global names the table holds (the bound of [`Pickle::global_slot`]).
    pub fn global_names(&self) -> usize {
        self.globals_tab.len()
    }

    /// Add a name to the global table (for [`Pickle::push_interned_global`]).
    pub(crate) fn intern_global(&mut self, g: Global) -> Result<ValueId, ArenaFull> {
        Self::side(&mut self.globals_tab, g)
    }

    /// A new object value (REDUCE & co.).
    pub(crate) fn push_object(&mut self, o: Object) -> Result<ValueId, ArenaFull> {
        let at = Self::side(&mut self.objects, o)?;
        Ok(self.push_slot(Tag::Object, at))
    }

    pub(crate) fn tag(&self, id: ValueId) -> Option<Tag> {
        self.slots.get(id.index()).map(|s| s.tag)
    }

    pub(crate) fn object_mut(&mut self, id: ValueId) -> Option<&mut Object> {
        let slot = self.slots.get(id.index())?;
        if slot.tag != Tag::Object {
            return None;
        }
        self.objects.get_mut(slot.a.index())
    }

    /// Append items to the list or set at `id` (its tag must be checked by the caller).
    pub(crate) fn extend_items(&mut self, id: ValueId, new: &[ValueId]) -> Result<(), ArenaFull> {
        extend_run(&mut self.slots, &mut self.seqs, &mut self.items, id, new)
    }

    /// Append pairs to the dict at `id` (its tag must be checked by the caller).
    pub(crate) fn extend_pairs(
        &mut self,
        id: ValueId,
        new: &[(ValueId, ValueId)],
    ) -> Result<(), ArenaFull> {
        extend_run(&mut self.slots, &mut self.seqs, &mut self.pairs, id, new)
    }

    /// Replace the items of the dict at `id` with `pairs`, no longer than they were
    /// (duplicate keys removed).
    pub(crate) fn shrink_pairs(&mut self, id: ValueId, pairs: &[(ValueId, ValueId)]) {
        let Some(slot) = self.slots.get(id.index()).copied() else {
            return;
        };
        if let Some(seq) = self.seqs.get_mut(slot.a.index())
            && pairs.len() <= seq.len as usize
        {
            let at = seq.start as usize;
            if let Some(dst) = self.pairs.get_mut(at..at + pairs.len()) {
                dst.copy_from_slice(pairs);
                seq.len = pairs.len() as u32;
            }
        }
    }

    /// Replace the items of the set at `id` with `items`, no longer than they were.
    pub(crate) fn shrink_items(&mut self, id: ValueId, items: &[ValueId]) {
        let Some(slot) = self.slots.get(id.index()).copied() else {
            return;
        };
        if let Some(seq) = self.seqs.get_mut(slot.a.index())
            && items.len() <= seq.len as usize
        {
            let at = seq.start as usize;
            if let Some(dst) = self.items.get_mut(at..at + items.len()) {
                dst.copy_from_slice(items);
                seq.len = items.len() as u32;
            }
        }
    }

    /// Reserve room for `n` values, container items and bytes of text: the decoder's bound
    /// from the input size (each costs at least one opcode byte). Reserved once, the shared
    /// vectors never move while they fill; pages never touched cost address space only.
    pub(crate) fn reserve(&mut self, n: usize) {
        self.slots.reserve(n);
        self.items.reserve(n);
        self.pairs.reserve(n / 2);
        self.text.reserve(n);
    }

    /// Every value, in id order.
    pub fn values(&self) -> impl Iterator<Item = Value<'_>> + '_ {
        self.slots.iter().map(|s| self.read(s))
    }

    /// Every `Value::Object` of [`Pickle::values`] with its id, without reading the other
    /// values (a scan walks the calls of every pickle it meets).
    pub fn object_values(&self) -> impl Iterator<Item = (ValueId, &Object)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s.tag {
                Tag::Object => Some((ValueId(i as u32), self.objects.get(s.a.index())?)),
                _ => None,
            })
    }

    /// Every `Value::Global` of [`Pickle::values`] with its id, without reading the others.
    pub fn global_values(&self) -> impl Iterator<Item = (ValueId, &Global)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s.tag {
                Tag::Global => Some((ValueId(i as u32), self.globals_tab.get(s.a.index())?)),
                _ => None,
            })
    }

    /// Whether `get(id)` is a `Value::Global` or a `Value::Extension` (what names something
    /// to import), without reading it.
    pub fn is_name(&self, id: ValueId) -> bool {
        match self.slots.get(id.index()) {
            Some(s) if s.tag == Tag::Global => self.globals_tab.get(s.a.index()).is_some(),
            Some(s) => s.tag == Tag::Extension,
            None => false,
        }
    }

    /// Bytes held by the arena's tables (capacity, not length): what a decoded pickle costs
    /// in memory, for tests and benchmarks of that cost.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.slots.capacity() * size_of::<Slot>()
            + self.ints.capacity() * 8
            + self.floats.capacity() * 8
            + self.bigints.capacity() * size_of::<BigInt>()
            + self.spans.capacity() * size_of::<Span>()
            + self.text.capacity()
            + self.bytes.capacity()
            + self.seqs.capacity() * size_of::<Seq>()
            + self.items.capacity() * size_of::<ValueId>()
            + self.pairs.capacity() * size_of::<(ValueId, ValueId)>()
            + self.globals_tab.capacity() * size_of::<Global>()
            + self.objects.capacity() * size_of::<Object>()
    }

    /// The string inside a `Str` value.
    pub fn as_str(&self, id: ValueId) -> Option<&str> {
        match self.get(id) {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The `Global` a value names, when it is one.
    pub fn as_global(&self, id: ValueId) -> Option<&Global> {
        match self.get(id) {
            Value::Global(g) => Some(g),
            _ => None,
        }
    }

    /// Items of a tuple or list.
    pub fn as_seq(&self, id: ValueId) -> Option<&[ValueId]> {
        match self.get(id) {
            Value::Tuple(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }

    /// An integer value (bools count, as in Python).
    pub fn as_i64(&self, id: ValueId) -> Option<i64> {
        match self.get(id) {
            Value::Int(i) => Some(i),
            Value::Bool(b) => Some(i64::from(b)),
            Value::BigInt(b) => b.to_i64(),
            _ => None,
        }
    }

    /// Look up a string key in a plain dict value.
    pub fn dict_get(&self, id: ValueId, key: &str) -> Option<ValueId> {
        match self.get(id) {
            Value::Dict(items) => items
                .iter()
                .find(|(k, _)| self.as_str(*k) == Some(key))
                .map(|(_, v)| *v),
            _ => None,
        }
    }
}

/// Append `new` to the container at `id`, whose run of items is in `arena`.
fn extend_run<T: Copy + Default>(
    slots: &mut [Slot],
    seqs: &mut Vec<Seq>,
    arena: &mut Vec<T>,
    id: ValueId,
    new: &[T],
) -> Result<(), ArenaFull> {
    let Some(slot) = slots.get_mut(id.index()) else {
        return Ok(());
    };
    if new.is_empty() {
        return Ok(());
    }
    if slot.a == EMPTY {
        let seq = Seq::fresh(arena, new)?;
        slot.a = Pickle::side(seqs, seq)?;
        return Ok(());
    }
    if let Some(seq) = seqs.get_mut(slot.a.index()) {
        seq.append(arena, new)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_eight_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 8);
    }

    /// A list filled in batches while other lists take items between them keeps every item,
    /// in order, and is moved a logarithmic number of times.
    #[test]
    fn interleaved_appends_keep_order() {
        let mut p = Pickle::new();
        let a = p.push(Value::List(&[]));
        let b = p.push(Value::List(&[]));
        let mut want_a = Vec::new();
        let mut want_b = Vec::new();
        for i in 0..2000u32 {
            let x = ValueId(i);
            p.extend_items(a, &[x, x]).unwrap();
            want_a.extend([x, x]);
            p.extend_items(b, &[x]).unwrap();
            want_b.push(x);
        }
        assert_eq!(p.get(a), Value::List(&want_a));
        assert_eq!(p.get(b), Value::List(&want_b));
        // Doubling: live items 6,000; each list's moves cost at most twice its final size.
        assert!(p.items.len() < 4 * 6000, "{}", p.items.len());
    }

    #[test]
    fn scalars_round_trip_through_slots() {
        let mut p = Pickle::new();
        for v in [
            Value::None,
            Value::Bool(true),
            Value::Bool(false),
            Value::Int(-1),
            Value::Int(i64::from(i32::MIN)),
            Value::Int(i64::from(i32::MAX) + 1),
            Value::Int(i64::MIN),
            Value::Float(-0.5),
            Value::Str(""),
            Value::Str("é"),
            Value::Bytes(b"\0\xff"),
            Value::ByteArray(b""),
            Value::Extension(&7),
            Value::PersId(&ValueId(3)),
        ] {
            let id = p.push(v);
            assert_eq!(p.get(id), v);
        }
    }
}

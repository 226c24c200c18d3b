//! The decoded value model: an arena of [`Value`]s addressed by [`ValueId`].
//!
//! Why an arena: pickles share objects (the memo) and OmegaConf graphs contain cycles
//! (`_parent` points back up). Values refer to each other by index, so sharing costs nothing
//! (the 2^60-leaf memo bomb is 180 nodes here), cycles are representable, and dropping a
//! 100,000-deep structure is dropping one `Vec`, never a recursive `Drop`.

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    pub module: String,
    pub name: String,
}

impl Global {
    /// `module.name` with Python 2 module names mapped the way Python 3's unpickler maps them
    /// (`__builtin__` -> `builtins`, `copy_reg` -> `copyreg`).
    pub fn qualname(&self) -> String {
        format!("{}.{}", normalize_module(&self.module), self.name)
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

/// One decoded pickle value. Containers hold ids into the arena.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// Boxed, like `Global`: rare, and inline they would make every value larger.
    BigInt(Box<BigInt>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    ByteArray(Vec<u8>),
    Tuple(Vec<ValueId>),
    List(Vec<ValueId>),
    Dict(Vec<(ValueId, ValueId)>),
    Set(Vec<ValueId>),
    FrozenSet(Vec<ValueId>),
    Global(Box<Global>),
    Object(Box<Object>),
    /// A persistent id (PERSID/BINPERSID): the container resolves it (torch: storages).
    PersId(ValueId),
    /// An extension-registry code (EXT1/2/4); what it names is known only to the writer's
    /// process, so it stays a number.
    Extension(u32),
}

impl Value {
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

/// A decoded pickle: the arena, its root, and what the decoder saw along the way.
#[derive(Debug, Clone, Default)]
pub struct Pickle {
    pub(crate) values: Vec<Value>,
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

    pub fn get(&self, id: ValueId) -> &Value {
        self.values.get(id.index()).unwrap_or(&Value::None)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Append a value; ids are dense, so this is also how tests build arenas.
    pub fn push(&mut self, v: Value) -> ValueId {
        let id = ValueId(u32::try_from(self.values.len()).unwrap_or(u32::MAX));
        self.values.push(v);
        id
    }

    pub fn values(&self) -> &[Value] {
        &self.values
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
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
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

//! The pickle opcodes (protocols 0–5), named once: the decoder matches on them, the writer
//! emits them, and [`find_stop`] walks them by their argument layout alone.
//!
//! Names and bytes are CPython's (`Lib/pickle.py`, `Modules/_pickle.c`).

/// One pickle opcode. `op as u8` is its byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    Mark = b'(',
    Stop = b'.',
    Pop = b'0',
    PopMark = b'1',
    Dup = b'2',
    Float = b'F',
    Int = b'I',
    BinInt = b'J',
    BinInt1 = b'K',
    Long = b'L',
    BinInt2 = b'M',
    None = b'N',
    PersId = b'P',
    BinPersId = b'Q',
    Reduce = b'R',
    String = b'S',
    BinString = b'T',
    ShortBinString = b'U',
    Unicode = b'V',
    BinUnicode = b'X',
    Append = b'a',
    Build = b'b',
    Global = b'c',
    Dict = b'd',
    EmptyDict = b'}',
    Appends = b'e',
    Get = b'g',
    BinGet = b'h',
    Inst = b'i',
    LongBinGet = b'j',
    List = b'l',
    EmptyList = b']',
    Obj = b'o',
    Put = b'p',
    BinPut = b'q',
    LongBinPut = b'r',
    SetItem = b's',
    Tuple = b't',
    EmptyTuple = b')',
    SetItems = b'u',
    BinFloat = b'G',
    // protocol 2
    Proto = 0x80,
    NewObj = 0x81,
    Ext1 = 0x82,
    Ext2 = 0x83,
    Ext4 = 0x84,
    Tuple1 = 0x85,
    Tuple2 = 0x86,
    Tuple3 = 0x87,
    NewTrue = 0x88,
    NewFalse = 0x89,
    Long1 = 0x8a,
    Long4 = 0x8b,
    // protocol 3
    BinBytes = b'B',
    ShortBinBytes = b'C',
    // protocol 4
    ShortBinUnicode = 0x8c,
    BinUnicode8 = 0x8d,
    BinBytes8 = 0x8e,
    EmptySet = 0x8f,
    AddItems = 0x90,
    FrozenSet = 0x91,
    NewObjEx = 0x92,
    StackGlobal = 0x93,
    Memoize = 0x94,
    Frame = 0x95,
    // protocol 5
    ByteArray8 = 0x96,
    NextBuffer = 0x97,
    ReadonlyBuffer = 0x98,
}

/// The opcode of every byte value (`None` for bytes that are none).
static BY_BYTE: [Option<Opcode>; 256] = {
    let mut t = [Option::None; 256];
    let mut b = 0usize;
    while b < 256 {
        t[b] = Opcode::from_byte_slow(b as u8);
        b += 1;
    }
    t
};

/// What follows an opcode's byte in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    /// Nothing.
    None,
    /// This many bytes.
    Fixed(usize),
    /// One line ending in `\n`.
    Line,
    /// Two lines (GLOBAL and INST: module, then name).
    TwoLines,
    /// A length of 1, 4 (unsigned or signed) or 8 bytes, little-endian, then that many bytes.
    LenU8,
    LenU32,
    LenI32,
    LenU64,
}

impl Opcode {
    /// Every opcode, for tables and tests.
    pub const ALL: [Opcode; 68] = {
        use Opcode::*;
        [
            Mark,
            Stop,
            Pop,
            PopMark,
            Dup,
            Float,
            Int,
            BinInt,
            BinInt1,
            Long,
            BinInt2,
            None,
            PersId,
            BinPersId,
            Reduce,
            String,
            BinString,
            ShortBinString,
            Unicode,
            BinUnicode,
            Append,
            Build,
            Global,
            Dict,
            EmptyDict,
            Appends,
            Get,
            BinGet,
            Inst,
            LongBinGet,
            List,
            EmptyList,
            Obj,
            Put,
            BinPut,
            LongBinPut,
            SetItem,
            Tuple,
            EmptyTuple,
            SetItems,
            BinFloat,
            Proto,
            NewObj,
            Ext1,
            Ext2,
            Ext4,
            Tuple1,
            Tuple2,
            Tuple3,
            NewTrue,
            NewFalse,
            Long1,
            Long4,
            BinBytes,
            ShortBinBytes,
            ShortBinUnicode,
            BinUnicode8,
            BinBytes8,
            EmptySet,
            AddItems,
            FrozenSet,
            NewObjEx,
            StackGlobal,
            Memoize,
            Frame,
            ByteArray8,
            NextBuffer,
            ReadonlyBuffer,
        ]
    };

    /// The opcode a byte stands for, if any: one load from a table (the decoder and the
    /// memo walk ask once per opcode).
    #[inline]
    pub fn from_byte(b: u8) -> Option<Opcode> {
        BY_BYTE[b as usize]
    }

    /// [`Opcode::from_byte`] as a match, from which the table is built.
    const fn from_byte_slow(b: u8) -> Option<Opcode> {
        use Opcode::*;
        Some(match b {
            b'(' => Mark,
            b'.' => Stop,
            b'0' => Pop,
            b'1' => PopMark,
            b'2' => Dup,
            b'F' => Float,
            b'I' => Int,
            b'J' => BinInt,
            b'K' => BinInt1,
            b'L' => Long,
            b'M' => BinInt2,
            b'N' => None,
            b'P' => PersId,
            b'Q' => BinPersId,
            b'R' => Reduce,
            b'S' => String,
            b'T' => BinString,
            b'U' => ShortBinString,
            b'V' => Unicode,
            b'X' => BinUnicode,
            b'a' => Append,
            b'b' => Build,
            b'c' => Global,
            b'd' => Dict,
            b'}' => EmptyDict,
            b'e' => Appends,
            b'g' => Get,
            b'h' => BinGet,
            b'i' => Inst,
            b'j' => LongBinGet,
            b'l' => List,
            b']' => EmptyList,
            b'o' => Obj,
            b'p' => Put,
            b'q' => BinPut,
            b'r' => LongBinPut,
            b's' => SetItem,
            b't' => Tuple,
            b')' => EmptyTuple,
            b'u' => SetItems,
            b'G' => BinFloat,
            0x80 => Proto,
            0x81 => NewObj,
            0x82 => Ext1,
            0x83 => Ext2,
            0x84 => Ext4,
            0x85 => Tuple1,
            0x86 => Tuple2,
            0x87 => Tuple3,
            0x88 => NewTrue,
            0x89 => NewFalse,
            0x8a => Long1,
            0x8b => Long4,
            b'B' => BinBytes,
            b'C' => ShortBinBytes,
            0x8c => ShortBinUnicode,
            0x8d => BinUnicode8,
            0x8e => BinBytes8,
            0x8f => EmptySet,
            0x90 => AddItems,
            0x91 => FrozenSet,
            0x92 => NewObjEx,
            0x93 => StackGlobal,
            0x94 => Memoize,
            0x95 => Frame,
            0x96 => ByteArray8,
            0x97 => NextBuffer,
            0x98 => ReadonlyBuffer,
            _ => return Option::None,
        })
    }

    /// CPython's name (`pickletools`), as errors name the opcode.
    pub fn name(self) -> &'static str {
        use Opcode::*;
        match self {
            Mark => "MARK",
            Stop => "STOP",
            Pop => "POP",
            PopMark => "POP_MARK",
            Dup => "DUP",
            Float => "FLOAT",
            Int => "INT",
            BinInt => "BININT",
            BinInt1 => "BININT1",
            Long => "LONG",
            BinInt2 => "BININT2",
            None => "NONE",
            PersId => "PERSID",
            BinPersId => "BINPERSID",
            Reduce => "REDUCE",
            String => "STRING",
            BinString => "BINSTRING",
            ShortBinString => "SHORT_BINSTRING",
            Unicode => "UNICODE",
            BinUnicode => "BINUNICODE",
            Append => "APPEND",
            Build => "BUILD",
            Global => "GLOBAL",
            Dict => "DICT",
            EmptyDict => "EMPTY_DICT",
            Appends => "APPENDS",
            Get => "GET",
            BinGet => "BINGET",
            Inst => "INST",
            LongBinGet => "LONG_BINGET",
            List => "LIST",
            EmptyList => "EMPTY_LIST",
            Obj => "OBJ",
            Put => "PUT",
            BinPut => "BINPUT",
            LongBinPut => "LONG_BINPUT",
            SetItem => "SETITEM",
            Tuple => "TUPLE",
            EmptyTuple => "EMPTY_TUPLE",
            SetItems => "SETITEMS",
            BinFloat => "BINFLOAT",
            Proto => "PROTO",
            NewObj => "NEWOBJ",
            Ext1 => "EXT1",
            Ext2 => "EXT2",
            Ext4 => "EXT4",
            Tuple1 => "TUPLE1",
            Tuple2 => "TUPLE2",
            Tuple3 => "TUPLE3",
            NewTrue => "NEWTRUE",
            NewFalse => "NEWFALSE",
            Long1 => "LONG1",
            Long4 => "LONG4",
            BinBytes => "BINBYTES",
            ShortBinBytes => "SHORT_BINBYTES",
            ShortBinUnicode => "SHORT_BINUNICODE",
            BinUnicode8 => "BINUNICODE8",
            BinBytes8 => "BINBYTES8",
            EmptySet => "EMPTY_SET",
            AddItems => "ADDITEMS",
            FrozenSet => "FROZENSET",
            NewObjEx => "NEWOBJ_EX",
            StackGlobal => "STACK_GLOBAL",
            Memoize => "MEMOIZE",
            Frame => "FRAME",
            ByteArray8 => "BYTEARRAY8",
            NextBuffer => "NEXT_BUFFER",
            ReadonlyBuffer => "READONLY_BUFFER",
        }
    }

    /// The layout of the argument that follows the opcode's byte.
    pub fn arg(self) -> Arg {
        use Opcode::*;
        match self {
            Float | Int | Long | PersId | String | Unicode | Get | Put => Arg::Line,
            Global | Inst => Arg::TwoLines,
            BinInt1 | BinGet | BinPut | Proto | Ext1 => Arg::Fixed(1),
            BinInt2 | Ext2 => Arg::Fixed(2),
            BinInt | LongBinGet | LongBinPut | Ext4 => Arg::Fixed(4),
            BinFloat | Frame => Arg::Fixed(8),
            ShortBinString | ShortBinBytes | ShortBinUnicode | Long1 => Arg::LenU8,
            BinUnicode | BinBytes => Arg::LenU32,
            BinString | Long4 => Arg::LenI32,
            BinUnicode8 | BinBytes8 | ByteArray8 => Arg::LenU64,
            _ => Arg::None,
        }
    }
}

/// Where the pickle at the start of `data` ends (just past its STOP), walking opcodes by their
/// argument layout only: no value is built, nothing is allocated. `None` when `data` ends
/// first — a reader holding a prefix of a stream knows it must read more before decoding.
/// `Some` of the offset where the walk cannot go on (an unknown opcode, a negative length)
/// when the answer is the decoder's to give.
///
/// FRAME is read as its 8-byte length only: the opcodes inside follow it in the stream.
pub fn find_stop(data: &[u8]) -> Option<u64> {
    let mut pos = 0usize;
    let len_at = |pos: usize, n: usize| -> Option<u64> {
        let b = data.get(pos..pos.checked_add(n)?)?;
        let mut a = [0u8; 8];
        a.get_mut(..n)?.copy_from_slice(b);
        Some(u64::from_le_bytes(a))
    };
    loop {
        let at = pos;
        let op = *data.get(pos)?;
        pos += 1;
        let Some(op) = Opcode::from_byte(op) else {
            return Some(at as u64);
        };
        let skip = |pos: usize, n: u64| -> Option<usize> {
            let end = pos.checked_add(usize::try_from(n).ok()?)?;
            (end <= data.len()).then_some(end)
        };
        pos = match op.arg() {
            Arg::None if op == Opcode::Stop => return Some(pos as u64),
            Arg::None => pos,
            Arg::Fixed(n) => skip(pos, n as u64)?,
            Arg::Line => pos + data.get(pos..)?.iter().position(|b| *b == b'\n')? + 1,
            Arg::TwoLines => {
                let p = pos + data.get(pos..)?.iter().position(|b| *b == b'\n')? + 1;
                p + data.get(p..)?.iter().position(|b| *b == b'\n')? + 1
            }
            Arg::LenU8 => skip(pos + 1, len_at(pos, 1)?)?,
            Arg::LenU32 => skip(pos + 4, len_at(pos, 4)?)?,
            Arg::LenI32 => {
                let n = len_at(pos, 4)? as u32 as i32;
                match u64::try_from(n) {
                    Ok(n) => skip(pos + 4, n)?,
                    Err(_) => return Some(at as u64),
                }
            }
            Arg::LenU64 => skip(pos + 8, len_at(pos, 8)?)?,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_names_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for op in Opcode::ALL {
            assert_eq!(Opcode::from_byte(op as u8), Some(op), "{}", op.name());
            assert!(seen.insert(op as u8), "{} twice", op.name());
        }
        let known = (0..=255u8)
            .filter(|b| Opcode::from_byte(*b).is_some())
            .count();
        assert_eq!(known, Opcode::ALL.len());
    }

    #[test]
    fn find_stop_walks_arguments() {
        // PROTO 4, FRAME, SHORT_BINUNICODE "a.", MEMOIZE, STOP: the '.' inside the string is
        // not a STOP.
        let p = b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00\x8c\x02a.\x94.";
        assert_eq!(find_stop(p), Some(p.len() as u64));
        for cut in 0..p.len() {
            assert_eq!(find_stop(&p[..cut]), None, "prefix of {cut} bytes");
        }
        assert_eq!(find_stop(b"cos\nsystem\n."), Some(12));
        assert_eq!(find_stop(b"cos\nsys"), None);
        // An unknown opcode or a negative length: the decoder says what is wrong.
        assert_eq!(find_stop(b"N\xff"), Some(1));
        assert_eq!(find_stop(b"T\xff\xff\xff\xff"), Some(0));
        // Trailing bytes after STOP are not read.
        assert_eq!(find_stop(b"N.garbage"), Some(2));
    }
}

//! A small pickle *writer*: opcode-level building blocks plus [`encode`] for a whole arena.
//!
//! Why we have one: property tests round-trip arbitrary values through it, and benchmarks
//! write realistic torch checkpoints (gigabytes of them) without needing torch.

use crate::opcode::Opcode;
use crate::value::{Construct, Pickle, Value, ValueId};

/// Appends opcodes to a byte buffer. Methods mirror the opcodes; callers are responsible for
/// emitting a well-formed program (the decoder will tell them otherwise).
#[derive(Debug, Default, Clone)]
pub struct Writer {
    pub buf: Vec<u8>,
    protocol: u8,
    next_memo: u32,
}

impl Writer {
    /// Starts a pickle of `protocol` (2..=5 use PROTO; 0/1 emit nothing).
    pub fn new(protocol: u8) -> Writer {
        let mut w = Writer {
            buf: Vec::new(),
            protocol,
            next_memo: 0,
        };
        if protocol >= 2 {
            w.buf.extend_from_slice(&[Opcode::Proto as u8, protocol]);
        }
        w
    }

    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(Opcode::Stop as u8);
        self.buf
    }

    pub fn none(&mut self) {
        self.buf.push(Opcode::None as u8);
    }

    pub fn bool(&mut self, b: bool) {
        if self.protocol >= 2 {
            self.buf
                .push(if b { Opcode::NewTrue } else { Opcode::NewFalse } as u8);
        } else {
            self.buf
                .extend_from_slice(if b { b"I01\n" } else { b"I00\n" });
        }
    }

    pub fn int(&mut self, i: i64) {
        if self.protocol == 0 {
            self.buf.extend_from_slice(format!("I{i}\n").as_bytes());
        } else if (0..256).contains(&i) {
            self.buf.push(Opcode::BinInt1 as u8);
            self.buf.push(i as u8);
        } else if (0..65536).contains(&i) {
            self.buf.push(Opcode::BinInt2 as u8);
            self.buf.extend_from_slice(&(i as u16).to_le_bytes());
        } else if let Ok(v) = i32::try_from(i) {
            self.buf.push(Opcode::BinInt as u8);
            self.buf.extend_from_slice(&v.to_le_bytes());
        } else if self.protocol >= 2 {
            self.long_le(&i.to_le_bytes());
        } else {
            self.buf.extend_from_slice(format!("L{i}L\n").as_bytes());
        }
    }

    /// LONG1/LONG4 with the given two's-complement little-endian bytes.
    pub fn long_le(&mut self, bytes: &[u8]) {
        if bytes.len() < 256 {
            self.buf.push(Opcode::Long1 as u8);
            self.buf.push(bytes.len() as u8);
        } else {
            self.buf.push(Opcode::Long4 as u8);
            self.buf
                .extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        }
        self.buf.extend_from_slice(bytes);
    }

    pub fn float(&mut self, f: f64) {
        if self.protocol == 0 {
            let text = if f.is_nan() {
                "nan".to_string()
            } else if f.is_infinite() {
                if f > 0.0 { "inf".into() } else { "-inf".into() }
            } else {
                format!("{f:?}")
            };
            self.buf.extend_from_slice(format!("F{text}\n").as_bytes());
        } else {
            self.buf.push(Opcode::BinFloat as u8);
            self.buf.extend_from_slice(&f.to_be_bytes());
        }
    }

    pub fn str(&mut self, s: &str) {
        let b = s.as_bytes();
        if self.protocol == 0 {
            self.buf.push(Opcode::Unicode as u8);
            for ch in s.chars() {
                let c = ch as u32;
                if c < 0x80 && ch != '\\' && ch != '\n' && ch != '\r' {
                    self.buf.push(c as u8);
                } else if c <= 0xffff {
                    self.buf.extend_from_slice(format!("\\u{c:04x}").as_bytes());
                } else {
                    self.buf.extend_from_slice(format!("\\U{c:08x}").as_bytes());
                }
            }
            self.buf.push(b'\n');
        } else if self.protocol >= 4 && b.len() < 256 {
            self.buf.push(Opcode::ShortBinUnicode as u8);
            self.buf.push(b.len() as u8);
            self.buf.extend_from_slice(b);
        } else if let Ok(n) = u32::try_from(b.len()) {
            self.buf.push(Opcode::BinUnicode as u8);
            self.buf.extend_from_slice(&n.to_le_bytes());
            self.buf.extend_from_slice(b);
        } else {
            // BINUNICODE8 (a protocol-4 opcode; older readers cannot take >4 GiB strings).
            self.buf.push(Opcode::BinUnicode8 as u8);
            self.buf.extend_from_slice(&(b.len() as u64).to_le_bytes());
            self.buf.extend_from_slice(b);
        }
    }

    /// Bytes: BINBYTES on protocol 3+, `_codecs.encode(latin1, 'latin1')` before (as Python does).
    pub fn bytes(&mut self, b: &[u8]) {
        if self.protocol >= 3 {
            if b.len() < 256 {
                self.buf.push(Opcode::ShortBinBytes as u8);
                self.buf.push(b.len() as u8);
            } else if let Ok(n) = u32::try_from(b.len()) {
                self.buf.push(Opcode::BinBytes as u8);
                self.buf.extend_from_slice(&n.to_le_bytes());
            } else {
                self.buf.push(Opcode::BinBytes8 as u8);
                self.buf.extend_from_slice(&(b.len() as u64).to_le_bytes());
            }
            self.buf.extend_from_slice(b);
        } else {
            self.global("_codecs", "encode");
            self.mark();
            let latin1: String = b.iter().map(|c| char::from(*c)).collect();
            self.str(&latin1);
            self.str("latin1");
            self.tuple_from_mark();
            self.reduce();
        }
    }

    pub fn mark(&mut self) {
        self.buf.push(Opcode::Mark as u8);
    }

    pub fn empty_tuple(&mut self) {
        self.buf.push(Opcode::EmptyTuple as u8);
    }

    /// TUPLE from the last MARK.
    pub fn tuple_from_mark(&mut self) {
        self.buf.push(Opcode::Tuple as u8);
    }

    /// TUPLE1..3 (protocol 2+).
    pub fn tuple_n(&mut self, n: u8) {
        debug_assert!((1..=3).contains(&n));
        let op = match n {
            1 => Opcode::Tuple1,
            2 => Opcode::Tuple2,
            _ => Opcode::Tuple3,
        };
        self.buf.push(op as u8);
    }

    pub fn empty_list(&mut self) {
        self.buf.push(Opcode::EmptyList as u8);
    }

    pub fn appends(&mut self) {
        self.buf.push(Opcode::Appends as u8);
    }

    pub fn append(&mut self) {
        self.buf.push(Opcode::Append as u8);
    }

    pub fn empty_dict(&mut self) {
        self.buf.push(Opcode::EmptyDict as u8);
    }

    pub fn setitems(&mut self) {
        self.buf.push(Opcode::SetItems as u8);
    }

    pub fn setitem(&mut self) {
        self.buf.push(Opcode::SetItem as u8);
    }

    pub fn global(&mut self, module: &str, name: &str) {
        if self.protocol >= 4 {
            self.str(module);
            self.str(name);
            self.buf.push(Opcode::StackGlobal as u8);
        } else {
            self.buf.push(Opcode::Global as u8);
            self.buf.extend_from_slice(module.as_bytes());
            self.buf.push(b'\n');
            self.buf.extend_from_slice(name.as_bytes());
            self.buf.push(b'\n');
        }
    }

    pub fn reduce(&mut self) {
        self.buf.push(Opcode::Reduce as u8);
    }

    pub fn newobj(&mut self) {
        self.buf.push(Opcode::NewObj as u8);
    }

    pub fn build(&mut self) {
        self.buf.push(Opcode::Build as u8);
    }

    pub fn binpersid(&mut self) {
        self.buf.push(Opcode::BinPersId as u8);
    }

    /// Memoize the top of the stack; returns the memo index.
    pub fn put(&mut self) -> u32 {
        let idx = self.next_memo;
        self.next_memo += 1;
        if self.protocol >= 4 {
            self.buf.push(Opcode::Memoize as u8);
        } else if idx < 256 {
            self.buf.push(Opcode::BinPut as u8);
            self.buf.push(idx as u8);
        } else {
            self.buf.push(Opcode::LongBinPut as u8);
            self.buf.extend_from_slice(&idx.to_le_bytes());
        }
        idx
    }

    pub fn get(&mut self, idx: u32) {
        if idx < 256 {
            self.buf.push(Opcode::BinGet as u8);
            self.buf.push(idx as u8);
        } else {
            self.buf.push(Opcode::LongBinGet as u8);
            self.buf.extend_from_slice(&idx.to_le_bytes());
        }
    }
}

/// Encode a whole arena from `root` (protocol 2..=5). Shared values are written once and
/// fetched from the memo afterwards, so sharing survives a round trip. Cyclic graphs are
/// refused (only objects can be cyclic in Python pickles, via BUILD; this writer keeps it
/// simple). Iterative: deep values do not grow the Rust stack.
pub fn encode(p: &Pickle, root: ValueId, protocol: u8) -> Result<Vec<u8>, String> {
    enum Step {
        Visit(ValueId),
        Op(Opcode),
        Memo(ValueId),
        Leave(ValueId),
    }
    let mut w = Writer::new(protocol.clamp(2, 5));
    let mut memo: std::collections::HashMap<ValueId, u32> = std::collections::HashMap::new();
    let mut active: std::collections::HashSet<ValueId> = std::collections::HashSet::new();
    let mut work = vec![Step::Visit(root)];
    while let Some(step) = work.pop() {
        match step {
            Step::Op(op) => w.buf.push(op as u8),
            Step::Memo(id) => {
                let idx = w.put();
                memo.insert(id, idx);
            }
            Step::Leave(id) => {
                active.remove(&id);
            }
            Step::Visit(id) => {
                if let Some(idx) = memo.get(&id) {
                    w.get(*idx);
                    continue;
                }
                if !active.insert(id) {
                    return Err("cyclic value".into());
                }
                work.push(Step::Leave(id));
                match p.get(id) {
                    Value::None => w.none(),
                    Value::Bool(b) => w.bool(b),
                    Value::Int(i) => w.int(i),
                    Value::BigInt(b) => {
                        let mut bytes: Vec<u8> =
                            b.magnitude.iter().flat_map(|l| l.to_le_bytes()).collect();
                        bytes.push(0);
                        if b.negative {
                            let mut carry = true;
                            for x in bytes.iter_mut() {
                                *x = !*x;
                                if carry {
                                    let (n, c) = x.overflowing_add(1);
                                    *x = n;
                                    carry = c;
                                }
                            }
                        }
                        w.long_le(&bytes);
                    }
                    Value::Float(f) => w.float(f),
                    Value::Str(s) => w.str(s),
                    Value::Bytes(b) => w.bytes(b),
                    Value::ByteArray(b) => {
                        if protocol >= 5 {
                            w.buf.push(Opcode::ByteArray8 as u8);
                            w.buf.extend_from_slice(&(b.len() as u64).to_le_bytes());
                            w.buf.extend_from_slice(b);
                        } else {
                            w.global("builtins", "bytearray");
                            w.mark();
                            w.bytes(b);
                            w.tuple_from_mark();
                            w.reduce();
                        }
                    }
                    Value::Tuple(items) => {
                        // MARK items TUPLE, then memoize.
                        work.push(Step::Memo(id));
                        work.push(Step::Op(Opcode::Tuple));
                        for it in items.iter().rev() {
                            work.push(Step::Visit(*it));
                        }
                        w.mark();
                    }
                    Value::List(items) => {
                        w.empty_list();
                        let idx = w.put();
                        memo.insert(id, idx);
                        work.push(Step::Op(Opcode::Appends));
                        for it in items.iter().rev() {
                            work.push(Step::Visit(*it));
                        }
                        w.mark();
                    }
                    Value::Dict(items) => {
                        w.empty_dict();
                        let idx = w.put();
                        memo.insert(id, idx);
                        work.push(Step::Op(Opcode::SetItems));
                        for (k, v) in items.iter().rev() {
                            work.push(Step::Visit(*v));
                            work.push(Step::Visit(*k));
                        }
                        w.mark();
                    }
                    Value::Set(items) | Value::FrozenSet(items) => {
                        let frozen = matches!(p.get(id), Value::FrozenSet(_));
                        if protocol >= 4 {
                            if frozen {
                                work.push(Step::Memo(id));
                                work.push(Step::Op(Opcode::FrozenSet));
                                for it in items.iter().rev() {
                                    work.push(Step::Visit(*it));
                                }
                                w.mark();
                            } else {
                                w.buf.push(Opcode::EmptySet as u8);
                                let idx = w.put();
                                memo.insert(id, idx);
                                work.push(Step::Op(Opcode::AddItems));
                                for it in items.iter().rev() {
                                    work.push(Step::Visit(*it));
                                }
                                w.mark();
                            }
                        } else {
                            w.global("builtins", if frozen { "frozenset" } else { "set" });
                            work.push(Step::Memo(id));
                            work.push(Step::Op(Opcode::Reduce));
                            work.push(Step::Op(Opcode::Tuple1));
                            work.push(Step::Op(Opcode::Appends));
                            for it in items.iter().rev() {
                                work.push(Step::Visit(*it));
                            }
                            // `](`, popped in that order.
                            work.push(Step::Op(Opcode::Mark));
                            work.push(Step::Op(Opcode::EmptyList));
                        }
                    }
                    Value::Global(g) => {
                        // GLOBAL is line-based before protocol 4: a newline cannot be written.
                        if protocol < 4 && (g.module.contains('\n') || g.name.contains('\n')) {
                            return Err("global name with a newline needs protocol 4".into());
                        }
                        w.global(&g.module, &g.name)
                    }
                    Value::Object(o) => {
                        // callee args OP [BUILD state] [SETITEMS] [APPENDS]
                        work.push(Step::Memo(id));
                        if !o.list_items.is_empty() {
                            work.push(Step::Op(Opcode::Appends));
                            for it in o.list_items.iter().rev() {
                                work.push(Step::Visit(*it));
                            }
                            work.push(Step::Op(Opcode::Mark));
                        }
                        if !o.dict_items.is_empty() {
                            work.push(Step::Op(Opcode::SetItems));
                            for (k, v) in o.dict_items.iter().rev() {
                                work.push(Step::Visit(*v));
                                work.push(Step::Visit(*k));
                            }
                            work.push(Step::Op(Opcode::Mark));
                        }
                        if let Some(s) = o.state {
                            work.push(Step::Op(Opcode::Build));
                            work.push(Step::Visit(s));
                        }
                        match o.construct {
                            Construct::NewObj => work.push(Step::Op(Opcode::NewObj)),
                            Construct::NewObjEx => {
                                work.push(Step::Op(Opcode::NewObjEx));
                            }
                            _ => work.push(Step::Op(Opcode::Reduce)),
                        }
                        if o.construct == Construct::NewObjEx {
                            match o.kwargs {
                                Some(kw) => work.push(Step::Visit(kw)),
                                // NEWOBJ_EX always takes a kwargs dict.
                                None => work.push(Step::Op(Opcode::EmptyDict)),
                            }
                        }
                        work.push(Step::Visit(o.args));
                        work.push(Step::Visit(o.callee));
                    }
                    Value::PersId(pid) => {
                        work.push(Step::Op(Opcode::BinPersId));
                        work.push(Step::Visit(*pid));
                    }
                    Value::Extension(code) => {
                        w.buf.push(Opcode::Ext4 as u8);
                        w.buf.extend_from_slice(&code.to_le_bytes());
                    }
                }
            }
        }
    }
    Ok(w.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{Global, Object};

    #[test]
    fn newline_in_a_global_needs_protocol_4() {
        let mut p = Pickle::new();
        let g = p.push(Value::Global(&Global {
            module: "a\nb".into(),
            name: "c".into(),
        }));
        assert!(encode(&p, g, 2).is_err());
        let bytes = encode(&p, g, 4).unwrap();
        assert!(crate::decode(&bytes).is_ok());
    }

    #[test]
    fn newobj_ex_without_kwargs_writes_an_empty_dict() {
        let mut p = Pickle::new();
        let cls = p.push(Value::Global(&Global {
            module: "m".into(),
            name: "C".into(),
        }));
        let args = p.push(Value::Tuple(&[]));
        let o = p.push(Value::Object(&Object {
            callee: cls,
            args,
            kwargs: None,
            construct: Construct::NewObjEx,
            state: None,
            dict_items: vec![],
            list_items: vec![],
            offset: 0,
        }));
        let bytes = encode(&p, o, 4).unwrap();
        let back = crate::decode(&bytes).unwrap();
        assert!(matches!(back.get(back.root()), Value::Object(_)));
    }
}

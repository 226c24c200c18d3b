//! Property tests: random value trees survive `write::encode` -> `decode` for protocols 2..=5,
//! sharing survives, and `decode` never panics on arbitrary or mutated input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};

use ckpt_pickle::write::encode;
use ckpt_pickle::{BigInt, Construct, Global, Object, Pickle, Value, ValueId, decode};
use proptest::collection::vec;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// A generated tree, turned into a `Pickle` arena by `build`.

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Int(i64),
    Str(String),
}

#[derive(Debug, Clone)]
enum Node {
    None,
    Bool(bool),
    Int(i64),
    /// Sign and little-endian limbs; normalized to `Int` in `build` when it fits an i64 (the
    /// decoder returns `Int` for every LONG that fits).
    Big(bool, Vec<u32>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    ByteArray(Vec<u8>),
    Global(String, String),
    Ext(u32),
    PersId(Box<Node>),
    Tuple(Vec<Node>),
    List(Vec<Node>),
    Dict(Vec<(Key, Node)>),
    Set(Vec<Key>),
    FrozenSet(Vec<Key>),
    Object(Box<ObjectNode>),
    /// A reference to a container built earlier (never an ancestor, so never a cycle).
    Shared(usize),
}

#[derive(Debug, Clone)]
struct ObjectNode {
    module: String,
    name: String,
    newobj: bool,
    args: Vec<Node>,
    state: Option<Vec<(Key, Node)>>,
    dict_items: Vec<(Key, Node)>,
    list_items: Vec<Node>,
}

fn push_key(p: &mut Pickle, k: &Key) -> ValueId {
    match k {
        Key::Int(i) => p.push(Value::Int(*i)),
        Key::Str(s) => p.push(Value::Str(s)),
    }
}

/// Unique keys in first-seen order (a Python dict or set cannot hold a key twice, and the
/// decoder merges duplicates, so the generator must not produce them).
fn unique<'a, T>(items: impl IntoIterator<Item = (&'a Key, T)>) -> Vec<(&'a Key, T)> {
    let mut seen = HashSet::new();
    items.into_iter().filter(|(k, _)| seen.insert(*k)).collect()
}

fn build_pairs(
    p: &mut Pickle,
    pool: &mut Vec<ValueId>,
    items: &[(Key, Node)],
) -> Vec<(ValueId, ValueId)> {
    unique(items.iter().map(|(k, v)| (k, v)))
        .into_iter()
        .map(|(k, v)| {
            let k = push_key(p, k);
            let v = build(p, pool, v);
            (k, v)
        })
        .collect()
}

fn build_keys(p: &mut Pickle, keys: &[Key]) -> Vec<ValueId> {
    unique(keys.iter().map(|k| (k, ())))
        .into_iter()
        .map(|(k, ())| push_key(p, k))
        .collect()
}

fn build(p: &mut Pickle, pool: &mut Vec<ValueId>, n: &Node) -> ValueId {
    let scalar = |p: &mut Pickle, v: Value<'_>| p.push(v);
    let id = match n {
        Node::None => return scalar(p, Value::None),
        Node::Bool(b) => return scalar(p, Value::Bool(*b)),
        Node::Int(i) => return scalar(p, Value::Int(*i)),
        Node::Big(negative, limbs) => {
            let mut magnitude = limbs.clone();
            while magnitude.last() == Some(&0) {
                magnitude.pop();
            }
            let b = BigInt {
                negative: *negative && !magnitude.is_empty(),
                magnitude,
            };
            return match b.to_i64() {
                Some(i) => scalar(p, Value::Int(i)),
                None => scalar(p, Value::BigInt(&b)),
            };
        }
        Node::Float(f) => return scalar(p, Value::Float(*f)),
        Node::Str(s) => return scalar(p, Value::Str(s)),
        Node::Bytes(b) => return scalar(p, Value::Bytes(b)),
        Node::ByteArray(b) => return scalar(p, Value::ByteArray(b)),
        Node::Global(m, n) => {
            return scalar(
                p,
                Value::Global(&Global {
                    module: m.clone(),
                    name: n.clone(),
                }),
            );
        }
        Node::Ext(c) => return scalar(p, Value::Extension(c)),
        Node::PersId(inner) => {
            let inner = build(p, pool, inner);
            return scalar(p, Value::PersId(&inner));
        }
        Node::Shared(i) => {
            if pool.is_empty() {
                return scalar(p, Value::None);
            }
            return pool[i % pool.len()];
        }
        Node::Tuple(items) => {
            let ids: Vec<ValueId> = items.iter().map(|c| build(p, pool, c)).collect();
            p.push(Value::Tuple(&ids))
        }
        Node::List(items) => {
            let ids: Vec<ValueId> = items.iter().map(|c| build(p, pool, c)).collect();
            p.push(Value::List(&ids))
        }
        Node::Dict(items) => {
            let pairs = build_pairs(p, pool, items);
            p.push(Value::Dict(&pairs))
        }
        Node::Set(keys) => {
            let ids = build_keys(p, keys);
            p.push(Value::Set(&ids))
        }
        Node::FrozenSet(keys) => {
            let ids = build_keys(p, keys);
            p.push(Value::FrozenSet(&ids))
        }
        Node::Object(o) => {
            let callee = p.push(Value::Global(&Global {
                module: o.module.clone(),
                name: o.name.clone(),
            }));
            let args: Vec<ValueId> = o.args.iter().map(|c| build(p, pool, c)).collect();
            let args = p.push(Value::Tuple(&args));
            let state = o.state.as_ref().map(|s| {
                let pairs = build_pairs(p, pool, s);
                p.push(Value::Dict(&pairs))
            });
            let dict_items = build_pairs(p, pool, &o.dict_items);
            let list_items = o.list_items.iter().map(|c| build(p, pool, c)).collect();
            p.push(Value::Object(&Object {
                callee,
                args,
                kwargs: None,
                construct: if o.newobj {
                    Construct::NewObj
                } else {
                    Construct::Reduce
                },
                state,
                dict_items,
                list_items,
                offset: 0,
            }))
        }
    };
    pool.push(id);
    id
}

fn arena(n: &Node) -> Pickle {
    let mut p = Pickle::new();
    let mut pool = Vec::new();
    let root = build(&mut p, &mut pool, n);
    p.set_root(root);
    p
}

// ---------------------------------------------------------------------------------------------
// Strategies.

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => vec(any::<char>(), 0..12).prop_map(String::from_iter),
        1 => Just(String::new()),
        1 => "[a-z_]{1,10}",
        // >= 256 bytes: BINUNICODE instead of SHORT_BINUNICODE in protocol 4+.
        1 => vec(any::<char>(), 200..400).prop_map(String::from_iter),
    ]
}

fn byte_string() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..40),
        // >= 256 bytes: BINBYTES instead of SHORT_BINBYTES.
        1 => vec(any::<u8>(), 250..600),
    ]
}

fn int() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => any::<i64>(),
        2 => -300i64..70_000,
        1 => prop::sample::select(vec![
            i64::MIN,
            i64::MIN + 1,
            i64::MAX,
            i64::MAX - 1,
            0,
            -1,
            255,
            256,
            65_535,
            65_536,
            i64::from(i32::MIN),
            i64::from(i32::MIN) - 1,
            i64::from(i32::MAX),
            i64::from(i32::MAX) + 1,
        ]),
    ]
}

fn big() -> impl Strategy<Value = Node> {
    let limbs = prop_oneof![
        4 => vec(any::<u32>(), 0..6),
        // >= 256 bytes: LONG4.
        1 => vec(any::<u32>(), 60..80),
        // Around the i64 boundary: 2^63 and neighbours.
        1 => prop::sample::select(vec![
            vec![0, 0x8000_0000],
            vec![1, 0x8000_0000],
            vec![0xffff_ffff, 0x7fff_ffff],
            vec![0xffff_ffff, 0xffff_ffff],
            vec![0, 0, 1],
            vec![0xffff_ffff, 0xffff_ffff, 0xffff_ffff],
        ]),
    ];
    (any::<bool>(), limbs).prop_map(|(neg, l)| Node::Big(neg, l))
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => any::<f64>(),
        1 => prop::sample::select(vec![
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -0.0,
            0.0,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            5e-324,
        ]),
    ]
}

fn ident() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_]{0,12}"
}

fn module() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_]{0,8}(\\.[A-Za-z_][A-Za-z0-9_]{0,8}){0,2}"
}

fn key() -> impl Strategy<Value = Key> {
    prop_oneof![int().prop_map(Key::Int), text().prop_map(Key::Str)]
}

fn leaf() -> impl Strategy<Value = Node> {
    prop_oneof![
        1 => Just(Node::None),
        1 => any::<bool>().prop_map(Node::Bool),
        3 => int().prop_map(Node::Int),
        2 => big(),
        2 => float().prop_map(Node::Float),
        3 => text().prop_map(Node::Str),
        2 => byte_string().prop_map(Node::Bytes),
        1 => byte_string().prop_map(Node::ByteArray),
        1 => (module(), ident()).prop_map(|(m, n)| Node::Global(m, n)),
        1 => any::<u32>().prop_map(Node::Ext),
        1 => any::<usize>().prop_map(Node::Shared),
        1 => vec(key(), 0..6).prop_map(Node::Set),
        1 => vec(key(), 0..6).prop_map(Node::FrozenSet),
    ]
}

fn node() -> impl Strategy<Value = Node> {
    leaf().prop_recursive(5, 96, 6, |inner| {
        let pairs = || vec((key(), inner.clone()), 0..6);
        prop_oneof![
            2 => vec(inner.clone(), 0..6).prop_map(Node::Tuple),
            2 => vec(inner.clone(), 0..6).prop_map(Node::List),
            2 => pairs().prop_map(Node::Dict),
            1 => inner.clone().prop_map(|n| Node::PersId(Box::new(n))),
            2 => (
                module(),
                ident(),
                any::<bool>(),
                vec(inner.clone(), 0..4),
                proptest::option::of(pairs()),
                vec((key(), inner.clone()), 0..3),
                vec(inner.clone(), 0..3),
            )
                .prop_map(|(module, name, newobj, args, state, dict_items, list_items)| {
                    Node::Object(Box::new(ObjectNode {
                        module,
                        name,
                        newobj,
                        args,
                        state,
                        dict_items,
                        list_items,
                    }))
                }),
        ]
    })
}

// ---------------------------------------------------------------------------------------------
// Structural comparison of an expected arena (what we encoded) and a decoded one.

struct Cmp<'a> {
    a: &'a Pickle,
    b: &'a Pickle,
    protocol: u8,
    /// Expected container id -> decoded id, and back: sharing must be preserved exactly
    /// (one expected container is one decoded container, and vice versa).
    fwd: HashMap<ValueId, ValueId>,
    back: HashMap<ValueId, ValueId>,
    seen: HashSet<(ValueId, ValueId)>,
    work: Vec<(ValueId, ValueId, String)>,
}

fn is_memoized(v: Value<'_>) -> bool {
    matches!(
        v,
        Value::Tuple(_)
            | Value::List(_)
            | Value::Dict(_)
            | Value::Set(_)
            | Value::FrozenSet(_)
            | Value::Object(_)
    )
}

impl Cmp<'_> {
    fn push(&mut self, x: ValueId, y: ValueId, path: String) {
        self.work.push((x, y, path));
    }

    /// A decoded value `y` must be `callee(*args)` by REDUCE with nothing applied afterwards;
    /// returns the args.
    fn plain_reduce(
        &self,
        y: ValueId,
        module: &str,
        name: &str,
        path: &str,
    ) -> Result<Vec<ValueId>, String> {
        let Value::Object(o) = self.b.get(y) else {
            return Err(format!(
                "{path}: expected a {module}.{name} REDUCE, got {:?}",
                self.b.get(y)
            ));
        };
        let g = self.b.as_global(o.callee);
        if !g.is_some_and(|g| g.is(module, name))
            || o.construct != Construct::Reduce
            || o.state.is_some()
            || o.kwargs.is_some()
            || !o.dict_items.is_empty()
            || !o.list_items.is_empty()
        {
            return Err(format!(
                "{path}: expected a plain {module}.{name} REDUCE, got {o:?} (callee {g:?})"
            ));
        }
        match self.b.get(o.args) {
            Value::Tuple(t) => Ok(t.to_vec()),
            other => Err(format!("{path}: REDUCE args not a tuple: {other:?}")),
        }
    }

    /// Bytes as the protocol writes them: BINBYTES (3+) or `_codecs.encode(latin1, 'latin1')`.
    fn check_bytes(&self, want: &[u8], y: ValueId, path: &str) -> Result<(), String> {
        if self.protocol >= 3 {
            return match self.b.get(y) {
                Value::Bytes(got) if got == want => Ok(()),
                other => Err(format!("{path}: expected bytes {want:?}, got {other:?}")),
            };
        }
        let args = self.plain_reduce(y, "_codecs", "encode", path)?;
        let latin1: String = want.iter().map(|c| char::from(*c)).collect();
        match args.as_slice() {
            [s, enc]
                if self.b.as_str(*s) == Some(latin1.as_str())
                    && self.b.as_str(*enc) == Some("latin1") =>
            {
                Ok(())
            }
            _ => Err(format!("{path}: _codecs.encode args wrong for {want:?}")),
        }
    }

    fn run(mut self, x: ValueId, y: ValueId) -> Result<(), String> {
        self.push(x, y, "root".into());
        while let Some((x, y, path)) = self.work.pop() {
            if !self.seen.insert((x, y)) {
                continue;
            }
            let (va, vb) = (self.a.get(x), self.b.get(y));
            if is_memoized(va) {
                if let Some(prev) = self.fwd.insert(x, y)
                    && prev != y
                {
                    return Err(format!(
                        "{path}: expected value {x:?} decoded as two values {prev:?} and {y:?}"
                    ));
                }
                if let Some(prev) = self.back.insert(y, x)
                    && prev != x
                {
                    return Err(format!(
                        "{path}: decoded value {y:?} stands for two values {prev:?} and {x:?}"
                    ));
                }
            }
            let mismatch = || format!("{path}: expected {va:?}, got {vb:?}");
            match (va, vb) {
                (Value::None, Value::None) => {}
                (Value::Bool(p), Value::Bool(q)) if p == q => {}
                (Value::Int(p), Value::Int(q)) if p == q => {}
                (Value::BigInt(p), Value::BigInt(q)) if p == q => {}
                (Value::Float(p), Value::Float(q))
                    if (p.is_nan() && q.is_nan()) || p.to_bits() == q.to_bits() => {}
                (Value::Str(p), Value::Str(q)) if p == q => {}
                (Value::Bytes(p), _) => self.check_bytes(p, y, &path)?,
                (Value::ByteArray(p), _) => {
                    if self.protocol >= 5 {
                        if vb != Value::ByteArray(p) {
                            return Err(mismatch());
                        }
                    } else {
                        let args = self.plain_reduce(y, "builtins", "bytearray", &path)?;
                        let [inner] = args.as_slice() else {
                            return Err(mismatch());
                        };
                        self.check_bytes(p, *inner, &path)?;
                    }
                }
                (Value::Tuple(p), Value::Tuple(q)) | (Value::List(p), Value::List(q))
                    if p.len() == q.len() =>
                {
                    for (i, (c, d)) in p.iter().zip(q).enumerate() {
                        self.push(*c, *d, format!("{path}[{i}]"));
                    }
                }
                (Value::Dict(p), Value::Dict(q)) if p.len() == q.len() => {
                    for (i, ((k1, v1), (k2, v2))) in p.iter().zip(q).enumerate() {
                        self.push(*k1, *k2, format!("{path}.key{i}"));
                        self.push(*v1, *v2, format!("{path}.value{i}"));
                    }
                }
                (Value::Set(p), _) | (Value::FrozenSet(p), _) => {
                    let frozen = matches!(va, Value::FrozenSet(_));
                    let q = if self.protocol >= 4 {
                        match (frozen, vb) {
                            (false, Value::Set(q)) | (true, Value::FrozenSet(q)) => q.to_vec(),
                            _ => return Err(mismatch()),
                        }
                    } else {
                        // builtins.set([items]) / builtins.frozenset([items])
                        let args = self.plain_reduce(
                            y,
                            "builtins",
                            if frozen { "frozenset" } else { "set" },
                            &path,
                        )?;
                        match args.as_slice() {
                            [l] => match self.b.get(*l) {
                                Value::List(q) => q.to_vec(),
                                _ => return Err(mismatch()),
                            },
                            _ => return Err(mismatch()),
                        }
                    };
                    if p.len() != q.len() {
                        return Err(mismatch());
                    }
                    for (i, (c, d)) in p.iter().zip(&q).enumerate() {
                        self.push(*c, *d, format!("{path}{{{i}}}"));
                    }
                }
                (Value::Global(p), Value::Global(q)) if p == q => {}
                (Value::Extension(p), Value::Extension(q)) if p == q => {}
                (Value::PersId(p), Value::PersId(q)) => self.push(*p, *q, format!("{path}.pid")),
                (Value::Object(p), Value::Object(q)) => {
                    if p.construct != q.construct
                        || q.kwargs.is_some()
                        || p.state.is_some() != q.state.is_some()
                        || p.dict_items.len() != q.dict_items.len()
                        || p.list_items.len() != q.list_items.len()
                    {
                        return Err(mismatch());
                    }
                    self.push(p.callee, q.callee, format!("{path}.callee"));
                    self.push(p.args, q.args, format!("{path}.args"));
                    if let (Some(s), Some(t)) = (p.state, q.state) {
                        self.push(s, t, format!("{path}.state"));
                    }
                    for (i, ((k1, v1), (k2, v2))) in
                        p.dict_items.iter().zip(&q.dict_items).enumerate()
                    {
                        self.push(*k1, *k2, format!("{path}.dict_key{i}"));
                        self.push(*v1, *v2, format!("{path}.dict_value{i}"));
                    }
                    for (i, (c, d)) in p.list_items.iter().zip(&q.list_items).enumerate() {
                        self.push(*c, *d, format!("{path}.list_item{i}"));
                    }
                }
                _ => return Err(mismatch()),
            }
        }
        Ok(())
    }
}

fn compare(a: &Pickle, b: &Pickle, protocol: u8) -> Result<(), String> {
    Cmp {
        a,
        b,
        protocol,
        fwd: HashMap::new(),
        back: HashMap::new(),
        seen: HashSet::new(),
        work: Vec::new(),
    }
    .run(a.root(), b.root())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Mutations of valid encodings.

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(data: &mut Vec<u8>, m: &Mutation) {
    let n = data.len();
    match *m {
        Mutation::Flip(i, bit) if n > 0 => data[i % n] ^= 1 << bit,
        Mutation::Set(i, b) if n > 0 => data[i % n] = b,
        Mutation::Insert(i, b) => data.insert(i % (n + 1), b),
        Mutation::Delete(i) if n > 0 => {
            data.remove(i % n);
        }
        Mutation::Truncate(i) => data.truncate(i % (n + 1)),
        _ => {}
    }
}

/// Bytes that are mostly opcodes, so random programs get past the first byte.
fn opcode_soup() -> impl Strategy<Value = Vec<u8>> {
    let tokens: Vec<&'static [u8]> = vec![
        b"\x80\x02",
        b"\x80\x04",
        b"\x80\x05",
        b"(",
        b".",
        b"0",
        b"1",
        b"2",
        b"N",
        b"\x88",
        b"\x89",
        b"K\x01",
        b"M\x01\x02",
        b"J\xff\xff\xff\xff",
        b"I12\n",
        b"L-3L\n",
        b"\x8a\x01\xff",
        b"\x8b\x02\x00\x00\x00\x00\x80",
        b"F1.5\n",
        b"Gabcdefgh",
        b"S'a'\n",
        b"U\x01a",
        b"V\\u00e9\n",
        b"X\x01\x00\x00\x00a",
        b"\x8c\x01a",
        b"\x8d\x01\x00\x00\x00\x00\x00\x00\x00a",
        b"C\x01a",
        b"B\x00\x00\x00\x00",
        b"\x8e\x00\x00\x00\x00\x00\x00\x00\x00",
        b"\x96\x00\x00\x00\x00\x00\x00\x00\x00",
        b")",
        b"t",
        b"\x85",
        b"\x86",
        b"\x87",
        b"]",
        b"l",
        b"}",
        b"d",
        b"\x8f",
        b"\x91",
        b"a",
        b"e",
        b"s",
        b"u",
        b"\x90",
        b"p0\n",
        b"q\x00",
        b"q\x01",
        b"r\x02\x00\x00\x00",
        b"\x94",
        b"g0\n",
        b"h\x00",
        b"h\x01",
        b"j\x02\x00\x00\x00",
        b"cmod\nname\n",
        b"\x93",
        b"\x82\x01",
        b"\x83\x01\x00",
        b"\x84\x01\x00\x00\x00",
        b"R",
        b"\x81",
        b"\x92",
        b"imod\nname\n",
        b"o",
        b"b",
        b"Pid\n",
        b"Q",
        b"\x95\x00\x00\x00\x00\x00\x00\x00\x00",
    ];
    vec(prop::sample::select(tokens), 0..96).prop_map(|ts| ts.concat())
}

// ---------------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn roundtrip_all_protocols(n in node()) {
        let a = arena(&n);
        for protocol in 2..=5u8 {
            let bytes = encode(&a, a.root(), protocol).map_err(|e| TestCaseError::fail(format!("encode p{protocol}: {e}")))?;
            let b = decode(&bytes).map_err(|e| TestCaseError::fail(format!("decode p{protocol}: {e}\n{}", hex(&bytes))))?;
            prop_assert_eq!(b.protocol, protocol);
            prop_assert_eq!(b.end, bytes.len() as u64);
            if let Err(e) = compare(&a, &b, protocol) {
                return Err(TestCaseError::fail(format!("protocol {protocol}: {e}\nbytes: {}", hex(&bytes))));
            }
        }
    }

    #[test]
    fn shared_list_stays_shared(items in vec(leaf(), 0..8), protocol in 2..=5u8, outer in 0..3u8) {
        let mut a = Pickle::new();
        let mut pool = Vec::new();
        let ids: Vec<ValueId> = items.iter().map(|n| build(&mut a, &mut pool, n)).collect();
        let shared = a.push(Value::List(&ids));
        // Referenced from two places: directly, and from inside another container.
        let key = a.push(Value::Str("k"));
        let inner = a.push(Value::Dict(&[(key, shared)]));
        let root = match outer {
            0 => a.push(Value::Tuple(&[shared, inner])),
            1 => a.push(Value::List(&[inner, shared])),
            _ => {
                let k2 = a.push(Value::Int(7));
                a.push(Value::Dict(&[(k2, shared), (key, inner)]))
            }
        };
        a.set_root(root);
        let bytes = encode(&a, root, protocol).map_err(TestCaseError::fail)?;
        let b = decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        compare(&a, &b, protocol).map_err(TestCaseError::fail)?;
        let (direct, via) = match (outer, b.get(b.root())) {
            (0, Value::Tuple(t)) | (1, Value::List(t)) => {
                let (d, i) = if outer == 0 { (t[0], t[1]) } else { (t[1], t[0]) };
                (d, b.dict_get(i, "k"))
            }
            (_, Value::Dict(d)) => (d[0].1, b.dict_get(d[1].1, "k")),
            (_, other) => return Err(TestCaseError::fail(format!("root {other:?}"))),
        };
        prop_assert_eq!(Some(direct), via, "one list, referenced twice");
        prop_assert!(matches!(b.get(direct), Value::List(l) if l.len() == items.len()));
        // No copy was made anywhere: the decoded arena references that one id exactly twice.
        let refs = b.values().map(|v| match v {
            Value::Tuple(t) | Value::List(t) => t.iter().filter(|c| **c == direct).count(),
            Value::Dict(d) => d.iter().filter(|(_, c)| *c == direct).count(),
            _ => 0,
        }).sum::<usize>();
        prop_assert_eq!(refs, 2, "the shared list is referenced from exactly two places");
    }

    #[test]
    fn cyclic_lists_and_dicts_roundtrip(items in vec(leaf(), 0..6), protocol in 2..=5u8, at in any::<usize>()) {
        // Lists and dicts are memoized before their items are written, so a list that holds
        // itself and a dict that holds itself (and the list) survive the round trip as cycles.
        let mut a = Pickle::new();
        let mut pool = Vec::new();
        let mut ids: Vec<ValueId> = items.iter().map(|n| build(&mut a, &mut pool, n)).collect();
        let list = ValueId(a.len() as u32);
        let dict = ValueId(a.len() as u32 + 3);
        ids.insert(at % (ids.len() + 1), list);
        ids.push(dict);
        assert_eq!(a.push(Value::List(&ids)), list);
        let k_self = a.push(Value::Str("self"));
        let k_list = a.push(Value::Str("list"));
        assert_eq!(a.push(Value::Dict(&[(k_self, dict), (k_list, list)])), dict);
        a.set_root(list);
        let bytes = encode(&a, list, protocol).map_err(TestCaseError::fail)?;
        let b = decode(&bytes).map_err(|e| TestCaseError::fail(format!("{e}: {}", hex(&bytes))))?;
        compare(&a, &b, protocol).map_err(TestCaseError::fail)?;
        let root = b.root();
        let Value::List(l) = b.get(root) else {
            return Err(TestCaseError::fail("root is not a list"));
        };
        prop_assert_eq!(l[at % (items.len() + 1)], root, "the list holds itself");
        let d = *l.last().unwrap();
        prop_assert_eq!(b.dict_get(d, "self"), Some(d));
        prop_assert_eq!(b.dict_get(d, "list"), Some(root));
    }

    #[test]
    fn decode_arbitrary_bytes_never_panics(data in vec(any::<u8>(), 0..512)) {
        let _ = decode(&data);
    }

    #[test]
    fn decode_opcode_soup_never_panics(data in opcode_soup()) {
        let _ = decode(&data);
    }

    #[test]
    fn decode_mutated_encodings_never_panics(n in node(), protocol in 2..=5u8, ms in vec(mutation(), 1..8)) {
        let a = arena(&n);
        let mut bytes = encode(&a, a.root(), protocol).map_err(TestCaseError::fail)?;
        for m in &ms {
            mutate(&mut bytes, m);
            let _ = decode(&bytes);
        }
    }
}

//! A safetensors file of tens of thousands of tensors, through every command that reads its
//! tensors: the compact header tables, the name index tensors' bytes are found through, the
//! plans `convert` borrows, the header it writes as text and the identity's tensor table all
//! give what the file says. (Their memory on 170,000 tensors is in
//! scripts/check_hostile_budget.sh's table; this is what they read.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::run;
use serde_json::{Value, json};

/// One tensor of the generated file.
#[derive(Clone)]
struct T {
    name: String,
    dtype: &'static str,
    shape: Vec<u64>,
    bytes: Vec<u8>,
}

const DTYPES: [(&str, &str, u64); 5] = [
    ("F32", "float32", 4),
    ("F16", "float16", 2),
    ("BF16", "bfloat16", 2),
    ("I64", "int64", 8),
    ("U8", "uint8", 1),
];

fn torch_name(st: &str) -> &'static str {
    DTYPES.iter().find(|d| d.0 == st).unwrap().1
}

/// `n` tensors of ranks 0 to 3, five dtypes, names with characters JSON escapes, each with
/// bytes of its own.
fn tensors(n: usize) -> Vec<T> {
    (0..n)
        .map(|i| {
            let (dtype, _, size) = DTYPES[i % DTYPES.len()];
            let shape: Vec<u64> = match i % 4 {
                0 => vec![],
                1 => vec![(i % 3) as u64 + 1],
                2 => vec![2, (i % 2) as u64],
                _ => vec![1, 2, 1],
            };
            let n: u64 = shape.iter().product::<u64>() * size;
            let name = match i % 5 {
                0 => format!("layers.{i}.weight"),
                1 => format!("layers.{i}.bias"),
                2 => format!("enc\"oder.{i}\\x"),
                3 => format!("é.{i}\u{1}"),
                _ => format!("t{i}"),
            };
            let bytes = (0..n).map(|k| (i as u64 * 31 + k) as u8).collect();
            T {
                name,
                dtype,
                shape,
                bytes,
            }
        })
        .collect()
}

/// A safetensors file listing `ts` in this order, with their data in another order (by
/// name), so neither order tells where a tensor's bytes are.
fn write(path: &Path, ts: &[T]) {
    let mut by_name: Vec<&T> = ts.iter().collect();
    by_name.sort_by(|a, b| a.name.cmp(&b.name));
    let mut at = BTreeMap::new();
    let mut data = Vec::new();
    for t in by_name {
        at.insert(t.name.clone(), (data.len(), data.len() + t.bytes.len()));
        data.extend_from_slice(&t.bytes);
    }
    let mut h = serde_json::Map::new();
    h.insert("__metadata__".into(), json!({"format": "pt"}));
    for t in ts {
        let (b, e) = at[&t.name];
        h.insert(
            t.name.clone(),
            json!({"dtype": t.dtype, "shape": t.shape, "data_offsets": [b, e]}),
        );
    }
    let h = Value::Object(h).to_string();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(&data);
    std::fs::write(path, out).unwrap();
}

fn json_of(args: &[&str]) -> Value {
    let (code, out, err) = run(args);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const N: usize = 30_000;

/// `dump --tensor-hashes` lists every tensor in header order with its dtype and shape, and
/// hashes the bytes the header points it to (found by name in the index, not by position).
#[test]
fn every_tensor_of_a_large_header_is_dumped_with_its_own_bytes() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("many.safetensors");
    let ts = tensors(N);
    write(&p, &ts);
    let v = json_of(&["dump", "--tensor-hashes", s(&p)]);
    let m = v.as_object().unwrap();
    assert_eq!(m.len(), N);
    for (t, (name, d)) in ts.iter().zip(m) {
        assert_eq!(&t.name, name);
        let d = &d["__tensor__"];
        assert_eq!(d["dtype"], torch_name(t.dtype), "{name}");
        assert_eq!(d["shape"], json!(t.shape), "{name}");
        assert_eq!(d["sha256"], ckpt_torch::sha256_hex(&t.bytes), "{name}");
    }
    let v = json_of(&["inspect", "--format", "json", s(&p)]);
    let sd = &v[0]["state_dicts"][0];
    assert_eq!(sd["tensors"], N);
    let bytes: usize = ts.iter().map(|t| t.bytes.len()).sum();
    assert_eq!(sd["bytes"], bytes);
}

/// `convert` writes the tensors sorted by name with their bytes, under a header that is the
/// compact JSON of `{"__metadata__": {"format": "pt"}, name: {dtype, shape, data_offsets}}`
/// in that order, padded with spaces to 8 bytes.
#[test]
fn a_large_header_converts_to_the_same_tensors_and_header_text() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("many.safetensors");
    let ts = tensors(N);
    write(&p, &ts);
    let out = t.path().join("out");
    let (code, _, err) = run(&[
        "convert",
        s(&p),
        "--to",
        "safetensors",
        "--output-dir",
        s(&out),
    ]);
    assert_eq!(code, 0, "{err}");
    let file = std::fs::read(out.join("many").join("model.safetensors")).unwrap();
    let hlen = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&file[8..8 + hlen]).unwrap();
    let data = &file[8 + hlen..];

    let mut sorted = ts.clone();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut want = serde_json::Map::new();
    want.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut at = 0;
    for t in &sorted {
        let e = at + t.bytes.len();
        want.insert(
            t.name.clone(),
            json!({"dtype": t.dtype, "shape": t.shape, "data_offsets": [at, e]}),
        );
        assert_eq!(&data[at..e], &t.bytes[..], "{}", t.name);
        at = e;
    }
    assert_eq!(data.len(), at);
    let mut want = Value::Object(want).to_string();
    while !want.len().is_multiple_of(8) {
        want.push(' ');
    }
    assert!(
        header == want,
        "the header differs from the JSON it stands for"
    );
}

/// The architecture component is the sha256 of `name\tdtype\t[dims]\n` over the tensors
/// sorted by name; `diff` of two large files lists exactly the tensors added, removed,
/// reshaped and retyped.
#[test]
fn identity_and_diff_of_large_headers_read_every_tensor() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a.safetensors");
    let b = t.path().join("b.safetensors");
    let ta = tensors(N);
    write(&a, &ta);
    let mut tb = ta.clone();
    let removed = tb.remove(7).name;
    tb[100].shape = vec![3, 1];
    tb[100].bytes = vec![0; 3 * DTYPES.iter().find(|d| d.0 == tb[100].dtype).unwrap().2 as usize];
    let reshaped = tb[100].name.clone();
    tb[201].dtype = if tb[201].dtype == "U8" { "F32" } else { "U8" };
    tb[201].shape = vec![];
    tb[201].bytes = vec![1; if tb[201].dtype == "U8" { 1 } else { 4 }];
    tb.push(T {
        name: "zz.new".into(),
        dtype: "F32",
        shape: vec![1],
        bytes: vec![0; 4],
    });
    write(&b, &tb);

    let mut lines: Vec<String> = ta
        .iter()
        .map(|t| {
            let dims: Vec<String> = t.shape.iter().map(u64::to_string).collect();
            format!(
                "{}\t{}\t[{}]\n",
                t.name,
                torch_name(t.dtype),
                dims.join(",")
            )
        })
        .collect();
    let mut order: Vec<usize> = (0..ta.len()).collect();
    order.sort_by(|x, y| ta[*x].name.cmp(&ta[*y].name));
    lines = order.iter().map(|i| lines[*i].clone()).collect();
    let v = json_of(&["hash", "--format", "json", s(&a)]);
    assert_eq!(
        v["components"]["architecture"],
        ckpt_torch::sha256_hex(lines.concat().as_bytes())
    );
    assert_eq!(v["inputs"]["tensors"], N);

    let (code, out, err) = run(&["diff", "--format", "json", s(&a), s(&b)]);
    assert!(code <= 1, "{err}");
    let d: Value = serde_json::from_str(&out).unwrap();
    let arch = &d["diff"]["architecture"];
    let names = |k: &str| -> Vec<String> {
        arch[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[0].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names("removed"), vec![removed]);
    assert_eq!(names("added"), vec!["zz.new".to_owned()]);
    let mut changed = names("reshaped");
    changed.extend(names("retyped"));
    changed.sort();
    changed.dedup();
    let mut want = vec![reshaped, tb[201].name.clone()];
    want.sort();
    assert_eq!(changed, want);
    assert_eq!(names("retyped"), vec![tb[201].name.clone()]);
}

/// `inspect`'s state-dict summary of a large header (names, storage keys and group prefixes
/// are borrowed from the document, not copied: issue 10) gives what the rule says: totals by
/// dtype, groups by leading name components in order of first appearance (here thousands of
/// distinct top-level names), and the wrapper prefixes stripping removes, wherever they are.
#[test]
fn a_large_header_is_summarized_by_the_rule() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("many.safetensors");
    let mut ts = tensors(N);
    for (i, x) in ts.iter_mut().enumerate() {
        match i % 7 {
            3 => x.name = format!("module.{}", x.name),
            5 => x.name = format!("enc._orig_mod.{i}.w"),
            _ => {}
        }
    }
    write(&p, &ts);
    let v = json_of(&["inspect", "--format", "json", s(&p)]);
    let sd = &v[0]["state_dicts"][0];
    assert_eq!(sd["tensors"], N);
    assert_eq!(sd["wrapper_prefixes"], json!(["_orig_mod.", "module."]));
    assert_eq!(sd["shared"], json!([]));

    let numel = |t: &T| t.shape.iter().product::<u64>();
    let mut by_dtype: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for x in &ts {
        let e = by_dtype.entry(torch_name(x.dtype)).or_default();
        *e = (e.0 + 1, e.1 + numel(x), e.2 + x.bytes.len() as u64);
    }
    let want: Vec<Value> = by_dtype
        .iter()
        .map(|(d, (n, el, b))| json!({"dtype": d, "tensors": n, "elements": el, "bytes": b}))
        .collect();
    assert_eq!(sd["by_dtype"], json!(want));

    // The groups at level 1 (more than one group there): the first component, or the whole
    // name when it has no dot, of each name with its wrappers stripped.
    let mut groups: Vec<(String, u64, u64)> = Vec::new();
    let mut at: BTreeMap<String, usize> = BTreeMap::new();
    for x in &ts {
        let name = x.name.strip_prefix("module.").unwrap_or(&x.name);
        let name = name.replace("._orig_mod.", ".");
        let prefix = name.split('.').next().unwrap().to_owned();
        let i = *at.entry(prefix.clone()).or_insert(groups.len());
        if i == groups.len() {
            groups.push((prefix, 0, 0));
        }
        groups[i].1 += 1;
        groups[i].2 += numel(x);
    }
    let want: Vec<Value> = groups
        .iter()
        .map(|(p, n, el)| json!({"prefix": p, "tensors": n, "elements": el}))
        .collect();
    assert!(want.len() > 1000);
    assert_eq!(sd["groups"], json!(want));
}

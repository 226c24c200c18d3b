//! Python's `repr`/`str` for the values that become JSON object keys (`str(key)`) and for
//! floats (Python's shortest round-trip `repr`, which JSON output must match).

use crate::doc::{Doc, NodeId, View};
use std::cell::Cell;

/// `repr(float)` as Python prints it: shortest round-trip digits, exponent outside 1e-4..1e16.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let e = format!("{f:e}");
    let (mant, exp) = match e.split_once('e') {
        Some(x) => x,
        None => return e,
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if neg { "-" } else { "" };
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let point = (exp + 1) as usize;
            let (int, frac) = if digits.len() <= point {
                (
                    format!("{digits}{}", "0".repeat(point - digits.len())),
                    "0".to_string(),
                )
            } else {
                (digits[..point].to_string(), digits[point..].to_string())
            };
            format!("{sign}{int}.{frac}")
        } else {
            format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize))
        }
    } else {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits
        };
        let es = if exp < 0 { '-' } else { '+' };
        format!("{sign}{m}e{es}{:02}", exp.abs())
    }
}

/// Python `repr` of a string (single quotes unless the text has a single quote and no double).
pub fn str_repr(s: &str) -> String {
    let q = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

/// `str(value)` of a dict key, as the corpus mapping keys objects.
pub fn key_str(doc: &Doc, id: NodeId) -> String {
    key_str_in(doc, id, 0, &Cell::new(REPR_NODES))
}

fn key_str_in(doc: &Doc, id: NodeId, depth: u32, budget: &Cell<usize>) -> String {
    match doc.view(id) {
        View::Str(s) => s.to_owned(),
        _ => repr_in(doc, id, depth, budget),
    }
}

/// How many nodes one `repr` may visit. Depth alone does not bound the work: 64 items on each
/// of 6 levels is 64^6 visits, and a shared value is visited at every place it occurs.
const REPR_NODES: usize = 4096;

/// Python `repr` of a node, bounded in depth and in nodes visited so hostile keys (cycles
/// through objects' fields, wide shared structures) cannot blow up the stack or the time.
pub fn repr(doc: &Doc, id: NodeId, depth: u32) -> String {
    repr_in(doc, id, depth, &Cell::new(REPR_NODES))
}

fn repr_in(doc: &Doc, id: NodeId, depth: u32, budget: &Cell<usize>) -> String {
    if depth > 6 || budget.get() == 0 {
        return "...".into();
    }
    budget.set(budget.get() - 1);
    let repr = |doc: &Doc, id: NodeId, depth: u32| repr_in(doc, id, depth, budget);
    let seq = |items: &[NodeId], open: &str, close: &str, one_comma: bool| {
        let mut parts: Vec<String> = items
            .iter()
            .take(64)
            .map(|i| repr(doc, *i, depth + 1))
            .collect();
        if items.len() > 64 {
            parts.push("...".into());
        }
        let trail = if one_comma && items.len() == 1 {
            ","
        } else {
            ""
        };
        format!("{open}{}{trail}{close}", parts.join(", "))
    };
    match doc.view(id) {
        View::None => "None".into(),
        View::Bool(b) => if b { "True" } else { "False" }.into(),
        View::Int(i) => i.to_string(),
        View::BigInt(b) => b.to_string(),
        View::Float(f) => float_repr(f),
        View::Complex(r, i) => format!("({}+{}j)", float_repr(r), float_repr(i)),
        View::Str(s) => str_repr(s),
        View::Bytes(b) => {
            let mut s = String::from("b'");
            for x in b.iter().take(256) {
                match x {
                    b'\\' => s.push_str("\\\\"),
                    b'\'' => s.push_str("\\'"),
                    0x20..=0x7e => s.push(char::from(*x)),
                    b'\n' => s.push_str("\\n"),
                    b'\r' => s.push_str("\\r"),
                    b'\t' => s.push_str("\\t"),
                    _ => s.push_str(&format!("\\x{x:02x}")),
                }
            }
            s.push('\'');
            s
        }
        View::Tuple(items) => seq(items, "(", ")", true),
        View::List(items) => seq(items, "[", "]", false),
        View::Set(items) => {
            if items.is_empty() {
                "set()".into()
            } else {
                seq(items, "{", "}", false)
            }
        }
        View::Dict(items) => {
            let parts: Vec<String> = items
                .iter()
                .take(64)
                .map(|(k, v)| format!("{}: {}", repr(doc, *k, depth + 1), repr(doc, *v, depth + 1)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        View::Tensor(t) => format!("tensor(shape={:?}, dtype=torch.{})", t.shape, t.dtype),
        View::NdArray(a) => format!("array(shape={:?}, dtype={})", a.shape, a.dtype),
        View::Object(o) => {
            let short = o.class.rsplit('.').next().unwrap_or(&o.class);
            match o.state.map(|s| doc.view(s)) {
                Some(View::Dict(fields)) => {
                    let parts: Vec<String> = fields
                        .iter()
                        .take(32)
                        .map(|(k, v)| {
                            format!(
                                "{}={}",
                                key_str_in(doc, *k, depth + 1, budget),
                                repr(doc, *v, depth + 1)
                            )
                        })
                        .collect();
                    format!("{short}({})", parts.join(", "))
                }
                _ if !o.args.is_empty() => {
                    let parts: Vec<String> = o
                        .args
                        .iter()
                        .take(32)
                        .map(|a| repr(doc, *a, depth + 1))
                        .collect();
                    format!("{short}({})", parts.join(", "))
                }
                _ => format!("<{} object>", o.class),
            }
        }
        View::Class(c) => format!("<class '{c}'>"),
        View::Storage(s) => format!("<storage {}>", s.key),
        View::Opaque(what) => format!("<{what}>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_python() {
        for (f, s) in [
            (0.1, "0.1"),
            (1.0, "1.0"),
            (-2.5e-300, "-2.5e-300"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (0.7445182724252493, "0.7445182724252493"),
            (100.0, "100.0"),
            (1.5e300, "1.5e+300"),
            (f64::NAN, "nan"),
            (-0.0, "-0.0"),
        ] {
            assert_eq!(float_repr(f), s, "{f}");
        }
    }

    #[test]
    fn string_repr() {
        assert_eq!(str_repr("a"), "'a'");
        assert_eq!(str_repr("it's"), "\"it's\"");
        assert_eq!(str_repr("a\nb"), "'a\\nb'");
    }
}

//! What a TorchScript `__setstate__` does with its state, read from its printed source when all
//! it does is move values of the state into attributes.
//!
//! A class that defines `__getstate__`/`__setstate__` pickles whatever `__getstate__` returned
//! (a tuple, a dict, …) instead of its attribute dict, and `torch.jit.load` runs the compiled
//! `__setstate__` on it to set the attributes. ckpt never runs code. But the usual
//! `__setstate__` only unpacks: `self.weight = (state)[0]`, `w, inner, = state`,
//! `self.b = (inner)[1]`, `self.w = d["w"]`. Such a body is read as a plan (attribute →
//! where in the state its value is), which is then followed through the decoded pickle: a
//! lookup, never an evaluation. A body doing anything else (a call, a branch, an aliased
//! `self`) gives no plan, and the module's state stays "set by `__setstate__`", unknown.
//! An attribute computed from the state (`self.calls = torch.add((state)[1], 1)`) is kept
//! in the plan as computed: harmless unless it is a parameter, buffer or submodule.

use std::collections::HashMap;

/// Most body lines kept for one `__setstate__` (real ones have a handful); a longer body
/// gives no plan.
const MAX_BODY_LINES: usize = 512;

/// One step into the state: a tuple/list index or a dict key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Step {
    /// `(x)[i]`; negative counts from the end, as Python does.
    Index(i64),
    /// `x["key"]`.
    Key(String),
}

/// One `self.NAME = …` of a `__setstate__`, in order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Assign {
    pub attr: String,
    /// Where in the state the value is (empty: the state itself); `None` when the value is
    /// computed (a call, an operator), so not known without running code.
    pub from: Option<Vec<Step>>,
}

/// Collects the source of a `def __setstate__(` (signature and body) as the parser meets
/// its lines.
#[derive(Debug, Default)]
pub(super) struct Collector {
    /// Indentation of the `def` line.
    def_indent: usize,
    signature: String,
    signature_done: bool,
    body: Vec<String>,
    overflow: bool,
}

impl Collector {
    pub(super) fn new(def_line: &str) -> Collector {
        let mut c = Collector {
            def_indent: indent(def_line),
            ..Collector::default()
        };
        c.feed_signature(def_line);
        c
    }

    /// Take `line`; `false` when it is not part of the method (it ends it, and is the
    /// caller's to read).
    pub(super) fn line(&mut self, line: &str) -> bool {
        if !self.signature_done {
            self.feed_signature(line);
            return true;
        }
        if line.trim().is_empty() {
            return true;
        }
        if indent(line) <= self.def_indent {
            return false;
        }
        if self.body.len() >= MAX_BODY_LINES {
            self.overflow = true;
        } else {
            self.body.push(line.to_owned());
        }
        true
    }

    fn feed_signature(&mut self, line: &str) {
        self.signature.push_str(line.trim());
        self.signature.push(' ');
        let depth = self.signature.chars().fold(0i64, |d, c| match c {
            '(' | '[' => d + 1,
            ')' | ']' => d - 1,
            _ => d,
        });
        if depth <= 0 && line.trim_end().ends_with(':') {
            self.signature_done = true;
        }
    }

    /// The plan of the method, or `None` when it does more than unpack its state.
    pub(super) fn finish(self) -> Option<Vec<Assign>> {
        if self.overflow || !self.signature_done {
            return None;
        }
        let param = state_param(&self.signature)?;
        plan(&param, &self.body)
    }
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// The name of the second parameter (after `self`) of `def __setstate__(self: T, state: U)`.
fn state_param(signature: &str) -> Option<String> {
    let open = signature.find('(')?;
    let mut depth = 0i64;
    let mut params = Vec::new();
    let mut start = open + 1;
    for (i, c) in signature.char_indices().skip_while(|(i, _)| *i <= open) {
        match c {
            '(' | '[' => depth += 1,
            ']' => depth -= 1,
            ')' if depth == 0 => {
                params.push(&signature[start..i]);
                break;
            }
            ')' => depth -= 1,
            ',' if depth == 0 => {
                params.push(&signature[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    let p = params.get(1)?;
    let name = p.split(':').next()?.trim();
    is_ident(name).then(|| name.to_owned())
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Read the body's statements (one per line, all at one indentation) as a plan.
fn plan(param: &str, body: &[String]) -> Option<Vec<Assign>> {
    let first_indent = indent(body.first()?);
    // Local name → where in the state its value is (None: computed).
    let mut locals: HashMap<String, Option<Vec<Step>>> = HashMap::new();
    let mut out = Vec::new();
    for line in body {
        if indent(line) != first_indent {
            // A nested block: a branch or a loop.
            return None;
        }
        let stmt = line.trim();
        if stmt == "return None" || stmt == "return" {
            break;
        }
        if stmt == "pass" {
            continue;
        }
        let (lhs, rhs) = split_assignment(stmt)?;
        let value = path_of(rhs, param, &locals);
        let targets: Vec<&str> = lhs
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        let unpack = lhs.contains(',');
        for (i, target) in targets.iter().enumerate() {
            let from = if unpack {
                let i = i64::try_from(i).ok()?;
                value.clone().map(|mut p| {
                    p.push(Step::Index(i));
                    p
                })
            } else {
                value.clone()
            };
            if let Some(attr) = target.strip_prefix("self.") {
                if !is_ident(attr) {
                    return None;
                }
                out.push(Assign {
                    attr: attr.to_owned(),
                    from,
                });
            } else if is_ident(target) && *target != "self" && *target != param {
                if rhs.trim() == "self" {
                    // An alias of self: later writes through it are not followed.
                    return None;
                }
                locals.insert((*target).to_owned(), from);
            } else {
                return None;
            }
        }
    }
    Some(out)
}

/// `a = b` (not `==`, `<=`, …): the two sides.
fn split_assignment(stmt: &str) -> Option<(&str, &str)> {
    let bytes = stmt.as_bytes();
    let mut depth = 0i64;
    let mut in_str = false;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => in_str = !in_str,
            b'(' | b'[' | b'{' if !in_str => depth += 1,
            b')' | b']' | b'}' if !in_str => depth -= 1,
            b'=' if !in_str && depth == 0 => {
                let prev = i.checked_sub(1).and_then(|j| bytes.get(j)).copied();
                let next = bytes.get(i + 1).copied();
                if next == Some(b'=') || matches!(prev, Some(b'=' | b'!' | b'<' | b'>')) {
                    return None;
                }
                return Some((stmt[..i].trim(), stmt[i + 1..].trim()));
            }
            _ => {}
        }
    }
    None
}

/// Where `expr` is in the state: `state`, a local bound to a place, `(x)[i]`, `x["k"]`.
fn path_of(
    expr: &str,
    param: &str,
    locals: &HashMap<String, Option<Vec<Step>>>,
) -> Option<Vec<Step>> {
    let e = strip_parens(expr.trim());
    if e == param {
        return Some(Vec::new());
    }
    if is_ident(e) {
        return locals.get(e).cloned().flatten();
    }
    let inner = e.strip_suffix(']')?;
    let open = matching_open(inner)?;
    let base = &inner[..open];
    let index = inner[open + 1..].trim();
    let step = if let Some(key) = index.strip_prefix('"').and_then(|k| k.strip_suffix('"')) {
        if key.contains(['"', '\\']) {
            return None;
        }
        Step::Key(key.to_owned())
    } else {
        Step::Index(index.parse().ok()?)
    };
    let mut p = path_of(base, param, locals)?;
    p.push(step);
    Some(p)
}

/// `(x)` → `x` when the parentheses wrap the whole expression (not `(a)(b)` or a tuple).
fn strip_parens(mut e: &str) -> &str {
    while let Some(inner) = e.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
        let mut depth = 0i64;
        let wraps = inner.chars().all(|c| {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            depth >= 0
        });
        if !wraps || depth != 0 || inner.contains(',') {
            break;
        }
        e = inner.trim();
    }
    e
}

/// The index of the `[` that opens the last bracket of `s` (whose `]` was stripped).
fn matching_open(s: &str) -> Option<usize> {
    let mut depth = 0i64;
    for (i, c) in s.char_indices().rev() {
        match c {
            ']' => depth += 1,
            '[' if depth == 0 => return Some(i),
            '[' => depth -= 1,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(src: &str) -> Option<Vec<Assign>> {
        let mut lines = src.lines();
        let mut c = Collector::new(lines.next().unwrap());
        for l in lines {
            assert!(c.line(l), "{l}");
        }
        c.finish()
    }

    fn a(attr: &str, from: Option<Vec<Step>>) -> Assign {
        Assign {
            attr: attr.to_owned(),
            from,
        }
    }

    #[test]
    fn indexing_unpacking_and_keys_are_read_as_places() {
        let p = read(
            "  def __setstate__(self: __torch__.A,\n    st: Tuple[Tensor, Tuple[Tensor, int], bool]) -> NoneType:\n    w, inner, tr, = st\n    self.w = w\n    self.b = (inner)[0]\n    self.n = (inner)[1]\n    self.training = tr\n    return None",
        )
        .unwrap();
        use Step::Index as I;
        assert_eq!(
            p,
            [
                a("w", Some(vec![I(0)])),
                a("b", Some(vec![I(1), I(0)])),
                a("n", Some(vec![I(1), I(1)])),
                a("training", Some(vec![I(2)])),
            ]
        );
        let p = read(
            "  def __setstate__(self: __torch__.B,\n    d: Dict[str, Tensor]) -> NoneType:\n    self.w = d[\"w\"]\n    return None",
        )
        .unwrap();
        assert_eq!(p, [a("w", Some(vec![Step::Key("w".into())]))]);
    }

    #[test]
    fn computed_values_are_marked_and_other_statements_give_no_plan() {
        let p = read(
            "  def __setstate__(self: __torch__.W,\n    state: Tuple[Tensor, int, bool]) -> NoneType:\n    self.weight = (state)[0]\n    self.calls = torch.add((state)[1], 1)\n    self.training = (state)[2]\n    return None",
        )
        .unwrap();
        assert_eq!(p[0], a("weight", Some(vec![Step::Index(0)])));
        assert_eq!(p[1], a("calls", None));
        for body in [
            // a call that may set anything
            "    (self).set_weight_bias((state)[0], (state)[1])",
            // a branch
            "    if (state)[2]:\n      self.weight = (state)[0]\n    else:\n      pass",
            // an alias of self
            "    _0 = self\n    _0.weight = (state)[0]",
            // a comparison is not an assignment
            "    torch.eq(state, 1)",
        ] {
            let src = format!(
                "  def __setstate__(self: __torch__.W, state: Tensor) -> NoneType:\n{body}\n    return None"
            );
            assert_eq!(read(&src), None, "{body}");
        }
    }

    #[test]
    fn the_method_ends_at_the_next_member() {
        let mut c = Collector::new("  def __setstate__(self: X, state: Tensor) -> NoneType:");
        assert!(c.line("    self.w = state"));
        assert!(!c.line("  def forward(self: X) -> Tensor:"));
        assert_eq!(c.finish().unwrap(), [a("w", Some(vec![]))]);
    }
}

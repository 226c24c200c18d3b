//! Sorting, filtering, best-per-experiment and latest-per-experiment over catalog entries.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::entry::CatalogEntry;
use crate::resolve::metric_value;

/// A field of an entry by name: an exact dotted path (`metrics.val_f1`, `model.architecture`,
/// `epoch`), else the name under `model.` or `metrics.` (`architecture`, `hmean`).
pub fn field(entry: &CatalogEntry, name: &str) -> Option<Value> {
    entry
        .get(name)
        .or_else(|| entry.model.get(name).filter(|v| !v.is_null()).cloned())
        .or_else(|| entry.metrics.get(name).map(|x| Value::from(*x)))
}

/// Add to `into` every name [`field`] (or a monitor lookup) answers for `entry`: fields with a
/// value, and each key of `model` and `metrics` both dotted (`metrics.hmean`) and bare
/// (`hmean`). Collected over a whole catalog, it is what a query can name.
pub fn field_names(entry: &CatalogEntry, into: &mut BTreeSet<String>) {
    let mut all = BTreeSet::new();
    entry.field_names(&mut all);
    for k in all {
        if k == "sources" || k == "conflicts" {
            continue;
        }
        if field(entry, &k).is_none() {
            continue;
        }
        if let Some(bare) = k
            .strip_prefix("model.")
            .or_else(|| k.strip_prefix("metrics."))
            .filter(|b| !b.contains('.'))
        {
            into.insert(bare.to_owned());
        }
        into.insert(k);
    }
}

/// Does `entry` answer for `name`, as a field or as a monitored metric (`val/hmean` is found
/// as `hmean` too)?
pub fn has_field(entry: &CatalogEntry, name: &str) -> bool {
    field(entry, name).is_some() || metric_value(entry, name).is_some()
}

/// The error for a query naming a field no entry has: the nearest known name when one is close
/// ("did you mean hmean?") and the known names. `None` when some entry has it, or when there
/// are no entries at all (nothing to be wrong about). `option` is the flag, for the message.
pub fn unknown_field(
    option: &str,
    name: &str,
    entries_seen: usize,
    known: &BTreeSet<String>,
    any_has: bool,
) -> Option<String> {
    if any_has || entries_seen == 0 {
        return None;
    }
    let nearest = known
        .iter()
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, k)| *d <= (name.len().max(k.len()) / 3).max(2))
        .min();
    let mut msg = format!("{option} {name:?}: no checkpoint has that field");
    if let Some((_, k)) = nearest {
        msg.push_str(&format!(" (did you mean {k:?}?)"));
    }
    // Bare names only: `hmean` stands for `metrics.hmean` too.
    const SHOWN: usize = 40;
    let bare: Vec<&str> = known
        .iter()
        .filter(|k| !k.starts_with("model.") && !k.starts_with("metrics."))
        .map(String::as_str)
        .collect();
    msg.push_str(&format!(
        "; known fields: {}",
        bare.iter()
            .take(SHOWN)
            .copied()
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if bare.len() > SHOWN {
        msg.push_str(&format!(", … ({} in all)", bare.len()));
    }
    Some(msg)
}

/// Levenshtein distance over chars (names are short; two rows of the table).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    /// `~`: substring.
    Contains,
}

/// One `--filter` condition: `architecture=dbnet`, `hmean>0.75`, `path~flares`.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub field: String,
    pub op: Op,
    pub value: String,
}

/// Parse `FIELD OP VALUE` (ops: `= == != > >= < <= ~`).
pub fn parse_filter(s: &str) -> Result<Filter, String> {
    const OPS: &[(&str, Op)] = &[
        (">=", Op::Ge),
        ("<=", Op::Le),
        ("!=", Op::Ne),
        ("==", Op::Eq),
        ("=", Op::Eq),
        (">", Op::Gt),
        ("<", Op::Lt),
        ("~", Op::Contains),
    ];
    let mut best: Option<(usize, &str, Op)> = None;
    for (tok, op) in OPS {
        if let Some(i) = s.find(tok)
            && best.is_none_or(|(bi, bt, _)| i < bi || (i == bi && tok.len() > bt.len()))
        {
            best = Some((i, tok, *op));
        }
    }
    let Some((i, tok, op)) = best else {
        return Err(format!(
            "filter {s:?} has no operator (use = != > >= < <= ~)"
        ));
    };
    let field = s[..i].trim();
    let value = s[i + tok.len()..].trim();
    if field.is_empty() {
        return Err(format!("filter {s:?} has no field name"));
    }
    Ok(Filter {
        field: field.to_owned(),
        op,
        value: value.to_owned(),
    })
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => m
            .get("name")
            .or_else(|| m.get("model_name"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string()),
        other => other.to_string(),
    }
}

impl Filter {
    pub fn matches(&self, entry: &CatalogEntry) -> bool {
        let Some(v) = field(entry, &self.field) else {
            return self.op == Op::Ne;
        };
        let v = &v;
        let num = v.as_f64();
        let want = self.value.parse::<f64>().ok();
        match (self.op, num, want) {
            (Op::Gt, Some(a), Some(b)) => a > b,
            (Op::Ge, Some(a), Some(b)) => a >= b,
            (Op::Lt, Some(a), Some(b)) => a < b,
            (Op::Le, Some(a), Some(b)) => a <= b,
            (Op::Eq, Some(a), Some(b)) => a == b,
            (Op::Ne, Some(a), Some(b)) => a != b,
            (Op::Eq, _, _) => as_text(v) == self.value,
            (Op::Ne, _, _) => as_text(v) != self.value,
            (Op::Contains, _, _) => as_text(v).contains(&self.value),
            // Ordering on text.
            (Op::Gt, _, _) => as_text(v) > self.value,
            (Op::Ge, _, _) => as_text(v) >= self.value,
            (Op::Lt, _, _) => as_text(v) < self.value,
            (Op::Le, _, _) => as_text(v) <= self.value,
        }
    }
}

/// Compare two values for sorting: numbers numerically, text lexically, missing last.
fn cmp_values(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        // Numbers before everything else, each kind in its own order: comparing a number
        // with text as text made the order non-transitive (2 < 10 < "1x" < 2), which a sort
        // may answer with a panic.
        (Some(x), Some(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(p), Some(q)) => p.total_cmp(&q),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => as_text(x).cmp(&as_text(y)),
        },
    }
}

/// Stable sort by a field (missing values last in both directions).
pub fn sort(entries: &mut [CatalogEntry], by: &str, desc: bool) {
    let mut keyed: Vec<(Option<Value>, CatalogEntry)> = entries
        .iter()
        .cloned()
        .map(|e| (field(&e, by), e))
        .collect();
    keyed.sort_by(|(fa, _), (fb, _)| {
        let (fa, fb) = (fa.as_ref(), fb.as_ref());
        match (fa, fb) {
            (Some(_), Some(_)) => {
                let o = cmp_values(fa, fb);
                if desc { o.reverse() } else { o }
            }
            _ => cmp_values(fa, fb),
        }
    });
    for (slot, (_, e)) in entries.iter_mut().zip(keyed) {
        *slot = e;
    }
}

/// How wide `--best`, `latest`, `prune` and `experiments` group checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupBy {
    /// Each run on its own (a Hydra job, a Lightning version …): the default.
    #[default]
    Run,
    /// Every run of an experiment together.
    Experiment,
}

/// The group an entry belongs to.
pub fn group_of(e: &CatalogEntry, by: GroupBy) -> String {
    let exp = e.experiment.clone().unwrap_or_default();
    match (by, &e.run) {
        (GroupBy::Run, Some(r)) => format!("{exp}\u{1f}{r}"),
        _ => exp,
    }
}

pub fn best(
    entries: Vec<CatalogEntry>,
    by: Option<&str>,
    mode: Option<&str>,
    group: GroupBy,
) -> Vec<CatalogEntry> {
    let mut groups: BTreeMap<String, Vec<CatalogEntry>> = BTreeMap::new();
    let mut order = Vec::new();
    for e in entries {
        let k = group_of(&e, group);
        if !groups.contains_key(&k) {
            order.push(k.clone());
        }
        groups.entry(k).or_default().push(e);
    }
    let mut out = Vec::new();
    for k in order {
        let Some(g) = groups.remove(&k) else { continue };
        let monitor = by
            .map(str::to_owned)
            .or_else(|| g.iter().find_map(|e| e.monitor.clone()));
        let m = mode
            .map(str::to_owned)
            .or_else(|| g.iter().find_map(|e| e.mode.clone()));
        let maximize = m.as_deref() != Some("min");
        let pick = monitor.as_deref().and_then(|name| {
            g.iter()
                .enumerate()
                .filter_map(|(i, e)| {
                    metric_value(e, name)
                        .or_else(|| field(e, name).and_then(|v| v.as_f64()))
                        .map(|v| (i, v))
                })
                .fold(None::<(usize, f64)>, |acc, (i, v)| match acc {
                    None => Some((i, v)),
                    Some((_, bv)) if (maximize && v > bv) || (!maximize && v < bv) => Some((i, v)),
                    keep => keep,
                })
                .map(|(i, _)| i)
        });
        let pick = pick.or_else(|| g.iter().position(|e| e.is_best));
        if let Some(i) = pick
            && let Some(e) = g.into_iter().nth(i)
        {
            out.push(e);
        }
    }
    out
}

/// One entry per experiment: the newest by global step, then epoch, then modification time.
pub fn latest(entries: Vec<CatalogEntry>, group: GroupBy) -> Vec<CatalogEntry> {
    let mut groups: BTreeMap<String, CatalogEntry> = BTreeMap::new();
    let mut order = Vec::new();
    let key = |e: &CatalogEntry| {
        (
            e.global_step.unwrap_or(-1),
            e.epoch.unwrap_or(-1),
            e.modified.clone(),
        )
    };
    for e in entries {
        let k = group_of(&e, group);
        match groups.get(&k) {
            None => {
                order.push(k.clone());
                groups.insert(k, e);
            }
            Some(cur) if key(&e) > key(cur) => {
                groups.insert(k, e);
            }
            _ => {}
        }
    }
    order
        .into_iter()
        .filter_map(|k| groups.remove(&k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entries() -> Vec<CatalogEntry> {
        let v: Vec<Value> = vec![
            json!({"path": "a/1", "experiment": "a", "epoch": 1, "global_step": 10, "monitor": "val/hmean", "mode": "max",
                   "metrics": {"hmean": 0.7}, "model": {"architecture": "dbnet"}, "modified": "1", "is_best": false}),
            json!({"path": "a/2", "experiment": "a", "epoch": 2, "global_step": 20, "monitor": "val/hmean", "mode": "max",
                   "metrics": {"hmean": 0.8}, "model": {"architecture": "dbnet"}, "modified": "2", "is_best": false}),
            json!({"path": "b/1", "experiment": "b", "epoch": 5, "global_step": 50, "monitor": "val/loss", "mode": "min",
                   "metrics": {"val/loss": 0.3}, "model": {"architecture": "craft"}, "modified": "3", "is_best": false}),
            json!({"path": "b/2", "experiment": "b", "epoch": 6, "global_step": 60, "monitor": "val/loss", "mode": "min",
                   "metrics": {"val/loss": 0.4}, "model": {"architecture": "craft"}, "modified": "4", "is_best": false}),
        ];
        v.into_iter()
            .map(|x| serde_json::from_value(x).unwrap())
            .collect()
    }

    #[test]
    fn a_field_mixing_numbers_and_text_sorts_in_one_total_order() {
        let values = [
            json!(2),
            json!("1x"),
            json!(10),
            json!("a"),
            json!(3.5),
            json!(true),
        ];
        let mut orders = Vec::new();
        // Every rotation of the input sorts to the same order: numbers by value, then text.
        for shift in 0..values.len() {
            let mut es: Vec<CatalogEntry> = (0..values.len())
                .map(|i| {
                    let v = &values[(i + shift) % values.len()];
                    serde_json::from_value(json!({"path": format!("p{v}"), "hparams": {"x": v},
                        "modified": "1", "is_best": false}))
                    .unwrap()
                })
                .collect();
            sort(&mut es, "hparams.x", false);
            orders.push(es.iter().map(|e| e.path.clone()).collect::<Vec<_>>());
        }
        assert!(orders.iter().all(|o| *o == orders[0]));
        assert_eq!(
            orders[0],
            ["p2", "p3.5", "p10", "p\"1x\"", "p\"a\"", "ptrue"]
        );
    }

    #[test]
    fn filters() {
        let f = parse_filter("architecture=dbnet").unwrap();
        assert_eq!(entries().iter().filter(|e| f.matches(e)).count(), 2);
        let f = parse_filter("hmean>0.75").unwrap();
        assert_eq!(entries().iter().filter(|e| f.matches(e)).count(), 1);
        let f = parse_filter("epoch>=5").unwrap();
        assert_eq!(f.op, Op::Ge);
        assert_eq!(entries().iter().filter(|e| f.matches(e)).count(), 2);
        let f = parse_filter("path~b/").unwrap();
        assert_eq!(entries().iter().filter(|e| f.matches(e)).count(), 2);
        assert!(parse_filter("nothing").is_err());
        assert!(parse_filter("=x").is_err());
    }

    #[test]
    fn best_uses_each_monitor_and_mode() {
        let b = best(entries(), None, None, GroupBy::Experiment);
        let paths: Vec<&str> = b.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["a/2", "b/1"]);
        let b = best(entries(), Some("epoch"), Some("min"), GroupBy::Experiment);
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn latest_and_sort() {
        let l = latest(entries(), GroupBy::Experiment);
        let paths: Vec<&str> = l.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["a/2", "b/2"]);
        let mut e = entries();
        sort(&mut e, "hmean", true);
        assert_eq!(e[0].path, "a/2");
        assert_eq!(e[3].path, "b/2"); // missing values last
    }
}

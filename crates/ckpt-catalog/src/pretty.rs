//! Entries written as serde_json's pretty printer writes them, one at a time, and the parts
//! the checkpoints of a run share written once per run.
//!
//! `ckpt catalog --format json` streams its entries: each is written as it is resolved, at the
//! depth it has in the whole document ([`Nested`]). An entry's model, hyperparameters, data
//! and sources are usually the same `Arc` for every checkpoint of a run (see
//! [`crate::entry::Shared`]); with [`with_shared_parts_memoized`] each is rendered to text
//! once and that text is written for every entry that carries it — the same bytes, without
//! serializing the same maps ten thousand times (they were more than half of the output).

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

/// serde_json's pretty printer (two spaces a level) for a value that starts `base` levels
/// deep: the bytes are exactly those of the whole document pretty-printed at once.
pub struct Nested {
    level: usize,
    has_value: bool,
}

impl Nested {
    pub fn at(base: usize) -> Nested {
        Nested {
            level: base,
            has_value: false,
        }
    }

    fn newline<W: ?Sized + std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        const SPACES: &[u8; 64] = &[b' '; 64];
        w.write_all(b"\n")?;
        let mut n = self.level * 2;
        while n > 0 {
            let k = n.min(SPACES.len());
            w.write_all(&SPACES[..k])?;
            n -= k;
        }
        Ok(())
    }
}

impl serde_json::ser::Formatter for Nested {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.level += 1;
        self.has_value = false;
        w.write_all(b"[")
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.level -= 1;
        if self.has_value {
            self.newline(w)?;
        }
        w.write_all(b"]")
    }

    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if !first {
            w.write_all(b",")?;
        }
        self.newline(w)
    }

    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.level += 1;
        self.has_value = false;
        w.write_all(b"{")
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.level -= 1;
        if self.has_value {
            self.newline(w)?;
        }
        w.write_all(b"}")
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if !first {
            w.write_all(b",")?;
        }
        self.newline(w)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// How the memoized parts are rendered: as the field values of an entry written by
/// [`Nested`] at `entry_level` (pretty), or compact (`jsonl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Pretty { entry_level: usize },
    Compact,
}

/// Parts rendered so far: the `Arc` kept (so its address cannot be reused by another part
/// while the text is kept) and its text.
struct Memo {
    style: Style,
    texts: HashMap<usize, (Arc<dyn Any + Send + Sync>, Box<RawValue>)>,
}

/// At most this many parts' texts are kept (then all are dropped and rendering starts
/// again): memory stays flat however many runs a tree holds.
const MAX_PARTS: usize = 512;

thread_local! {
    static MEMO: RefCell<Option<Memo>> = const { RefCell::new(None) };
}

/// Run `f` with shared parts memoized on this thread: entries serialized in `f` (on this
/// thread, in `style`) write each part's text from the memo. Anything else serialized in `f`
/// with another formatter would get texts of the wrong shape: call it only around a writer
/// that serializes entries in `style` alone.
pub fn with_shared_parts_memoized<R>(style: Style, f: impl FnOnce() -> R) -> R {
    struct Reset(Option<Memo>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let previous = self.0.take();
            MEMO.with(|m| *m.borrow_mut() = previous);
        }
    }
    let previous = MEMO.with(|m| {
        m.borrow_mut().replace(Memo {
            style,
            texts: HashMap::new(),
        })
    });
    let _reset = Reset(previous);
    f()
}

fn render<T: Serialize>(v: &T, style: Style) -> Result<Box<RawValue>, serde_json::Error> {
    let mut buf = Vec::new();
    match style {
        // The fields' values of an entry at `entry_level` start one level deeper.
        Style::Pretty { entry_level } => {
            let mut ser =
                serde_json::Serializer::with_formatter(&mut buf, Nested::at(entry_level + 1));
            v.serialize(&mut ser)?;
        }
        Style::Compact => serde_json::to_writer(&mut buf, v)?,
    }
    let text = String::from_utf8(buf).map_err(serde::ser::Error::custom)?;
    RawValue::from_string(text)
}

/// `serialize_with` of an entry's shared parts: the memoized text when a memo is active on
/// this thread, else the value itself.
pub(crate) fn shared<S, T>(v: &Arc<T>, s: S) -> Result<S::Ok, S::Error>
where
    S: serde::Serializer,
    T: Serialize + Send + Sync + 'static,
{
    // A part only this entry holds (a checkpoint just read, not from the cache) is written
    // as it is: rendering it for a memo would cost more than it could save.
    let active = Arc::strong_count(v) > 1 && MEMO.with(|m| m.borrow().is_some());
    if !active {
        return (**v).serialize(s);
    }
    MEMO.with(|m| {
        let mut m = m.borrow_mut();
        let Some(memo) = m.as_mut() else {
            return (**v).serialize(s);
        };
        let key = Arc::as_ptr(v) as *const () as usize;
        if !memo.texts.contains_key(&key) {
            if memo.texts.len() >= MAX_PARTS {
                memo.texts.clear();
            }
            let text = render(&**v, memo.style).map_err(serde::ser::Error::custom)?;
            let keep: Arc<dyn Any + Send + Sync> = v.clone();
            memo.texts.insert(key, (keep, text));
        }
        match memo.texts.get(&key) {
            Some((_, text)) => text.serialize(s),
            None => (**v).serialize(s),
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::entry::{CatalogEntry, Shared};
    use serde_json::json;

    fn entry(
        path: &str,
        hparams: &Shared<std::collections::BTreeMap<String, serde_json::Value>>,
    ) -> CatalogEntry {
        let mut e = CatalogEntry {
            path: path.to_owned(),
            hparams: hparams.clone(),
            ..CatalogEntry::default()
        };
        e.metrics.insert("val_loss".into(), 0.25);
        e
    }

    fn written(entries: &[CatalogEntry], style: Style) -> String {
        let mut out = Vec::new();
        for e in entries {
            match style {
                Style::Pretty { entry_level } => {
                    let mut ser =
                        serde_json::Serializer::with_formatter(&mut out, Nested::at(entry_level));
                    e.serialize(&mut ser).unwrap();
                }
                Style::Compact => serde_json::to_writer(&mut out, e).unwrap(),
            }
            out.push(b'\n');
        }
        String::from_utf8(out).unwrap()
    }

    /// Memoized or not, the bytes are the same, in both styles, for entries sharing a part,
    /// entries with parts of their own, and more distinct parts than the memo keeps.
    #[test]
    fn memoized_parts_write_the_same_bytes() {
        let shared = Shared::new(
            [
                ("lr".to_owned(), json!(0.001)),
                (
                    "encoder".to_owned(),
                    json!({"name": "resnet", "layers": [1, 2]}),
                ),
            ]
            .into_iter()
            .collect(),
        );
        let mut entries: Vec<CatalogEntry> = (0..3)
            .map(|i| entry(&format!("a/{i}.ckpt"), &shared))
            .collect();
        for i in 0..(MAX_PARTS + 10) {
            let own = Shared::new([("seed".to_owned(), json!(i))].into_iter().collect());
            entries.push(entry(&format!("b/{i}.ckpt"), &own));
        }
        entries.push(entry("a/last.ckpt", &shared));
        for style in [Style::Pretty { entry_level: 2 }, Style::Compact] {
            let plain = written(&entries, style);
            let memoized = with_shared_parts_memoized(style, || written(&entries, style));
            assert_eq!(plain, memoized, "{style:?}");
            assert!(plain.contains("resnet"));
        }
        // The memo is gone after the call.
        assert!(MEMO.with(|m| m.borrow().is_none()));
    }
}

//! The safetensors header, parsed into typed records within limits the file itself sets.
//!
//! A header may be up to 100 MiB of JSON; parsed into a generic `serde_json::Value` (and
//! then per-tensor vectors) a crafted one drives gigabytes of allocation. Here the header is
//! deserialized straight into [`TensorEntry`] records (names borrowed from the header bytes
//! where they need no unescaping), with every claimed size checked as it is read:
//!
//! - the header length against the bytes in the file (by the caller, before reading it);
//! - the number of tensors against what the header can hold (each record takes at least
//!   [`MIN_RECORD_BYTES`] of JSON), so no vector is sized by a claim;
//! - a shape's rank against [`MAX_RANK`] while its list is read;
//! - `__metadata__` must be a flat map of strings, as the format says (deep nesting is a type
//!   error at the first inner `{`, not a recursion);
//! - `data_offsets` against the dtype and shape and the data section; overlapping ranges,
//!   ranges past the end and bytes no tensor covers are refused, naming the tensor, as the
//!   reference implementation's `Metadata::validate` does.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::dtype::DType;

/// Largest header we read (the reference implementation's limit).
pub const MAX_HEADER_BYTES: u64 = 100 << 20;
/// Most dimensions of one tensor (torch itself caps tensors at 64 dimensions).
pub const MAX_RANK: usize = 64;
/// The shortest JSON a tensor record can take: `"":{"dtype":"U8","shape":[],"data_offsets":[0,0]},`.
pub const MIN_RECORD_BYTES: usize = 48;

/// What is wrong with a header (the caller adds the file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("header length {len} is invalid for a {file_len}-byte file")]
    Length { len: u64, file_len: u64 },
    #[error("header is not valid JSON of the safetensors layout: {0}")]
    Json(String),
    #[error("header lists more tensors than its {header_len} bytes can hold")]
    TooManyTensors { header_len: usize },
    #[error("tensor {name}: shape has more than {MAX_RANK} dimensions")]
    Rank { name: String },
    #[error("tensor {name}: unknown dtype {dtype}")]
    Dtype { name: String, dtype: String },
    #[error("tensor {name} is listed twice")]
    Duplicate { name: String },
    #[error(
        "tensor {name}: data_offsets [{begin}, {end}] do not match its shape and dtype ({expected} bytes)"
    )]
    Size {
        name: String,
        begin: u64,
        end: u64,
        expected: String,
    },
    #[error(
        "tensor {name}: data_offsets [{begin}, {end}] run past the {data_len}-byte data section"
    )]
    OutOfRange {
        name: String,
        begin: u64,
        end: u64,
        data_len: u64,
    },
    #[error("tensors {first} and {second} overlap in the data section")]
    Overlap { first: String, second: String },
    #[error("bytes {begin}..{end} of the data section belong to no tensor")]
    Hole { begin: u64, end: u64 },
}

/// One tensor of the header, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<u64>,
    /// Offsets into the data section (after the header).
    pub begin: u64,
    pub end: u64,
}

impl TensorEntry {
    pub fn numel(&self) -> u64 {
        // Checked in `parse_header`: the product fits (it matched end - begin).
        self.shape
            .iter()
            .try_fold(1u64, |a, d| a.checked_mul(*d))
            .unwrap_or(0)
    }
}

/// A parsed, validated header: tensors in the order the header lists them, and the
/// `__metadata__` strings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Header {
    pub tensors: Vec<TensorEntry>,
    pub metadata: Vec<(String, String)>,
}

/// Check the 8-byte header length against the file before anything is read or allocated.
pub fn check_header_len(len: u64, file_len: u64) -> Result<(), HeaderError> {
    if !(2..=MAX_HEADER_BYTES).contains(&len) || len.saturating_add(8) > file_len {
        return Err(HeaderError::Length { len, file_len });
    }
    Ok(())
}

/// Parse and validate a header whose data section holds `data_len` bytes. Each record is
/// checked and turned into its [`TensorEntry`] as it is read: there is never a second,
/// unchecked copy of the tensor list.
pub fn parse_header(header: &[u8], data_len: u64) -> Result<Header, HeaderError> {
    let mut failed: Option<HeaderError> = None;
    let mut de = serde_json::Deserializer::from_slice(header);
    let parsed = de
        .deserialize_map(HeaderVisitor {
            max_tensors: header.len() / MIN_RECORD_BYTES + 1,
            header_len: header.len(),
            data_len,
            failed: &mut failed,
        })
        .and_then(|h| de.end().map(|()| h));
    let (mut tensors, metadata) = match (parsed, failed) {
        (_, Some(e)) => return Err(e),
        (Err(e), None) => return Err(HeaderError::Json(e.to_string())),
        (Ok(h), None) => h,
    };
    tensors.shrink_to_fit();
    // Names are unique and ranges tile the data section exactly.
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_unstable_by(|a, b| tensors[*a].name.cmp(&tensors[*b].name));
    for w in order.windows(2) {
        if tensors[w[0]].name == tensors[w[1]].name {
            return Err(HeaderError::Duplicate {
                name: tensors[w[0]].name.clone(),
            });
        }
    }
    order.sort_unstable_by_key(|i| (tensors[*i].begin, tensors[*i].end));
    let mut covered = 0u64;
    let mut last: Option<usize> = None;
    for &i in &order {
        let t = &tensors[i];
        if t.begin < covered {
            return Err(HeaderError::Overlap {
                first: last.map(|j| tensors[j].name.clone()).unwrap_or_default(),
                second: t.name.clone(),
            });
        }
        if t.begin > covered {
            return Err(HeaderError::Hole {
                begin: covered,
                end: t.begin,
            });
        }
        if t.end > t.begin {
            covered = t.end;
            last = Some(i);
        }
    }
    if covered != data_len {
        return Err(HeaderError::Hole {
            begin: covered,
            end: data_len,
        });
    }
    Ok(Header { tensors, metadata })
}

/// A string borrowed from the header when it has no escapes (serde's own `Cow<str>` always
/// copies).
struct Str<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Check one record against its dtype and the data section.
fn check_record(
    name: Cow<'_, str>,
    rec: Record<'_>,
    data_len: u64,
) -> Result<TensorEntry, HeaderError> {
    let name = name.into_owned();
    if rec.rank_exceeded {
        return Err(HeaderError::Rank { name });
    }
    let dtype = DType::from_safetensors(&rec.dtype).ok_or_else(|| HeaderError::Dtype {
        name: name.clone(),
        dtype: rec.dtype.clone().into_owned(),
    })?;
    let (begin, end) = rec.data_offsets;
    let expected = rec
        .shape
        .iter()
        .try_fold(1u64, |a, d| a.checked_mul(*d))
        .and_then(|n| n.checked_mul(dtype.size()));
    if begin > end || expected != Some(end - begin) {
        return Err(HeaderError::Size {
            name,
            begin,
            end,
            expected: expected.map_or_else(|| "overflowing".to_owned(), |n| n.to_string()),
        });
    }
    if end > data_len {
        return Err(HeaderError::OutOfRange {
            name,
            begin,
            end,
            data_len,
        });
    }
    Ok(TensorEntry {
        name,
        dtype,
        shape: rec.shape,
        begin,
        end,
    })
}

/// The top-level object. A failure that is ours (not JSON syntax) is put in `failed` and the
/// parse stopped with a placeholder serde error.
struct HeaderVisitor<'f> {
    max_tensors: usize,
    header_len: usize,
    data_len: u64,
    failed: &'f mut Option<HeaderError>,
}

impl<'de> Visitor<'de> for HeaderVisitor<'_> {
    type Value = (Vec<TensorEntry>, Vec<(String, String)>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of tensors")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut tensors = Vec::new();
        let mut metadata = Vec::new();
        let mut seen_metadata = false;
        while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
            if key == "__metadata__" {
                if seen_metadata {
                    return Err(de::Error::custom("__metadata__ is listed twice"));
                }
                seen_metadata = true;
                metadata = map.next_value_seed(MetadataSeed)?.unwrap_or_default();
                continue;
            }
            if tensors.len() >= self.max_tensors {
                *self.failed = Some(HeaderError::TooManyTensors {
                    header_len: self.header_len,
                });
                return Err(de::Error::custom("stopped"));
            }
            let rec: Record<'de> = map.next_value()?;
            match check_record(key, rec, self.data_len) {
                Ok(t) => tensors.push(t),
                Err(e) => {
                    *self.failed = Some(e);
                    return Err(de::Error::custom("stopped"));
                }
            }
        }
        Ok((tensors, metadata))
    }
}

/// `{"dtype": .., "shape": [..], "data_offsets": [b, e]}`; unknown keys are ignored.
struct Record<'a> {
    dtype: Cow<'a, str>,
    shape: Vec<u64>,
    rank_exceeded: bool,
    data_offsets: (u64, u64),
}

impl<'de> de::Deserialize<'de> for Record<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Record<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a tensor record {dtype, shape, data_offsets}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Record<'de>, A::Error> {
                let mut dtype = None;
                let mut shape = None;
                let mut offsets = None;
                while let Some(Str(k)) = map.next_key::<Str<'de>>()? {
                    match k.as_ref() {
                        "dtype" => dtype = Some(map.next_value::<Str<'de>>()?.0),
                        "shape" => shape = Some(map.next_value_seed(ShapeSeed)?),
                        "data_offsets" => offsets = Some(map.next_value::<(u64, u64)>()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let (shape, rank_exceeded) =
                    shape.ok_or_else(|| de::Error::missing_field("shape"))?;
                Ok(Record {
                    dtype: dtype.ok_or_else(|| de::Error::missing_field("dtype"))?,
                    shape,
                    rank_exceeded,
                    data_offsets: offsets
                        .ok_or_else(|| de::Error::missing_field("data_offsets"))?,
                })
            }
        }
        d.deserialize_map(V)
    }
}

/// A shape list read into at most `MAX_RANK` entries (the rest is skipped, and flagged).
struct ShapeSeed;

impl<'de> DeserializeSeed<'de> for ShapeSeed {
    type Value = (Vec<u64>, bool);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = (Vec<u64>, bool);
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of dimensions")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut dims = Vec::new();
                let mut over = false;
                while let Some(d) = seq.next_element::<u64>()? {
                    if dims.len() < MAX_RANK {
                        dims.push(d);
                    } else {
                        over = true;
                    }
                }
                Ok((dims, over))
            }
        }
        d.deserialize_seq(V)
    }
}

/// `__metadata__`: a flat map of strings (or null).
struct MetadataSeed;

impl<'de> DeserializeSeed<'de> for MetadataSeed {
    type Value = Option<Vec<(String, String)>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<Vec<(String, String)>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("__metadata__ as a map of strings")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    out.push((k, v));
                }
                Ok(Some(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A header for tensors laid out one after another, as writers do.
    fn layout(tensors: &[(String, Vec<u64>)]) -> (String, u64, Vec<TensorEntry>) {
        let mut at = 0u64;
        let mut obj = serde_json::Map::new();
        let mut want = Vec::new();
        obj.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
        for (name, shape) in tensors {
            let n: u64 = shape.iter().product::<u64>() * 4;
            obj.insert(
                name.clone(),
                serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [at, at + n]}),
            );
            want.push(TensorEntry {
                name: name.clone(),
                dtype: DType::F32,
                shape: shape.clone(),
                begin: at,
                end: at + n,
            });
            at += n;
        }
        (serde_json::Value::Object(obj).to_string(), at, want)
    }

    fn tensors() -> impl Strategy<Value = Vec<(String, Vec<u64>)>> {
        proptest::collection::btree_map(
            "[a-z.\\\"]{1,6}",
            proptest::collection::vec(0u64..5, 0..4),
            0..12,
        )
        .prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        /// What a writer lays out reads back exactly, with escaped names unescaped.
        #[test]
        fn written_headers_read_back(ts in tensors()) {
            let (h, data_len, want) = layout(&ts);
            let got = parse_header(h.as_bytes(), data_len).unwrap();
            prop_assert_eq!(got.tensors, want);
            prop_assert_eq!(got.metadata, vec![("format".to_owned(), "pt".to_owned())]);
        }

        /// Any byte changed, dropped or the data section resized: an error or a valid
        /// header, never a panic; and whatever is accepted still tiles the data section.
        #[test]
        fn damaged_headers_never_panic(ts in tensors(), at in any::<usize>(), b in any::<u8>(),
                                       extra in 0u64..9) {
            let (h, data_len, _) = layout(&ts);
            let mut bytes = h.into_bytes();
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] = b;
            }
            if let Ok(got) = parse_header(&bytes, data_len + extra) {
                let total: u64 = got.tensors.iter().map(|t| t.end - t.begin).sum();
                prop_assert_eq!(total, data_len + extra);
            }
        }
    }

    fn rec(dtype: &str, shape: &str, b: u64, e: u64) -> String {
        format!(r#"{{"dtype":"{dtype}","shape":{shape},"data_offsets":[{b},{e}]}}"#)
    }

    #[test]
    fn a_valid_header_parses_in_order_with_metadata() {
        let h = format!(
            r#"{{"__metadata__":{{"format":"pt"}},"b":{},"a\u0041":{}}}"#,
            rec("F32", "[2]", 0, 8),
            rec("I64", "[]", 8, 16)
        );
        let got = parse_header(h.as_bytes(), 16).unwrap();
        assert_eq!(got.metadata, vec![("format".into(), "pt".into())]);
        assert_eq!(got.tensors[0].name, "b");
        assert_eq!(got.tensors[1].name, "aA");
        assert_eq!(got.tensors[1].shape, Vec::<u64>::new());
    }

    #[test]
    fn hostile_headers_are_refused_with_the_tensor_named() {
        let e = |h: String, n| parse_header(h.as_bytes(), n).unwrap_err();
        let rank = format!("[{}1]", "1,".repeat(10_000));
        assert_eq!(
            e(format!(r#"{{"t":{}}}"#, rec("F32", &rank, 0, 4)), 4),
            HeaderError::Rank { name: "t".into() }
        );
        assert!(matches!(
            e(format!(r#"{{"a":{},"b":{}}}"#, rec("F32", "[2]", 0, 8), rec("F32", "[2]", 4, 12)), 12),
            HeaderError::Overlap { first, second } if first == "a" && second == "b"
        ));
        assert!(matches!(
            e(format!(r#"{{"t":{}}}"#, rec("F32", "[4]", 0, 16)), 8),
            HeaderError::OutOfRange { .. }
        ));
        assert!(matches!(
            e(
                format!(
                    r#"{{"a":{},"b":{}}}"#,
                    rec("F32", "[1]", 0, 4),
                    rec("F32", "[1]", 8, 12)
                ),
                12
            ),
            HeaderError::Hole { begin: 4, end: 8 }
        ));
        let deep = format!(
            r#"{{"__metadata__":{}"x"{}}}"#,
            r#"{"a":"#.repeat(1000),
            "}".repeat(1000)
        );
        assert!(matches!(e(deep, 0), HeaderError::Json(_)));
        assert!(matches!(
            e(
                format!(
                    r#"{{"t":{},"t":{}}}"#,
                    rec("U8", "[1]", 0, 1),
                    rec("U8", "[1]", 1, 2)
                ),
                2
            ),
            HeaderError::Duplicate { .. }
        ));
        assert!(check_header_len(1 << 30, 100).is_err());
        assert!(check_header_len(10, 100).is_ok());
    }

    #[test]
    fn zero_size_tensors_may_share_an_offset() {
        let h = format!(
            r#"{{"a":{},"b":{},"c":{}}}"#,
            rec("F32", "[0]", 0, 0),
            rec("F32", "[0]", 0, 0),
            rec("F32", "[1]", 0, 4)
        );
        assert_eq!(parse_header(h.as_bytes(), 4).unwrap().tensors.len(), 3);
    }
}

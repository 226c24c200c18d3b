//! The safetensors header, parsed into typed records within limits the file itself sets.
//!
//! A header may be up to 100 MiB of JSON; parsed into a generic `serde_json::Value` (and
//! then per-tensor vectors) a crafted one drives gigabytes of allocation. Here the header is
//! deserialized straight into a [`Header`]'s compact tables (one string of names, one vector
//! of dimensions, a 32-byte record per tensor; no allocation per tensor), with every claimed
//! size checked as it is read:
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

/// One tensor of the header, checked: a view into the [`Header`]'s shared tables.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TensorEntry<'a> {
    pub name: &'a str,
    pub dtype: DType,
    pub shape: &'a [u64],
    /// Offsets into the data section (after the header).
    pub begin: u64,
    pub end: u64,
}

impl TensorEntry<'_> {
    pub fn numel(&self) -> u64 {
        // Checked in `parse_header`: the product fits (it matched end - begin).
        self.shape
            .iter()
            .try_fold(1u64, |a, d| a.checked_mul(*d))
            .unwrap_or(0)
    }
}

/// One record as stored: where its name and dimensions are in the header's shared tables.
/// 32 bytes a tensor, whatever its name or rank (with the name as a `String` and the shape as
/// a `Vec` a record was 72 bytes plus two allocations: 17 MB for a 10 MB header of 170,000
/// tensors, before the vector's doubling).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Slot {
    /// End of the name in `names` (it starts where the previous one ends).
    name_end: u32,
    /// End of the dimensions in `dims` (they start where the previous record's end).
    dims_end: u32,
    dtype: DType,
    begin: u64,
    end: u64,
}

/// A parsed, validated header: tensors in the order the header lists them (names in one
/// string, dimensions in one vector), and the `__metadata__` strings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Header {
    names: String,
    dims: Vec<u64>,
    slots: Vec<Slot>,
    /// Record indices in name order (names are unique).
    pub(crate) by_name: Vec<u32>,
    pub metadata: Vec<(String, String)>,
}

impl Header {
    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The `i`-th tensor in header order.
    pub fn get(&self, i: usize) -> Option<TensorEntry<'_>> {
        let slot = self.slots.get(i)?;
        let (name_start, dims_start) = match i.checked_sub(1).and_then(|p| self.slots.get(p)) {
            Some(prev) => (prev.name_end as usize, prev.dims_end as usize),
            None => (0, 0),
        };
        Some(TensorEntry {
            name: self.names.get(name_start..slot.name_end as usize)?,
            dtype: slot.dtype,
            shape: self.dims.get(dims_start..slot.dims_end as usize)?,
            begin: slot.begin,
            end: slot.end,
        })
    }

    /// Tensors in header order.
    pub fn tensors(&self) -> impl ExactSizeIterator<Item = TensorEntry<'_>> + '_ {
        (0..self.slots.len()).map(|i| {
            self.get(i).unwrap_or(TensorEntry {
                name: "",
                dtype: DType::U8,
                shape: &[],
                begin: 0,
                end: 0,
            })
        })
    }

    /// Header-order indices of the tensors, sorted by name.
    pub fn by_name(&self) -> &[u32] {
        &self.by_name
    }
}

/// Check the 8-byte header length against the file before anything is read or allocated.
pub fn check_header_len(len: u64, file_len: u64) -> Result<(), HeaderError> {
    if !(2..=MAX_HEADER_BYTES).contains(&len) || len.saturating_add(8) > file_len {
        return Err(HeaderError::Length { len, file_len });
    }
    Ok(())
}

/// Parse and validate a header whose data section holds `data_len` bytes. Each record is
/// checked and appended to the shared tables as it is read: there is never a second,
/// unchecked copy of the tensor list, nor an allocation per tensor.
pub fn parse_header(header: &[u8], data_len: u64) -> Result<Header, HeaderError> {
    let mut failed: Option<HeaderError> = None;
    let mut out = Header::default();
    let mut de = serde_json::Deserializer::from_slice(header);
    let parsed = de
        .deserialize_map(HeaderVisitor {
            max_tensors: header.len() / MIN_RECORD_BYTES + 1,
            header_len: header.len(),
            data_len,
            failed: &mut failed,
            out: &mut out,
        })
        .and_then(|()| de.end());
    match (parsed, failed) {
        (_, Some(e)) => return Err(e),
        (Err(e), None) => return Err(HeaderError::Json(e.to_string())),
        (Ok(()), None) => {}
    }
    // Names are unique and ranges tile the data section exactly. Indices fit in u32: the
    // tensor count is bounded by the header size (at most 100 MiB / 48).
    let name = |i: u32| out.get(i as usize).map_or("", |t| t.name);
    let mut order: Vec<u32> = (0..out.slots.len())
        .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
        .collect();
    order.sort_unstable_by(|a, b| name(*a).cmp(name(*b)));
    for w in order.windows(2) {
        if name(w[0]) == name(w[1]) {
            return Err(HeaderError::Duplicate {
                name: name(w[0]).to_owned(),
            });
        }
    }
    let by_name = order.clone();
    let range = |i: u32| {
        out.slots
            .get(i as usize)
            .map_or((0, 0), |s| (s.begin, s.end))
    };
    order.sort_unstable_by_key(|i| range(*i));
    let mut covered = 0u64;
    let mut last: Option<u32> = None;
    for &i in &order {
        let (begin, end) = range(i);
        if begin < covered {
            return Err(HeaderError::Overlap {
                first: last.map(|j| name(j).to_owned()).unwrap_or_default(),
                second: name(i).to_owned(),
            });
        }
        if begin > covered {
            return Err(HeaderError::Hole {
                begin: covered,
                end: begin,
            });
        }
        if end > begin {
            covered = end;
            last = Some(i);
        }
    }
    if covered != data_len {
        return Err(HeaderError::Hole {
            begin: covered,
            end: data_len,
        });
    }
    drop(order);
    out.by_name = by_name;
    Ok(out)
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

/// Check one record against its dtype and the data section; its dimensions are
/// `dims[dims_start..]`.
fn check_record(
    name: &str,
    rec: Record<'_>,
    dims: &[u64],
    data_len: u64,
) -> Result<(DType, u64, u64), HeaderError> {
    if rec.rank_exceeded {
        return Err(HeaderError::Rank {
            name: name.to_owned(),
        });
    }
    let dtype = DType::from_safetensors(&rec.dtype).ok_or_else(|| HeaderError::Dtype {
        name: name.to_owned(),
        dtype: rec.dtype.clone().into_owned(),
    })?;
    let (begin, end) = rec.data_offsets;
    let expected = dims
        .iter()
        .try_fold(1u64, |a, d| a.checked_mul(*d))
        .and_then(|n| n.checked_mul(dtype.size()));
    if begin > end || expected != Some(end - begin) {
        return Err(HeaderError::Size {
            name: name.to_owned(),
            begin,
            end,
            expected: expected.map_or_else(|| "overflowing".to_owned(), |n| n.to_string()),
        });
    }
    if end > data_len {
        return Err(HeaderError::OutOfRange {
            name: name.to_owned(),
            begin,
            end,
            data_len,
        });
    }
    Ok((dtype, begin, end))
}

/// The top-level object, read into `out`. A failure that is ours (not JSON syntax) is put in
/// `failed` and the parse stopped with a placeholder serde error.
struct HeaderVisitor<'f> {
    max_tensors: usize,
    header_len: usize,
    data_len: u64,
    failed: &'f mut Option<HeaderError>,
    out: &'f mut Header,
}

impl HeaderVisitor<'_> {
    fn stop<E: de::Error>(&mut self, e: HeaderError) -> E {
        *self.failed = Some(e);
        de::Error::custom("stopped")
    }
}

impl<'de> Visitor<'de> for HeaderVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of tensors")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let mut seen_metadata = false;
        while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
            if key == "__metadata__" {
                if seen_metadata {
                    return Err(de::Error::custom("__metadata__ is listed twice"));
                }
                seen_metadata = true;
                self.out.metadata = map.next_value_seed(MetadataSeed)?.unwrap_or_default();
                continue;
            }
            if self.out.slots.len() >= self.max_tensors {
                let header_len = self.header_len;
                return Err(self.stop(HeaderError::TooManyTensors { header_len }));
            }
            let dims_start = self.out.dims.len();
            let rec: Record<'de> = map.next_value_seed(RecordSeed {
                dims: &mut self.out.dims,
            })?;
            let checked = check_record(
                &key,
                rec,
                self.out.dims.get(dims_start..).unwrap_or(&[]),
                self.data_len,
            );
            let (dtype, begin, end) = match checked {
                Ok(c) => c,
                Err(e) => return Err(self.stop(e)),
            };
            self.out.names.push_str(&key);
            // Both tables are bounded by the header's length (<= 100 MiB): they fit in u32.
            let (Ok(name_end), Ok(dims_end)) = (
                u32::try_from(self.out.names.len()),
                u32::try_from(self.out.dims.len()),
            ) else {
                let header_len = self.header_len;
                return Err(self.stop(HeaderError::TooManyTensors { header_len }));
            };
            self.out.slots.push(Slot {
                name_end,
                dims_end,
                dtype,
                begin,
                end,
            });
        }
        Ok(())
    }
}

/// `{"dtype": .., "shape": [..], "data_offsets": [b, e]}`; unknown keys are ignored. The
/// shape's dimensions are appended to the header's shared vector.
struct Record<'a> {
    dtype: Cow<'a, str>,
    rank_exceeded: bool,
    data_offsets: (u64, u64),
}

struct RecordSeed<'d> {
    dims: &'d mut Vec<u64>,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = Record<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Record<'de>, D::Error> {
        struct V<'d> {
            dims: &'d mut Vec<u64>,
        }
        impl<'de> Visitor<'de> for V<'_> {
            type Value = Record<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a tensor record {dtype, shape, data_offsets}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Record<'de>, A::Error> {
                let start = self.dims.len();
                let mut dtype = None;
                let mut shape = None;
                let mut offsets = None;
                while let Some(Str(k)) = map.next_key::<Str<'de>>()? {
                    match k.as_ref() {
                        "dtype" => dtype = Some(map.next_value::<Str<'de>>()?.0),
                        "shape" => {
                            // A shape listed twice: the last one counts, as in a JSON map.
                            self.dims.truncate(start);
                            shape = Some(map.next_value_seed(ShapeSeed {
                                dims: &mut *self.dims,
                            })?);
                        }
                        "data_offsets" => offsets = Some(map.next_value::<(u64, u64)>()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let rank_exceeded = shape.ok_or_else(|| de::Error::missing_field("shape"))?;
                Ok(Record {
                    dtype: dtype.ok_or_else(|| de::Error::missing_field("dtype"))?,
                    rank_exceeded,
                    data_offsets: offsets
                        .ok_or_else(|| de::Error::missing_field("data_offsets"))?,
                })
            }
        }
        d.deserialize_map(V { dims: self.dims })
    }
}

/// A shape list appended to `dims`, at most `MAX_RANK` entries (the rest is skipped, and
/// flagged: the value is whether the rank was exceeded).
struct ShapeSeed<'d> {
    dims: &'d mut Vec<u64>,
}

impl<'de> DeserializeSeed<'de> for ShapeSeed<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        struct V<'d> {
            dims: &'d mut Vec<u64>,
        }
        impl<'de> Visitor<'de> for V<'_> {
            type Value = bool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of dimensions")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
                let mut rank = 0usize;
                let mut over = false;
                while let Some(d) = seq.next_element::<u64>()? {
                    if rank < MAX_RANK {
                        self.dims.push(d);
                        rank += 1;
                    } else {
                        over = true;
                    }
                }
                Ok(over)
            }
        }
        d.deserialize_seq(V { dims: self.dims })
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

    /// A tensor as owned values, to compare with what was written.
    type Owned = (String, DType, Vec<u64>, u64, u64);

    fn owned(h: &Header) -> Vec<Owned> {
        h.tensors()
            .map(|t| (t.name.to_owned(), t.dtype, t.shape.to_vec(), t.begin, t.end))
            .collect()
    }

    /// A header for tensors laid out one after another, as writers do.
    fn layout(tensors: &[(String, Vec<u64>)]) -> (String, u64, Vec<Owned>) {
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
            want.push((name.clone(), DType::F32, shape.clone(), at, at + n));
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
            prop_assert_eq!(owned(&got), want);
            // The name index is the header order sorted by name.
            let mut sorted: Vec<&str> = got.tensors().map(|t| t.name).collect();
            sorted.sort_unstable();
            let indexed: Vec<&str> = got
                .by_name()
                .iter()
                .map(|i| got.get(*i as usize).unwrap().name)
                .collect();
            prop_assert_eq!(indexed, sorted);
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
                let total: u64 = got.tensors().map(|t| t.end - t.begin).sum();
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
        assert_eq!(got.get(0).unwrap().name, "b");
        assert_eq!(got.get(1).unwrap().name, "aA");
        assert_eq!(got.get(1).unwrap().shape, &[] as &[u64]);
        assert_eq!(got.get(0).unwrap().shape, &[2]);
        assert_eq!(got.get(2), None);
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

    /// Every record's dimensions go to one shared vector: a shape listed twice keeps only
    /// the last (as a JSON map does), and never shifts the next record's dimensions.
    #[test]
    fn a_shape_listed_twice_counts_once() {
        let h = r#"{"t":{"dtype":"F32","shape":[5,5],"shape":[2],"data_offsets":[0,8]},"u":{"shape":[1,1],"dtype":"F32","data_offsets":[8,12]}}"#;
        let got = parse_header(h.as_bytes(), 12).unwrap();
        assert_eq!(
            owned(&got),
            vec![
                ("t".to_owned(), DType::F32, vec![2], 0, 8),
                ("u".to_owned(), DType::F32, vec![1, 1], 8, 12)
            ]
        );
    }

    #[test]
    fn zero_size_tensors_may_share_an_offset() {
        let h = format!(
            r#"{{"a":{},"b":{},"c":{}}}"#,
            rec("F32", "[0]", 0, 0),
            rec("F32", "[0]", 0, 0),
            rec("F32", "[1]", 0, 4)
        );
        assert_eq!(parse_header(h.as_bytes(), 4).unwrap().len(), 3);
    }
}

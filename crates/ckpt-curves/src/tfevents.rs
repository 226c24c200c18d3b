//! TensorBoard event files (`events.out.tfevents.*`).
//!
//! A file is a TFRecord stream: per record a little-endian `u64` length, the masked CRC-32C
//! of those 8 bytes, the data, the masked CRC-32C of the data. The data is a protobuf
//! `tensorflow.Event`; scalars are its `summary.value[]` entries, either `simple_value`
//! (torch's `SummaryWriter.add_scalar`, which Lightning's TensorBoardLogger calls) or a
//! one-element `tensor` of the `scalars` plugin (`add_scalar(new_style=True)`, TensorFlow 2's
//! `tf.summary.scalar`). Histograms, images, text and hparams entries are skipped.
//!
//! The few messages needed are declared here with `prost`'s derive (field numbers from
//! tensorflow/core/util/event.proto, framework/summary.proto, framework/tensor.proto);
//! unknown fields are skipped by prost. A length is checked against the bytes left and the
//! record budget before anything is allocated. A CRC mismatch in a length stops the file
//! (the framing after it cannot be trusted); one in the data skips that record.

use std::io::{BufReader, Read};
use std::path::Path;

use crate::{At, Axis, Collector, Limits, Problem, ReadOut, Warnings, event_files, open_regular};

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
    #[prost(message, optional, tag = "8")]
    pub tensor: Option<TensorProto>,
    #[prost(message, optional, tag = "9")]
    pub metadata: Option<SummaryMetadata>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SummaryMetadata {
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<PluginData>,
    /// `DATA_CLASS_SCALAR` = 1.
    #[prost(int32, tag = "4")]
    pub data_class: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PluginData {
    #[prost(string, tag = "1")]
    pub plugin_name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TensorProto {
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShape>,
    #[prost(bytes = "vec", tag = "4")]
    pub tensor_content: Vec<u8>,
    #[prost(float, repeated, tag = "5")]
    pub float_val: Vec<f32>,
    #[prost(double, repeated, tag = "6")]
    pub double_val: Vec<f64>,
    #[prost(int32, repeated, tag = "7")]
    pub int_val: Vec<i32>,
    #[prost(int64, repeated, tag = "10")]
    pub int64_val: Vec<i64>,
    #[prost(bool, repeated, tag = "11")]
    pub bool_val: Vec<bool>,
    #[prost(int32, repeated, tag = "13")]
    pub half_val: Vec<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TensorShape {
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<Dim>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Dim {
    #[prost(int64, tag = "1")]
    pub size: i64,
}

// tensorflow/core/framework/types.proto
const DT_FLOAT: i32 = 1;
const DT_DOUBLE: i32 = 2;
const DT_INT32: i32 = 3;
const DT_UINT8: i32 = 4;
const DT_INT16: i32 = 5;
const DT_INT8: i32 = 6;
const DT_INT64: i32 = 9;
const DT_BOOL: i32 = 10;
const DT_BFLOAT16: i32 = 14;
const DT_HALF: i32 = 19;

/// TFRecord's CRC mask (so that a CRC of data holding CRCs is not degenerate).
pub fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1f);
    let frac = f64::from(bits & 0x3ff);
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 if frac == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        e => sign * (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

/// The single number a scalar tensor holds; `None` for anything else (more elements, a
/// string, an unknown dtype).
fn tensor_scalar(t: &TensorProto) -> Option<f64> {
    let elems: i64 = t
        .tensor_shape
        .as_ref()
        .map(|s| s.dim.iter().map(|d| d.size).product())
        .unwrap_or(1);
    if elems != 1 {
        return None;
    }
    let c = &t.tensor_content;
    let le = |n: usize| c.get(..n);
    match t.dtype {
        DT_FLOAT => t.float_val.first().map(|&x| f64::from(x)).or_else(|| {
            le(4)
                .and_then(|b| b.try_into().ok())
                .map(|b| f64::from(f32::from_le_bytes(b)))
        }),
        DT_DOUBLE => t.double_val.first().copied().or_else(|| {
            le(8)
                .and_then(|b| b.try_into().ok())
                .map(f64::from_le_bytes)
        }),
        DT_HALF => t
            .half_val
            .first()
            .map(|&h| f16_to_f64(h as u16))
            .or_else(|| {
                le(2)
                    .and_then(|b| b.try_into().ok())
                    .map(|b| f16_to_f64(u16::from_le_bytes(b)))
            }),
        DT_BFLOAT16 => {
            let bits = t.half_val.first().map(|&h| h as u16).or_else(|| {
                le(2)
                    .and_then(|b| b.try_into().ok())
                    .map(u16::from_le_bytes)
            })?;
            Some(f64::from(f32::from_bits(u32::from(bits) << 16)))
        }
        DT_INT32 | DT_INT16 | DT_INT8 | DT_UINT8 => t
            .int_val
            .first()
            .map(|&x| f64::from(x))
            .or_else(|| match t.dtype {
                DT_INT32 => le(4)
                    .and_then(|b| b.try_into().ok())
                    .map(|b| f64::from(i32::from_le_bytes(b))),
                DT_INT16 => le(2)
                    .and_then(|b| b.try_into().ok())
                    .map(|b| f64::from(i16::from_le_bytes(b))),
                DT_INT8 => c.first().map(|&b| f64::from(b as i8)),
                _ => c.first().map(|&b| f64::from(b)),
            }),
        DT_INT64 => t
            .int64_val
            .first()
            .copied()
            .or_else(|| {
                le(8)
                    .and_then(|b| b.try_into().ok())
                    .map(i64::from_le_bytes)
            })
            .map(|x| x as f64),
        DT_BOOL => t
            .bool_val
            .first()
            .map(|&b| f64::from(u8::from(b)))
            .or_else(|| c.first().map(|&b| f64::from(u8::from(b != 0)))),
        _ => None,
    }
}

/// The scalar a summary value carries, if it is one.
fn scalar_of(v: &SummaryValue) -> Option<f64> {
    if let Some(x) = v.simple_value {
        return Some(f64::from(x));
    }
    let t = v.tensor.as_ref()?;
    let (plugin, class) = match &v.metadata {
        Some(m) => (
            m.plugin_data.as_ref().map(|p| p.plugin_name.as_str()),
            m.data_class,
        ),
        None => (None, 0),
    };
    // Another plugin's tensor (histograms, images, text, hparams) is not a scalar, even
    // when it has one element.
    match plugin {
        Some("scalars") | None | Some("") => {}
        Some(_) if class == 1 => {}
        Some(_) => return None,
    }
    tensor_scalar(t)
}

/// Every event file of a folder (and of its subfolders, their tags prefixed with the
/// subfolder's name), merged per tag (a resumed run writes a new file; the later value for a
/// step wins).
pub fn read_dir(dir: &Path, limits: &Limits) -> ReadOut {
    let mut w = Warnings::new(dir, limits);
    let mut c = Collector::new(limits);
    let mut total: u64 = 0;
    for (prefix, f) in event_files(dir, limits.max_files) {
        if total >= limits.max_file_bytes {
            w.add(
                None,
                Problem::SourceTooLarge {
                    limit: limits.max_file_bytes,
                },
            );
            break;
        }
        total = total.saturating_add(read_file_into(&f, &prefix, limits, &mut c, &mut w));
    }
    let series = c.finish(&mut w);
    (series, w.finish())
}

/// One event file.
pub fn read_file(path: &Path, limits: &Limits) -> ReadOut {
    let mut w = Warnings::new(path, limits);
    let mut c = Collector::new(limits);
    read_file_into(path, "", limits, &mut c, &mut w);
    let series = c.finish(&mut w);
    (series, w.finish())
}

/// Returns the bytes it may have read (the file's size within the budget).
/// Tags are read as `prefix` + tag.
fn read_file_into(
    path: &Path,
    prefix: &str,
    limits: &Limits,
    c: &mut Collector,
    w: &mut Warnings,
) -> u64 {
    let (f, len) = match open_regular(path) {
        Ok(x) => x,
        Err(p) => {
            w.add_for(path, None, p);
            return 0;
        }
    };
    if len > limits.max_file_bytes {
        w.add_for(
            path,
            None,
            Problem::FileTooLarge {
                limit: limits.max_file_bytes,
            },
        );
    }
    // What may be read: the file's size when opened, within the budget (a file still being
    // written ends where it ended then).
    let readable = len.min(limits.max_file_bytes);
    let mut r = BufReader::with_capacity(64 << 10, f.take(readable));
    let mut offset: u64 = 0;
    let mut index: u64 = 0;
    loop {
        let at = Some(At::Record { index, offset });
        let left = readable.saturating_sub(offset);
        if left == 0 {
            break;
        }
        let mut head = [0u8; 12];
        if left < 12 {
            w.add_for(path, at, Problem::Truncated { needed: 12, left });
            break;
        }
        if let Err(e) = r.read_exact(&mut head) {
            w.add_for(path, at, Problem::Io(e.to_string()));
            break;
        }
        let (len_bytes, crc_bytes) = head.split_at(8);
        let crc = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
        if masked_crc(len_bytes) != crc {
            w.add_for(path, at, Problem::BadCrc { part: "length" });
            break;
        }
        let n = u64::from_le_bytes([
            len_bytes[0],
            len_bytes[1],
            len_bytes[2],
            len_bytes[3],
            len_bytes[4],
            len_bytes[5],
            len_bytes[6],
            len_bytes[7],
        ]);
        if n > limits.max_record_bytes {
            w.add_for(
                path,
                at,
                Problem::TooLong {
                    len: n,
                    limit: limits.max_record_bytes,
                },
            );
            break;
        }
        let need = n.saturating_add(4);
        let left = left - 12;
        if need > left {
            w.add_for(path, at, Problem::Truncated { needed: need, left });
            break;
        }
        // Checked against the budget and the bytes present: the allocation is bounded.
        let mut data = vec![0u8; n as usize];
        let mut dcrc = [0u8; 4];
        if let Err(e) = r
            .read_exact(&mut data)
            .and_then(|_| r.read_exact(&mut dcrc))
        {
            w.add_for(path, at, Problem::Io(e.to_string()));
            break;
        }
        offset = offset.saturating_add(12).saturating_add(need);
        index += 1;
        if masked_crc(&data) != u32::from_le_bytes(dcrc) {
            w.add_for(path, at, Problem::BadCrc { part: "data" });
            continue;
        }
        let ev = match <Event as prost::Message>::decode(data.as_slice()) {
            Ok(ev) => ev,
            Err(e) => {
                w.add_for(
                    path,
                    at,
                    Problem::Decode {
                        message: "tensorflow.Event",
                        error: e.to_string(),
                    },
                );
                continue;
            }
        };
        let Some(s) = ev.summary else { continue };
        for v in &s.value {
            if v.tag.is_empty() {
                continue;
            }
            if let Some(x) = scalar_of(v) {
                if prefix.is_empty() {
                    c.push(w, &v.tag, Axis::Step, ev.step, x);
                } else {
                    c.push(w, &format!("{prefix}{}", v.tag), Axis::Step, ev.step, x);
                }
            }
        }
    }
    readable
}

#[cfg(test)]
pub(crate) fn encode_record(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use prost::Message as _;

    fn value(tag: &str, t: TensorProto, plugin: Option<&str>) -> SummaryValue {
        SummaryValue {
            tag: tag.into(),
            simple_value: None,
            tensor: Some(t),
            metadata: plugin.map(|p| SummaryMetadata {
                plugin_data: Some(PluginData {
                    plugin_name: p.into(),
                }),
                data_class: 0,
            }),
        }
    }

    /// Tensor scalars of every dtype a writer may use, in `*_val` fields and in
    /// `tensor_content`; tensors of other plugins and of more than one element skipped.
    #[test]
    fn tensor_scalars_of_each_dtype() {
        let t = |dtype, f: &dyn Fn(&mut TensorProto)| {
            let mut t = TensorProto {
                dtype,
                ..TensorProto::default()
            };
            f(&mut t);
            t
        };
        let values = vec![
            value(
                "half",
                t(DT_HALF, &|t| t.half_val = vec![0x3c00]),
                Some("scalars"),
            ),
            value(
                "half_content",
                t(DT_HALF, &|t| t.tensor_content = vec![0x00, 0xc0]),
                None,
            ),
            value(
                "bf16",
                t(DT_BFLOAT16, &|t| t.half_val = vec![0x3fc0]),
                Some("scalars"),
            ),
            value(
                "i64",
                t(DT_INT64, &|t| t.int64_val = vec![-7]),
                Some("scalars"),
            ),
            value(
                "i32_content",
                t(DT_INT32, &|t| {
                    t.tensor_content = 42i32.to_le_bytes().to_vec()
                }),
                None,
            ),
            value(
                "f64_content",
                t(DT_DOUBLE, &|t| {
                    t.tensor_content = 0.1f64.to_le_bytes().to_vec()
                }),
                None,
            ),
            value(
                "bool",
                t(DT_BOOL, &|t| t.bool_val = vec![true]),
                Some("scalars"),
            ),
            value(
                "histo_like",
                t(DT_FLOAT, &|t| t.float_val = vec![1.0]),
                Some("histograms"),
            ),
            value(
                "vector",
                t(DT_FLOAT, &|t| {
                    t.float_val = vec![1.0, 2.0];
                    t.tensor_shape = Some(TensorShape {
                        dim: vec![Dim { size: 2 }],
                    });
                }),
                Some("scalars"),
            ),
            value(
                "string",
                t(7, &|t| t.tensor_content = b"x".to_vec()),
                Some("scalars"),
            ),
        ];
        let ev = Event {
            wall_time: 1.0,
            step: 12,
            summary: Some(Summary { value: values }),
        };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("events.out.tfevents.1.t");
        std::fs::write(&p, encode_record(&ev.encode_to_vec())).unwrap();
        let (series, w) = read_file(&p, &Limits::default());
        assert!(w.is_empty(), "{w:?}");
        let got: Vec<(String, f64)> = series
            .into_iter()
            .map(|(m, x, p)| {
                assert_eq!(x, Axis::Step);
                assert_eq!(p.len(), 1);
                assert_eq!(p[0].0, 12);
                (m, p[0].1)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("half".into(), 1.0),
                ("half_content".into(), -2.0),
                ("bf16".into(), 1.5),
                ("i64".into(), -7.0),
                ("i32_content".into(), 42.0),
                ("f64_content".into(), 0.1),
                ("bool".into(), 1.0),
            ]
        );
    }

    #[test]
    fn halves() {
        assert_eq!(f16_to_f64(0x7c00), f64::INFINITY);
        assert!(f16_to_f64(0x7e00).is_nan());
        assert_eq!(f16_to_f64(0x0001), 2f64.powi(-24));
        assert_eq!(f16_to_f64(0x3555), 0.333251953125);
    }
}

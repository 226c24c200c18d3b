//! FRAME semantics, checked against CPython 3.11's C unpickler: every expected value below is
//! what `pickle.load(io.BytesIO(data))` (torch.load's way of reading `data.pkl`,
//! [`FrameMode::Stream`]) or `pickle.loads(data)` ([`FrameMode::Buffer`]) returned for the
//! same bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ckpt_pickle::{ErrorKind, FrameMode, Limits, Pickle, Value, decode_partial, decode_with};

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = vec![0x95];
    v.extend_from_slice(&(body.len() as u64).to_le_bytes());
    v.extend_from_slice(body);
    v
}

fn proto4(parts: &[&[u8]]) -> Vec<u8> {
    let mut v = b"\x80\x04".to_vec();
    for p in parts {
        v.extend_from_slice(p);
    }
    v
}

fn limits(frames: FrameMode) -> Limits {
    Limits {
        frames,
        ..Limits::default()
    }
}

/// The root tuple's items, rendered simply.
fn items(p: &Pickle) -> Vec<String> {
    let Value::Tuple(items) = p.get(p.root()) else {
        panic!("root is not a tuple: {:?}", p.get(p.root()));
    };
    items
        .iter()
        .map(|id| match p.get(*id) {
            Value::Str(s) => format!("str:{s}"),
            Value::Bytes(b) => format!("bytes:{}", String::from_utf8_lossy(b)),
            Value::Int(i) => format!("int:{i}"),
            other => format!("{other:?}"),
        })
        .collect()
}

fn both(
    data: &[u8],
) -> (
    Result<Pickle, ckpt_pickle::Error>,
    Result<Pickle, ckpt_pickle::Error>,
) {
    (
        decode_with(data, &limits(FrameMode::Stream)),
        decode_with(data, &limits(FrameMode::Buffer)),
    )
}

#[test]
fn text_straddling_a_frame_end_is_read_from_after_the_frame_in_stream_mode() {
    // BINUNICODE whose length field is the last thing in the frame, 3 bytes of frame left.
    let mut body = b"(X".to_vec();
    body.extend_from_slice(&10u32.to_le_bytes());
    body.extend_from_slice(b"XYZ");
    let data = proto4(&[&frame(&body), b"0123456789t."]);
    let (stream, buffer) = both(&data);
    let stream = stream.unwrap();
    assert_eq!(items(&stream), ["str:0123456789"]);
    assert_eq!(stream.frame_straddles, vec![12]);
    // pickle.loads: "invalid load key, '7'"
    assert_eq!(buffer.unwrap_err().kind, ErrorKind::UnknownOpcode(b'7'));
}

#[test]
fn a_line_straddling_a_frame_end_is_a_fresh_readline() {
    let data = proto4(&[&frame(b"(Vab"), b"cd\nt."]);
    let (stream, buffer) = both(&data);
    let stream = stream.unwrap();
    assert_eq!(items(&stream), ["str:cd"]);
    assert_eq!(stream.frame_straddles.len(), 1);
    assert_eq!(items(&buffer.unwrap()), ["str:abcd"]);
}

#[test]
fn bytes_payloads_stay_contiguous_across_a_frame_end() {
    // SHORT_BINBYTES is read with _Unpickler_ReadInto: the buffer's tail, then the stream.
    let data = proto4(&[&frame(b"(C\x04ab"), b"cdt."]);
    let (stream, buffer) = both(&data);
    let stream = stream.unwrap();
    assert_eq!(items(&stream), ["bytes:abcd"]);
    assert!(stream.frame_straddles.is_empty());
    assert_eq!(items(&buffer.unwrap()), ["bytes:abcd"]);
}

#[test]
fn a_fixed_size_argument_straddling_a_frame_end() {
    // BININT2 with one byte left in the frame: the stream reading takes both bytes after it.
    let data = proto4(&[&frame(b"(M\x01"), b"\x02\x03t."]);
    let (stream, buffer) = both(&data);
    assert_eq!(items(&stream.unwrap()), ["int:770"]);
    assert_eq!(buffer.unwrap_err().kind, ErrorKind::UnknownOpcode(3));
}

#[test]
fn an_argument_starting_at_the_frame_end_reads_the_same_both_ways() {
    let data = proto4(&[&frame(b"(K\x01K"), b"\x07t."]);
    let (stream, buffer) = both(&data);
    let stream = stream.unwrap();
    assert_eq!(items(&stream), ["int:1", "int:7"]);
    assert!(stream.frame_straddles.is_empty());
    assert_eq!(items(&buffer.unwrap()), ["int:1", "int:7"]);
}

#[test]
fn a_nested_frame_that_leaves_the_outer_buffer_is_read_after_it() {
    let mut body = b"(K\x01".to_vec();
    body.extend_from_slice(&frame(b"")[..1]);
    body.extend_from_slice(&3u64.to_le_bytes());
    let data = proto4(&[&frame(&body), b"K\x02t."]);
    let (stream, buffer) = both(&data);
    assert_eq!(items(&stream.unwrap()), ["int:1", "int:2"]);
    assert_eq!(items(&buffer.unwrap()), ["int:1", "int:2"]);
}

#[test]
fn a_global_hidden_by_a_frame_straddle_is_seen_in_stream_mode() {
    // What a frame-ignoring reader sees: one long str, then a BINBYTES that swallows the
    // GLOBAL. What torch.load (BytesIO) runs: the str comes from after the frame, then the
    // GLOBAL + REDUCE.
    let payload = b"cos\nsystem\n(S'touch pwned'\ntR";
    let mut after = vec![b'A'; 11];
    after.push(b'B');
    after.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let n = after.len() as u32;
    let mut body = b"(X".to_vec();
    body.extend_from_slice(&n.to_le_bytes());
    body.extend_from_slice(b"pad05"); // 5 bytes dropped by the stream reading
    let data = proto4(&[&frame(&body), &after, payload, b"t."]);
    let (stream, buffer) = both(&data);
    let stream = stream.unwrap();
    assert_eq!(stream.globals.len(), 1);
    let buffer = buffer.unwrap();
    assert!(buffer.globals.is_empty(), "the plain reading misses it");
}

#[test]
fn partial_decode_keeps_globals_seen_before_the_error() {
    let (p, err) = decode_partial(b"\x80\x02cos\nsystem\nX\xff\xff", &Limits::default());
    assert_eq!(err.unwrap().kind, ErrorKind::Truncated);
    assert_eq!(p.globals.len(), 1);
}

//! One named test per hostile input. Every input is a byte literal built here, so each test
//! says exactly what it feeds the decoder and what must come back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ckpt_pickle::{Construct, ErrorKind, Limits, Pickle, Value, ValueId, decode, decode_with};

fn err(data: &[u8]) -> (u64, ErrorKind) {
    match decode(data) {
        Ok(p) => panic!("expected an error, decoded {:?}", p.get(p.root())),
        Err(e) => (e.offset, e.kind),
    }
}

fn err_with(data: &[u8], limits: &Limits) -> (u64, ErrorKind) {
    match decode_with(data, limits) {
        Ok(p) => panic!("expected an error, decoded {:?}", p.get(p.root())),
        Err(e) => (e.offset, e.kind),
    }
}

fn str_id(p: &Pickle, id: ValueId) -> &str {
    p.as_str(id).expect("a str")
}

// ---- lengths that lie

#[test]
fn binunicode_length_past_end() {
    // BINUNICODE claiming 4 GiB - 1 with 3 bytes present: an error, not a 4 GiB allocation.
    let data = b"X\xff\xff\xff\xffabc";
    assert_eq!(
        err(data),
        (
            0,
            ErrorKind::LengthPastEnd {
                opcode: "BINUNICODE",
                claimed: 0xffff_ffff,
                available: 3,
            }
        )
    );
}

#[test]
fn binunicode_length_past_end_after_proto() {
    let data = b"\x80\x02X\xff\xff\xff\xffabc";
    assert_eq!(
        err(data),
        (
            2,
            ErrorKind::LengthPastEnd {
                opcode: "BINUNICODE",
                claimed: 0xffff_ffff,
                available: 3,
            }
        )
    );
}

#[test]
fn binbytes8_u64_max_length() {
    let data = b"\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\xffabc.";
    assert_eq!(
        err(data),
        (
            2,
            ErrorKind::LengthPastEnd {
                opcode: "BINBYTES8",
                claimed: u64::MAX,
                available: 4,
            }
        )
    );
}

#[test]
fn binunicode8_u64_max_length() {
    let data = b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\xff";
    assert_eq!(
        err(data),
        (
            2,
            ErrorKind::LengthPastEnd {
                opcode: "BINUNICODE8",
                claimed: u64::MAX,
                available: 0,
            }
        )
    );
}

#[test]
fn bytearray8_u64_max_length() {
    let data = b"\x80\x05\x96\xff\xff\xff\xff\xff\xff\xff\xff.";
    assert_eq!(
        err(data),
        (
            2,
            ErrorKind::LengthPastEnd {
                opcode: "BYTEARRAY8",
                claimed: u64::MAX,
                available: 1,
            }
        )
    );
}

#[test]
fn frame_u64_max_length() {
    let data = b"\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\xffN.";
    assert_eq!(
        err(data),
        (
            2,
            ErrorKind::LengthPastEnd {
                opcode: "FRAME",
                claimed: u64::MAX,
                available: 2,
            }
        )
    );
}

#[test]
fn binstring_negative_length() {
    let data = b"T\xff\xff\xff\xffabc.";
    assert_eq!(
        err(data),
        (
            0,
            ErrorKind::BadLength {
                opcode: "BINSTRING",
                length: -1,
            }
        )
    );
}

#[test]
fn long4_negative_length() {
    let data = b"\x80\x02\x8b\x00\x00\x00\x80.";
    assert_eq!(
        err(data),
        (
            2,
            ErrorKind::BadLength {
                opcode: "LONG4",
                length: i64::from(i32::MIN),
            }
        )
    );
}

#[test]
fn long4_huge_length_hits_int_limit() {
    // 2 GiB - 1 bytes claimed: refused by the integer-size limit before the length is used.
    let data = b"\x80\x02\x8b\xff\xff\xff\x7f\x01\x02.";
    assert_eq!(
        err(data),
        (
            2,
            ErrorKind::LimitExceeded {
                what: "integer size",
                limit: Limits::default().max_int_bytes as u64,
            }
        )
    );
}

#[test]
fn long4_within_limit_but_past_end() {
    let data = b"\x80\x02\x8b\x00\x01\x00\x00\x01\x02.";
    assert_eq!(
        err(data),
        (
            2,
            ErrorKind::LengthPastEnd {
                opcode: "LONG4",
                claimed: 256,
                available: 3,
            }
        )
    );
}

#[test]
fn long1_over_custom_int_limit() {
    let mut data = b"\x80\x02\x8a\x09".to_vec();
    data.extend_from_slice(&[0x11; 9]);
    data.push(b'.');
    let limits = Limits {
        max_int_bytes: 8,
        ..Default::default()
    };
    assert_eq!(
        err_with(&data, &limits),
        (
            2,
            ErrorKind::LimitExceeded {
                what: "integer size",
                limit: 8,
            }
        )
    );
    // The same bytes decode with the default limit.
    let p = decode(&data).unwrap();
    assert!(matches!(p.get(p.root()), Value::BigInt(_)));
}

// ---- depth and sharing

#[test]
fn nested_lists_100k_deep_no_recursion() {
    // Runs on the default test thread (2 MiB stack): decoding and dropping must not recurse.
    const N: usize = 100_000;
    let mut data = Vec::with_capacity(2 * N + 3);
    data.extend_from_slice(b"\x80\x02");
    data.extend(std::iter::repeat_n(b']', N));
    data.extend(std::iter::repeat_n(b'a', N - 1));
    data.push(b'.');
    let p = decode(&data).unwrap();
    assert_eq!(p.len(), N);
    // Walk down iteratively: each list holds exactly the next one, the innermost is empty.
    let mut id = p.root();
    let mut depth = 1;
    while let Value::List(items) = p.get(id) {
        match items {
            [] => break,
            [child] => {
                id = *child;
                depth += 1;
            }
            other => panic!("list of {} items at depth {depth}", other.len()),
        }
    }
    assert_eq!(depth, N);
    drop(p);
}

#[test]
fn memo_bomb_2_pow_60_stays_small() {
    // t0 = []; t(i+1) = (t(i), t(i)): 2^60 leaves if expanded, a handful of values here.
    let mut data = b"\x80\x02]q\x00".to_vec();
    for i in 0..60u8 {
        data.extend_from_slice(&[b'h', i, b'h', i, 0x86, b'q', i + 1]);
    }
    data.push(b'.');
    let p = decode(&data).unwrap();
    // One empty list plus one tuple per level.
    assert_eq!(p.len(), 61);
    assert!(p.len() <= 180);
    let mut id = p.root();
    let mut levels = 0;
    while let Value::Tuple(items) = p.get(id) {
        assert_eq!(items.len(), 2);
        assert_eq!(items[0], items[1], "both halves are the same value");
        id = items[0];
        levels += 1;
    }
    assert_eq!(levels, 60);
    assert_eq!(p.get(id), Value::List(&[]));
}

#[test]
fn dict_memoized_before_filled_is_one_value() {
    // d = {}; memo[0] = d; d.update(a=1); return (d, memo[0])
    let data = b"\x80\x02}q\x00(X\x01\x00\x00\x00aK\x01uh\x00\x86.";
    let p = decode(data).unwrap();
    let Value::Tuple(t) = p.get(p.root()) else {
        panic!("root {:?}", p.get(p.root()))
    };
    assert_eq!(t.len(), 2);
    assert_eq!(
        t[0], t[1],
        "fetched from the memo: the same dict, not a copy"
    );
    let Value::Dict(items) = p.get(t[0]) else {
        panic!("not a dict")
    };
    assert_eq!(items.len(), 1);
    assert_eq!(str_id(&p, items[0].0), "a");
    assert_eq!(p.get(items[0].1), Value::Int(1));
}

#[test]
fn dict_fetched_before_filled_sees_later_items() {
    // l = []; d = {}; l.append(d); d['a'] = 1 (via memo); l.append(memo[d]) -> [d, d], d = {'a': 1}
    let data = b"\x80\x02]q\x00}q\x01ah\x01X\x01\x00\x00\x00aK\x01s0h\x01a.";
    let p = decode(data).unwrap();
    let Value::List(l) = p.get(p.root()) else {
        panic!("root {:?}", p.get(p.root()))
    };
    assert_eq!(l.len(), 2);
    assert_eq!(l[0], l[1]);
    assert_eq!(p.dict_get(l[0], "a"), p.dict_get(l[1], "a"));
    assert_eq!(p.as_i64(p.dict_get(l[0], "a").unwrap()), Some(1));
}

#[test]
fn setitems_on_reduced_ordereddict_lands_in_dict_items() {
    let data = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00bK\x02u.";
    let p = decode(data).unwrap();
    let Value::Object(o) = p.get(p.root()) else {
        panic!("root {:?}", p.get(p.root()))
    };
    assert_eq!(o.construct, Construct::Reduce);
    assert!(
        p.as_global(o.callee)
            .unwrap()
            .is("collections", "OrderedDict")
    );
    assert_eq!(p.get(o.args), Value::Tuple(&[]));
    assert_eq!(o.state, None);
    let items: Vec<(&str, Option<i64>)> = o
        .dict_items
        .iter()
        .map(|(k, v)| (str_id(&p, *k), p.as_i64(*v)))
        .collect();
    assert_eq!(items, vec![("a", Some(1)), ("b", Some(2))]);
    assert_eq!(p.globals.len(), 1);
    assert_eq!(p.globals[0].offset, 2);
}

#[test]
fn duplicate_dict_keys_keep_last_value_at_first_position() {
    // {'a': 1, 'b': 2, 'a': 3} as SETITEMS -> {'a': 3, 'b': 2}
    let data = b"\x80\x02}(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00bK\x02X\x01\x00\x00\x00aK\x03u.";
    let p = decode(data).unwrap();
    let Value::Dict(items) = p.get(p.root()) else {
        panic!("root {:?}", p.get(p.root()))
    };
    let items: Vec<(&str, Option<i64>)> = items
        .iter()
        .map(|(k, v)| (str_id(&p, *k), p.as_i64(*v)))
        .collect();
    assert_eq!(items, vec![("a", Some(3)), ("b", Some(2))]);
}

#[test]
fn duplicate_keys_bool_and_int_collide() {
    // {1: 'x', True: 'y'} is {1: 'y'} in Python.
    let data = b"\x80\x02}(K\x01X\x01\x00\x00\x00x\x88X\x01\x00\x00\x00yu.";
    let p = decode(data).unwrap();
    let Value::Dict(items) = p.get(p.root()) else {
        panic!("not a dict")
    };
    assert_eq!(items.len(), 1);
    assert_eq!(p.get(items[0].0), Value::Int(1));
    assert_eq!(str_id(&p, items[0].1), "y");
}

// ---- malformed programs

#[test]
fn unknown_opcode_0xff() {
    assert_eq!(err(b"\x80\x02N\xff."), (3, ErrorKind::UnknownOpcode(0xff)));
}

#[test]
fn protocol_above_5_unsupported() {
    assert_eq!(
        err(b"\x80\x06N."),
        (0, ErrorKind::Unsupported("pickle protocol above 5"))
    );
}

#[test]
fn truncated_without_stop() {
    let data = b"\x80\x02]q\x00";
    assert_eq!(err(data), (data.len() as u64, ErrorKind::Truncated));
}

#[test]
fn truncated_inside_argument() {
    let data = b"\x80\x02J\x01\x02";
    assert_eq!(err(data), (data.len() as u64, ErrorKind::Truncated));
}

#[test]
fn truncated_line_argument() {
    let data = b"\x80\x02cos\nsyst";
    assert_eq!(err(data), (data.len() as u64, ErrorKind::Truncated));
}

#[test]
fn empty_input_is_truncated() {
    assert_eq!(err(b""), (0, ErrorKind::Truncated));
}

#[test]
fn stop_on_empty_stack() {
    assert_eq!(err(b"\x80\x02."), (2, ErrorKind::EmptyStop));
}

#[test]
fn tuple_without_mark() {
    assert_eq!(
        err(b"\x80\x02NNt."),
        (4, ErrorKind::NoMark { opcode: "TUPLE" })
    );
}

#[test]
fn tuple2_stack_underflow() {
    assert_eq!(
        err(b"\x80\x02N\x86."),
        (
            3,
            ErrorKind::StackUnderflow {
                opcode: "TUPLE2",
                needed: 1,
            }
        )
    );
}

#[test]
fn pop_on_a_mark_pops_the_mark() {
    // `_pickle.c`'s load_pop removes a MARK that is on top of the stack (pickle.loads of
    // these bytes returns None); a decoder that underflows here stops where CPython goes on.
    let p = decode(b"\x80\x02N(0.").unwrap();
    assert!(matches!(p.get(p.root()), Value::None));
    // N ( 1 POP POP: the second POP takes the MARK; a third would take N
    let p = decode(b"\x80\x02N(K\x0100.").unwrap();
    assert!(matches!(p.get(p.root()), Value::None));
    // nothing on the stack and no MARK: an underflow, as in CPython
    assert_eq!(
        err(b"\x80\x020."),
        (
            2,
            ErrorKind::StackUnderflow {
                opcode: "POP",
                needed: 1,
            }
        )
    );
}

#[test]
fn build_with_none_state_leaves_any_target_alone() {
    // load_build returns at once for a None state: BUILD of None on an int is valid there.
    let p = decode(b"\x80\x02K\x05Nb.").unwrap();
    assert!(matches!(p.get(p.root()), Value::Int(5)));
}

#[test]
fn empty_appends_setitems_additems_leave_any_target_alone() {
    // CPython returns before looking at the target when nothing follows the MARK, so
    // `N(e` is valid there (pickle.loads returns None); refusing it would stop where CPython
    // goes on.
    for data in [&b"\x80\x02N(e."[..], b"\x80\x02N(u.", b"\x80\x02N(\x90."] {
        let p = decode(data).unwrap();
        assert!(matches!(p.get(p.root()), Value::None), "{data:?}");
    }
    // a target below another MARK is an underflow, as in CPython ("unexpected MARK found")
    assert_eq!(
        err(b"\x80\x02]((K\x01e."),
        (
            7,
            ErrorKind::StackUnderflow {
                opcode: "APPENDS",
                needed: 1,
            }
        )
    );
    assert_eq!(
        err(b"\x80\x02](K\x01a."),
        (
            6,
            ErrorKind::StackUnderflow {
                opcode: "APPEND",
                needed: 1,
            }
        )
    );
}

#[test]
fn memo_get_missing_index() {
    assert_eq!(err(b"\x80\x02Nq\x00h\x05."), (5, ErrorKind::MemoMissing(5)));
}

#[test]
fn long_binget_missing_index() {
    assert_eq!(
        err(b"\x80\x02j\xff\xff\xff\xff."),
        (2, ErrorKind::MemoMissing(0xffff_ffff))
    );
}

#[test]
fn append_on_tuple_is_wrong_type() {
    assert_eq!(
        err(b"\x80\x02)Na."),
        (
            4,
            ErrorKind::WrongType {
                opcode: "APPEND",
                expected: "a list or object",
                found: "tuple",
            }
        )
    );
}

#[test]
fn setitem_on_list_is_wrong_type() {
    assert_eq!(
        err(b"\x80\x02]NNs."),
        (
            5,
            ErrorKind::WrongType {
                opcode: "SETITEM",
                expected: "a dict or object",
                found: "list",
            }
        )
    );
}

#[test]
fn reduce_with_non_tuple_args() {
    assert_eq!(
        err(b"\x80\x02cos\nsystem\n]R."),
        (
            14,
            ErrorKind::WrongType {
                opcode: "REDUCE",
                expected: "a tuple of arguments",
                found: "list",
            }
        )
    );
}

#[test]
fn setitems_odd_item_count() {
    let (offset, kind) = err(b"\x80\x02}(NNNu.");
    assert_eq!(offset, 7);
    assert!(
        matches!(
            kind,
            ErrorKind::Malformed {
                opcode: "SETITEMS",
                ..
            }
        ),
        "{kind:?}"
    );
}

#[test]
fn out_of_band_next_buffer_unsupported() {
    let (offset, kind) = err(b"\x80\x05\x97.");
    assert_eq!(offset, 2);
    assert!(matches!(kind, ErrorKind::Unsupported(_)), "{kind:?}");
}

#[test]
fn out_of_band_readonly_buffer_unsupported() {
    let (offset, kind) = err(b"\x80\x05N\x98.");
    assert_eq!(offset, 3);
    assert!(matches!(kind, ErrorKind::Unsupported(_)), "{kind:?}");
}

// ---- limits

#[test]
fn limit_max_memo() {
    let limits = Limits {
        max_memo: 10,
        ..Default::default()
    };
    let mut data = b"\x80\x02".to_vec();
    for i in 0..10u8 {
        data.extend_from_slice(&[b'N', b'q', i]);
    }
    // Re-putting an existing index does not grow the memo.
    data.extend_from_slice(b"Nq\x03");
    let mut ok = data.clone();
    ok.push(b'.');
    decode_with(&ok, &limits).unwrap();

    let offset = data.len() as u64 + 1;
    data.extend_from_slice(b"Nq\x0a.");
    assert_eq!(
        err_with(&data, &limits),
        (
            offset,
            ErrorKind::LimitExceeded {
                what: "memo size",
                limit: 10,
            }
        )
    );
}

#[test]
fn limit_max_memo_memoize_opcode() {
    let limits = Limits {
        max_memo: 2,
        ..Default::default()
    };
    assert_eq!(
        err_with(b"\x80\x04N\x94N\x94N\x94.", &limits),
        (
            7,
            ErrorKind::LimitExceeded {
                what: "memo size",
                limit: 2,
            }
        )
    );
}

#[test]
fn limit_max_container_len_mark_tuple() {
    let limits = Limits {
        max_container_len: 3,
        ..Default::default()
    };
    decode_with(b"\x80\x02(NNNt.", &limits).unwrap();
    assert_eq!(
        err_with(b"\x80\x02(NNNNt.", &limits),
        (
            7,
            ErrorKind::LimitExceeded {
                what: "container size",
                limit: 3,
            }
        )
    );
}

#[test]
fn limit_max_container_len_by_repeated_append() {
    let limits = Limits {
        max_container_len: 3,
        ..Default::default()
    };
    decode_with(b"\x80\x02]NaNaNa.", &limits).unwrap();
    assert_eq!(
        err_with(b"\x80\x02]NaNaNaNa.", &limits),
        (
            10,
            ErrorKind::LimitExceeded {
                what: "container size",
                limit: 3,
            }
        )
    );
}

#[test]
fn limit_max_container_len_by_appends_batches() {
    let limits = Limits {
        max_container_len: 3,
        ..Default::default()
    };
    assert_eq!(
        err_with(b"\x80\x02](NNe(NNe.", &limits),
        (
            10,
            ErrorKind::LimitExceeded {
                what: "container size",
                limit: 3,
            }
        )
    );
}

#[test]
fn limit_max_stack() {
    let limits = Limits {
        max_stack: 4,
        ..Default::default()
    };
    decode_with(b"\x80\x02NNNN.", &limits).unwrap();
    assert_eq!(
        err_with(b"\x80\x02NNNNN.", &limits),
        (
            6,
            ErrorKind::LimitExceeded {
                what: "stack depth",
                limit: 4,
            }
        )
    );
}

#[test]
fn limit_max_stack_by_dup() {
    // DUP makes no new value, only stack entries.
    let limits = Limits {
        max_stack: 4,
        ..Default::default()
    };
    assert_eq!(
        err_with(b"\x80\x02N2222.", &limits),
        (
            6,
            ErrorKind::LimitExceeded {
                what: "stack depth",
                limit: 4,
            }
        )
    );
}

#[test]
fn limit_max_values() {
    let limits = Limits {
        max_values: 4,
        ..Default::default()
    };
    // 3 Nones + 1 tuple = 4 values.
    decode_with(b"\x80\x02(NNNt.", &limits).unwrap();
    assert_eq!(
        err_with(b"\x80\x02(NNNNt.", &limits),
        (
            7,
            ErrorKind::LimitExceeded {
                what: "value count",
                limit: 4,
            }
        )
    );
}

#[test]
fn limit_max_marks() {
    let limits = Limits {
        max_marks: 2,
        ..Default::default()
    };
    assert_eq!(
        err_with(b"\x80\x02(((N.", &limits),
        (
            4,
            ErrorKind::LimitExceeded {
                what: "open MARK",
                limit: 2,
            }
        )
    );
}

#[test]
fn limit_int_text_digits() {
    // Protocol-0 LONG with far more digits than the integer-size limit allows.
    let limits = Limits {
        max_int_bytes: 4,
        ..Default::default()
    };
    let mut data = b"L".to_vec();
    data.extend(std::iter::repeat_n(b'9', 40));
    data.extend_from_slice(b"L\n.");
    assert_eq!(
        err_with(&data, &limits),
        (
            0,
            ErrorKind::LimitExceeded {
                what: "integer size",
                limit: 4,
            }
        )
    );
}

// ---- globals are names, never imports

#[test]
fn hostile_reduce_is_recorded_not_called() {
    // cos\nsystem\n (X'echo pwned' TUPLE1) REDUCE STOP
    let data = b"\x80\x02cos\nsystem\nX\x0a\x00\x00\x00echo pwned\x85R.";
    let p = decode(data).unwrap();
    let Value::Object(o) = p.get(p.root()) else {
        panic!("root {:?}", p.get(p.root()))
    };
    assert!(p.as_global(o.callee).unwrap().is("os", "system"));
    let args = p.as_seq(o.args).unwrap();
    assert_eq!(str_id(&p, args[0]), "echo pwned");
    assert_eq!(p.globals.len(), 1);
    assert_eq!(p.globals[0].offset, 2);
}

#[test]
fn trailing_bytes_after_stop_are_left_alone() {
    let data = b"\x80\x02N.\xff\xff garbage";
    let p = decode(data).unwrap();
    assert_eq!(p.end, 4);
    assert_eq!(p.get(p.root()), Value::None);
}

//! The scan's policy and pickle findings, by name and by hand-built pickles.

use super::*;
use ckpt_pickle::decode;
use ckpt_pickle::write::Writer;
use ckpt_pickle::{Pickle, Value};

fn scan(bytes: &[u8]) -> ScanReport {
    let p = decode(bytes).unwrap_or_else(|e| panic!("decode: {e}"));
    scan_pickle(&p, "t/data.pkl")
}

fn find<'a>(r: &'a ScanReport, name: &str) -> &'a Finding {
    r.findings
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no finding {name} in {r:#?}"))
}

fn class(module: &str, name: &str) -> Verdict {
    classify_global(module, name).0
}

/// `module.name(arg)` via GLOBAL/STACK_GLOBAL + REDUCE.
fn call_str(w: &mut Writer, module: &str, name: &str, arg: &str) {
    w.global(module, name);
    w.mark();
    w.str(arg);
    w.tuple_from_mark();
    w.reduce();
}

#[test]
fn os_system_global_reduce_is_dangerous() {
    let mut w = Writer::new(2);
    call_str(&mut w, "os", "system", "echo pwned");
    let r = scan(&w.finish());
    assert_eq!(r.verdict(), Verdict::Dangerous);
    let f = find(&r, "os.system");
    assert_eq!(f.class, Verdict::Dangerous);
    assert_eq!(f.usage, "called");
    assert_eq!(f.offset, 2);
    assert_eq!(f.entry, "t/data.pkl");
    assert_eq!(f.reason, "executes shell commands");
}

#[test]
fn inst_opcode_is_dangerous() {
    // protocol 0: MARK, 'echo', INST os system, STOP
    let r = scan(b"(S'echo pwned'\nios\nsystem\n.");
    assert_eq!(r.verdict(), Verdict::Dangerous);
    let f = find(&r, "os.system");
    assert_eq!(f.usage, "called");
    assert_eq!(f.offset, 15);
}

#[test]
fn stack_global_getattr_is_dangerous() {
    // builtins.getattr(collections.OrderedDict, "fromkeys") via STACK_GLOBAL (protocol 4).
    let mut w = Writer::new(4);
    w.global("builtins", "getattr");
    w.mark();
    w.global("collections", "OrderedDict");
    w.str("fromkeys");
    w.tuple_from_mark();
    w.reduce();
    let bytes = w.finish();
    assert!(bytes.contains(&0x93), "expected STACK_GLOBAL");
    let r = scan(&bytes);
    assert_eq!(r.verdict(), Verdict::Dangerous);
    let g = find(&r, "builtins.getattr");
    assert_eq!((g.class, g.usage.as_str()), (Verdict::Dangerous, "called"));
    assert_eq!(g.reason, "reaches attributes");
    let o = find(&r, "collections.OrderedDict");
    assert_eq!((o.class, o.usage.as_str()), (Verdict::Safe, "argument"));
}

#[test]
fn newobj_subprocess_popen_is_dangerous() {
    let mut w = Writer::new(2);
    w.global("subprocess", "Popen");
    w.mark();
    w.mark();
    w.str("sh");
    w.str("-c");
    w.str("id");
    w.buf.push(b'l'); // LIST from mark
    w.tuple_from_mark();
    w.newobj();
    let r = scan(&w.finish());
    assert_eq!(r.verdict(), Verdict::Dangerous);
    let f = find(&r, "subprocess.Popen");
    assert_eq!((f.class, f.usage.as_str()), (Verdict::Dangerous, "called"));
}

#[test]
fn posix_system_nested_in_dict_is_dangerous() {
    // {"state_dict": OrderedDict({"w": posix.system("id")})}
    let mut w = Writer::new(2);
    w.empty_dict();
    w.str("state_dict");
    w.global("collections", "OrderedDict");
    w.empty_tuple();
    w.reduce();
    w.str("w");
    call_str(&mut w, "posix", "system", "id");
    w.setitem();
    w.setitem();
    let r = scan(&w.finish());
    assert_eq!(r.verdict(), Verdict::Dangerous);
    let f = find(&r, "posix.system");
    // the OrderedDict's SETITEM makes it an item of a call, but it is called itself
    assert_eq!((f.class, f.usage.as_str()), (Verdict::Dangerous, "called"));
    assert_eq!(find(&r, "collections.OrderedDict").usage, "called");
}

#[test]
fn dangerous_global_as_argument_of_safe_call() {
    // collections.defaultdict(os.system): the factory runs on the first missing key.
    let mut w = Writer::new(2);
    w.global("collections", "defaultdict");
    w.global("os", "system");
    w.tuple_n(1);
    w.reduce();
    let r = scan(&w.finish());
    assert_eq!(r.verdict(), Verdict::Dangerous);
    let f = find(&r, "os.system");
    assert_eq!(
        (f.class, f.usage.as_str()),
        (Verdict::Dangerous, "argument")
    );
    assert_eq!(find(&r, "collections.defaultdict").class, Verdict::Safe);
}

#[test]
fn bare_reference_is_referenced() {
    let mut w = Writer::new(2);
    w.global("builtins", "eval");
    let r = scan(&w.finish());
    let f = find(&r, "builtins.eval");
    assert_eq!(
        (f.class, f.usage.as_str()),
        (Verdict::Dangerous, "referenced")
    );
}

#[test]
fn numpy1_and_numpy2_module_names_are_both_safe() {
    for core in ["numpy.core", "numpy._core"] {
        let mr = format!("{core}.multiarray");
        assert_eq!(class(&mr, "_reconstruct"), Verdict::Safe, "{mr}");
        assert_eq!(class(&mr, "scalar"), Verdict::Safe, "{mr}");
        assert_eq!(
            class(&format!("{core}.numeric"), "_frombuffer"),
            Verdict::Safe
        );
        // a numpy array: _reconstruct(numpy.ndarray, (0,), b'b') + BUILD
        let mut w = Writer::new(3);
        w.global(&mr, "_reconstruct");
        w.global("numpy", "ndarray");
        w.int(0);
        w.tuple_n(1);
        w.bytes(b"b");
        w.tuple_n(3);
        w.reduce();
        w.mark();
        w.int(1);
        w.global("numpy", "dtype");
        w.str("f8");
        w.bool(false);
        w.bool(true);
        w.tuple_n(3);
        w.reduce();
        w.tuple_from_mark();
        w.build();
        let r = scan(&w.finish());
        assert_eq!(r.verdict(), Verdict::Safe, "{r:#?}");
        assert_eq!(r.findings.len(), 3);
        assert_eq!(find(&r, &format!("{mr}._reconstruct")).usage, "called");
        assert_eq!(find(&r, "numpy.ndarray").usage, "argument");
    }
    assert_eq!(class("numpy.dtypes", "Float64DType"), Verdict::Safe);
    assert_eq!(class("numpy.dtypes", "DType"), Verdict::Unknown);
    assert_eq!(
        class("numpy.core.multiarray", "frombuffer"),
        Verdict::Unknown
    );
    assert_eq!(
        class("numpy.testing._private.utils", "runstring"),
        Verdict::Dangerous
    );
    assert_eq!(class("numpy._core._internal", "x"), Verdict::Unknown);
}

#[test]
fn py2_builtin_set_is_safe_and_shown_as_written() {
    // protocol 2, as Python 2 writes a set: __builtin__.set([1, 2])
    let mut w = Writer::new(2);
    w.global("__builtin__", "set");
    w.empty_list();
    w.mark();
    w.int(1);
    w.int(2);
    w.appends();
    w.tuple_n(1);
    w.reduce();
    let r = scan(&w.finish());
    assert_eq!(r.verdict(), Verdict::Safe);
    let f = find(&r, "__builtin__.set");
    assert_eq!((f.class, f.usage.as_str()), (Verdict::Safe, "called"));
    assert_eq!(class("__builtin__", "long"), Verdict::Safe);
    assert_eq!(class("__builtin__", "unicode"), Verdict::Safe);
    assert_eq!(class("__builtin__", "eval"), Verdict::Dangerous);
    assert_eq!(class("copy_reg", "_reconstructor"), Verdict::Safe);
    assert_eq!(class("cPickle", "loads"), Verdict::Dangerous);
}

#[test]
fn user_class_is_unknown() {
    let (v, reason) = classify_global("corpus_user_code", "Color");
    assert_eq!(v, Verdict::Unknown);
    assert_eq!(
        reason,
        "not on the allowlist: loading would import corpus_user_code"
    );
    assert_eq!(class("__main__", "Stage"), Verdict::Unknown);
    let mut w = Writer::new(2);
    w.global("__main__", "Stage");
    w.mark();
    w.int(2);
    w.tuple_from_mark();
    w.reduce();
    let r = scan(&w.finish());
    assert_eq!(r.verdict(), Verdict::Unknown);
    assert_eq!(find(&r, "__main__.Stage").usage, "called");
}

#[test]
fn torch_nn_module_class_is_unknown() {
    for (m, n) in [
        ("torch.nn.modules.container", "Sequential"),
        ("torch.nn.modules.linear", "Linear"),
        ("transformers.models.gpt2.modeling_gpt2", "GPT2LMHeadModel"),
        ("torch._C._nn", "gelu"),
    ] {
        assert_eq!(class(m, n), Verdict::Unknown, "{m}.{n}");
    }
    // torch.nn.Module pickled whole: Sequential.__new__ + BUILD of its __dict__
    let mut w = Writer::new(2);
    w.global("torch.nn.modules.container", "Sequential");
    w.empty_tuple();
    w.newobj();
    w.empty_dict();
    w.str("training");
    w.bool(true);
    w.setitem();
    w.build();
    let r = scan(&w.finish());
    assert_eq!(r.verdict(), Verdict::Unknown);
    let f = find(&r, "torch.nn.modules.container.Sequential");
    assert_eq!(f.usage, "called");
    assert_eq!(
        f.reason,
        "not on the allowlist: loading would import torch.nn.modules.container"
    );
}

#[test]
fn extension_code_is_unknown() {
    // EXT1 7, empty tuple, REDUCE
    let r = scan(b"\x80\x02\x82\x07)R.");
    assert_eq!(r.verdict(), Verdict::Unknown);
    let f = find(&r, "<extension code 7>");
    assert_eq!(
        (f.class, f.usage.as_str(), f.offset),
        (Verdict::Unknown, "called", 2)
    );
    assert_eq!(
        f.reason,
        "names a global through the copyreg extension registry"
    );
}

#[test]
fn report_verdict_is_the_max() {
    let mut r = ScanReport::default();
    assert_eq!(r.verdict(), Verdict::Safe);
    let mut w = Writer::new(2);
    w.global("collections", "OrderedDict");
    w.empty_tuple();
    w.reduce();
    r.merge(scan(&w.finish()));
    assert_eq!(r.verdict(), Verdict::Safe);
    let mut w = Writer::new(2);
    w.global("corpus_user_code", "Opt");
    r.merge(scan(&w.finish()));
    assert_eq!(r.verdict(), Verdict::Unknown);
    let mut w = Writer::new(2);
    call_str(&mut w, "runpy", "run_path", "/tmp/x.py");
    r.merge(scan(&w.finish()));
    assert_eq!(r.verdict(), Verdict::Dangerous);
    assert_eq!(r.findings.len(), 3);
    assert!(Verdict::Safe < Verdict::Unknown && Verdict::Unknown < Verdict::Dangerous);
    assert_eq!(Verdict::Dangerous.as_str(), "dangerous");
    assert_eq!(Verdict::Unknown.as_str(), "unknown");
    assert_eq!(Verdict::Safe.as_str(), "safe");
}

#[test]
fn repeats_collapse_to_first_offset_and_strongest_usage() {
    // [builtins.eval, builtins.eval("1")]: referenced at 2, called later
    let mut w = Writer::new(2);
    w.mark();
    w.global("builtins", "eval");
    call_str(&mut w, "builtins", "eval", "1");
    w.buf.push(b'l');
    let r = scan(&w.finish());
    assert_eq!(r.findings.len(), 1);
    let f = &r.findings[0];
    assert_eq!((f.offset, f.usage.as_str()), (3, "called"));
}

#[test]
fn torch_state_dict_is_safe() {
    // OrderedDict([("w", _rebuild_tensor_v2(persid(('storage', FloatStorage, '0', 'cpu',
    // 4)), 0, torch.Size? (2, 2), (2, 1), False, OrderedDict()))])
    let mut w = Writer::new(2);
    w.global("collections", "OrderedDict");
    w.empty_tuple();
    w.reduce();
    w.mark();
    w.str("w");
    w.global("torch._utils", "_rebuild_tensor_v2");
    w.mark();
    w.mark();
    w.str("storage");
    w.global("torch", "FloatStorage");
    w.str("0");
    w.str("cpu");
    w.int(4);
    w.tuple_from_mark();
    w.binpersid();
    w.int(0);
    w.int(2);
    w.int(2);
    w.tuple_n(2);
    w.int(2);
    w.int(1);
    w.tuple_n(2);
    w.bool(false);
    w.global("collections", "OrderedDict");
    w.empty_tuple();
    w.reduce();
    w.tuple_from_mark();
    w.reduce();
    w.setitems();
    let r = scan(&w.finish());
    assert_eq!(r.verdict(), Verdict::Safe, "{r:#?}");
    assert_eq!(r.findings.len(), 3);
    assert_eq!(find(&r, "torch.FloatStorage").usage, "argument");
    assert_eq!(find(&r, "torch._utils._rebuild_tensor_v2").usage, "called");
}

#[test]
fn allowlist_samples() {
    for (m, n) in [
        ("torch", "bfloat16"),
        ("torch", "float8_e4m3fn"),
        ("torch", "uint16"),
        ("torch", "Size"),
        ("torch", "device"),
        ("torch", "channels_last"),
        ("torch", "per_tensor_affine"),
        ("torch", "strided"),
        ("torch.cuda", "HalfStorage"),
        ("torch.storage", "UntypedStorage"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch._tensor", "_rebuild_from_type_v2"),
        ("torch.nn.parameter", "Parameter"),
        ("torch.serialization", "_get_layout"),
        (
            "torch.distributed.checkpoint.metadata",
            "TensorStorageMetadata",
        ),
        ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
        ("collections", "Counter"),
        ("builtins", "bytearray"),
        ("_codecs", "encode"),
        ("omegaconf.nodes", "AnyNode"),
        ("omegaconf.base", "ContainerMetadata"),
        ("argparse", "Namespace"),
        ("typing", "Any"),
        ("pytorch_lightning.utilities.parsing", "AttributeDict"),
        ("pathlib", "PosixPath"),
        ("datetime", "datetime"),
        ("operator", "getitem"),
    ] {
        assert_eq!(class(m, n), Verdict::Safe, "{m}.{n}");
    }
}

#[test]
fn dangerous_samples() {
    for (m, n) in [
        ("os", "system"),
        ("os.path", "join"),
        ("nt", "system"),
        ("subprocess", "check_output"),
        ("builtins", "exec"),
        ("builtins", "__import__"),
        ("builtins", "open"),
        ("importlib.machinery", "SourceFileLoader"),
        ("webbrowser", "open"),
        ("shutil", "rmtree"),
        ("socket", "create_connection"),
        ("pickle", "loads"),
        ("_pickle", "loads"),
        ("marshal", "loads"),
        ("torch.hub", "load"),
        ("torch.jit", "load"),
        ("torch", "load"),
        ("torch.serialization", "load"),
        ("torch.storage", "_load_from_bytes"),
        ("torch._C", "_jit_pass_inline"),
        ("functools", "partial"),
        ("operator", "attrgetter"),
        ("operator", "methodcaller"),
        ("types", "CodeType"),
        ("ctypes", "CDLL"),
        ("sys", "modules"),
        ("pkgutil", "resolve_name"),
        ("torch.utils.collect_env", "run"),
        ("torch.utils._config_module", "ConfigModule.load_config"),
        ("torch.utils.data.datapipes.utils.decoder", "basichandlers"),
        ("torch._dynamo.guards", "GuardBuilder.get"),
        (
            "torch.fx.experimental.symbolic_shapes",
            "ShapeEnv.evaluate_guards_expression",
        ),
    ] {
        assert_eq!(class(m, n), Verdict::Dangerous, "{m}.{n}");
    }
    // prefixes match whole module names only
    assert_eq!(class("osmosis", "Model"), Verdict::Unknown);
    assert_eq!(class("posixpath", "join"), Verdict::Unknown);
    assert_eq!(class("codebook.models", "VQ"), Verdict::Unknown);
    assert_eq!(class("operator", "itemgetter"), Verdict::Unknown);
}

#[test]
fn copyreg_newobj_is_not_safe() {
    assert_eq!(class("copyreg", "__newobj__"), Verdict::Unknown);
    assert_eq!(class("copy_reg", "__newobj_ex__"), Verdict::Unknown);
    assert_eq!(class("copyreg", "_reconstructor"), Verdict::Safe);
}

#[test]
fn dotted_names_are_never_safe() {
    // protocol 4 resolves dotted names with getattr, walking from an allowlisted object.
    assert_eq!(
        class("builtins", "object.__subclasses__"),
        Verdict::Dangerous
    );
    assert_eq!(
        class("torch", "serialization.os.system"),
        Verdict::Dangerous
    );
    assert_eq!(class("pathlib", "PosixPath.write_text"), Verdict::Dangerous);
    assert_eq!(
        class("numpy", "testing._private.utils.runstring"),
        Verdict::Dangerous
    );
    assert_eq!(
        class("collections", "OrderedDict.fromkeys"),
        Verdict::Unknown
    );
    assert_eq!(
        class("torch", "_utils._rebuild_tensor_v2"),
        Verdict::Unknown
    );
    assert_eq!(class("collections", "__builtins__"), Verdict::Dangerous);
    assert_eq!(class("mymodel", "Net.Config"), Verdict::Unknown);
}

#[test]
fn control_characters_in_names_are_escaped() {
    let mut w = Writer::new(4);
    w.global("evil\u{1b}[2J", "x");
    let r = scan(&w.finish());
    assert_eq!(r.findings.len(), 1);
    assert_eq!(r.findings[0].name, "evil\\u{1b}[2J.x");
    assert_eq!(r.findings[0].class, Verdict::Unknown);
    assert!(!r.findings[0].reason.contains('\u{1b}'));
}

#[test]
fn hand_built_arena_globals_are_reported() {
    let mut p = Pickle::new();
    let g = p.push(Value::Global(&ckpt_pickle::Global {
        module: "os".into(),
        name: "system".into(),
    }));
    p.set_root(g);
    let r = scan_pickle(&p, "x");
    assert_eq!(r.verdict(), Verdict::Dangerous);
    assert_eq!(r.findings[0].usage, "referenced");
}

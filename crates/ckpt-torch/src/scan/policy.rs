//! How a global is judged by its name alone: the dangerous list, then the allowlist, and
//! `unknown` for everything else (see the borderline decisions in the [`crate::scan`] docs).

use ckpt_pickle::normalize_module;

use super::pickle::escape_controls;
use super::report::Verdict;

/// Python 2 names mapped as Python 3 does, and numpy 2's `numpy._core` seen as numpy 1's
/// `numpy.core` (the same modules under another name).
fn canonical_module(module: &str) -> String {
    let m = normalize_module(module);
    if m == "numpy._core" {
        return "numpy.core".to_string();
    }
    match m.strip_prefix("numpy._core.") {
        Some(rest) => format!("numpy.core.{rest}"),
        None => m.to_string(),
    }
}

/// Classify one global by its name (module and name as written in the pickle).
pub fn classify_global(module: &str, name: &str) -> (Verdict, String) {
    let m = canonical_module(module);
    let full = format!("{m}.{name}");

    if let Some(reason) = dangerous_reason(&m, name, &full) {
        return (Verdict::Dangerous, reason.to_string());
    }
    // Dotted names are resolved attribute by attribute: never on the allowlist.
    if let Some(what) = safe_reason(&m, name).filter(|_| !name.contains('.')) {
        return (Verdict::Safe, format!("on the allowlist: {what}"));
    }
    (Verdict::Unknown, unknown_reason(module, &m, name))
}

fn unknown_reason(module_as_written: &str, m: &str, name: &str) -> String {
    if m == "copyreg" && (name == "__newobj__" || name == "__newobj_ex__") {
        return "not on the allowlist: calls __new__ on an arbitrary class".to_string();
    }
    if m == "builtins" {
        return format!("not on the allowlist: builtin `{name}` is not a plain data type");
    }
    if m == "__main__" {
        return "not on the allowlist: loading would need the saving script's own code (__main__)"
            .to_string();
    }
    if let Some((_, rest)) = name.split_once('.') {
        return format!(
            "not on the allowlist: loading would import {} and walk attributes `{rest}`",
            escape_controls(module_as_written)
        );
    }
    format!(
        "not on the allowlist: loading would import {}",
        escape_controls(module_as_written)
    )
}

/// True when `path` is `prefix` or inside it (`os` matches `os.system` and `os.path.join`, not
/// `osmosis.x`).
fn under(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('.'),
        None => false,
    }
}

pub(super) fn is_dunder(s: &str) -> bool {
    s.len() > 4 && s.starts_with("__") && s.ends_with("__")
}

const SHELL: &str = "executes shell commands";
const CODE: &str = "executes arbitrary code";
const IMPORTS: &str = "imports modules";
const ATTRS: &str = "reaches attributes";
const FILES: &str = "opens files";
const NET: &str = "opens network connections";
const NESTED: &str = "deserializes nested pickles that can run code";
const NATIVE: &str = "loads or calls native code";
const PROCS: &str = "starts processes or threads running arbitrary callables";
const CALLS: &str = "calls arbitrary functions";

/// Module prefixes and qualified names that are dangerous, matched with [`under`] against the
/// canonical `module.name`.
const DANGEROUS: &[(&str, &str)] = &[
    // commands
    ("os", SHELL),
    ("posix", SHELL),
    ("nt", SHELL),
    ("subprocess", SHELL),
    ("_posixsubprocess", SHELL),
    ("pty", SHELL),
    ("commands", SHELL),
    ("popen2", SHELL),
    ("platform.popen", SHELL),
    ("platform._syscmd_ver", SHELL),
    ("platform._syscmd_file", SHELL),
    ("platform._syscmd_uname", SHELL),
    ("uuid._get_command_stdout", SHELL),
    ("_osx_support._read_output", SHELL),
    ("_osx_support._find_build_tool", SHELL),
    ("pydoc.pipepager", SHELL),
    ("pydoc.tempfilepager", SHELL),
    ("pydoc.pager", SHELL),
    ("webbrowser", "opens a web browser (runs a program)"),
    ("asyncio", "spawns processes and opens connections"),
    ("multiprocessing", PROCS),
    ("threading", PROCS),
    ("_thread", PROCS),
    ("thread", PROCS),
    ("_winapi", PROCS),
    (
        "signal",
        "installs signal handlers that run arbitrary callables",
    ),
    // code
    ("builtins.eval", CODE),
    ("builtins.exec", CODE),
    ("builtins.execfile", CODE),
    ("builtins.compile", CODE),
    ("builtins.apply", CODE),
    ("builtins.breakpoint", CODE),
    ("builtins.input", CODE),
    ("builtins.raw_input", CODE),
    ("code", CODE),
    ("codeop", CODE),
    ("pdb", CODE),
    ("bdb", CODE),
    ("timeit", CODE),
    ("trace", CODE),
    ("profile", CODE),
    ("cProfile", CODE),
    ("doctest", CODE),
    ("idlelib", CODE),
    ("types.FunctionType", CODE),
    ("types.LambdaType", CODE),
    ("types.CodeType", CODE),
    ("types.MethodType", CODE),
    (
        "numpy.testing",
        "runs code (numpy.testing gadgets such as runstring)",
    ),
    ("numpy.f2py", "compiles and runs code"),
    ("numpy.distutils", "compiles and runs code"),
    ("distutils", "compiles and runs code"),
    ("setuptools", "compiles and runs code"),
    ("pip", "installs packages and runs their code"),
    ("ensurepip", "installs packages and runs their code"),
    ("venv", "creates environments and runs programs"),
    ("torch.jit", "loads or compiles TorchScript code"),
    ("torch.hub", "downloads and runs code"),
    (
        "torch.utils.cpp_extension",
        "compiles and loads native code",
    ),
    // torch internals that run code, commands or nested pickles (picklescan advisories
    // GHSA-vr7h-p6mm-wpmh, -4r9r-ch6f-vxmx, -86cj-95qr-2p4f, -f4x7-rfwp-v3xw, -f745-w6jp-hpxx,
    // -jhph-76pp-mggw, -h3qp-7fh3-f8h4, -vv6j-3g6g-2pvj)
    ("torch.utils.bottleneck", CODE),
    ("torch.utils.collect_env", SHELL),
    ("torch.utils._config_module", NESTED),
    ("torch.utils.data.datapipes.utils.decoder", NESTED),
    ("torch._dynamo", CODE),
    ("torch._inductor", CODE),
    ("torch.fx.experimental.symbolic_shapes", CODE),
    ("torch.fx.graph_module", CODE),
    (
        "torch.package",
        "imports code shipped inside a torch.package archive",
    ),
    ("torch.testing", CODE),
    ("torch.ops.load_library", NATIVE),
    ("torch._ops.load_library", NATIVE),
    ("torch.classes.load_library", NATIVE),
    // imports
    ("builtins.__import__", IMPORTS),
    ("builtins.reload", IMPORTS),
    ("importlib", IMPORTS),
    ("imp", IMPORTS),
    ("runpy", IMPORTS),
    ("zipimport", IMPORTS),
    ("pkgutil", IMPORTS),
    // attributes
    ("builtins.getattr", ATTRS),
    ("builtins.setattr", ATTRS),
    ("builtins.delattr", ATTRS),
    ("builtins.globals", ATTRS),
    ("builtins.locals", ATTRS),
    ("builtins.vars", ATTRS),
    ("operator.attrgetter", ATTRS),
    ("operator.methodcaller", ATTRS),
    ("_operator.attrgetter", ATTRS),
    ("_operator.methodcaller", ATTRS),
    ("sys", "reaches interpreter internals (sys.modules)"),
    // calls
    ("functools.partial", CALLS),
    ("functools.partialmethod", CALLS),
    ("functools.reduce", CALLS),
    ("_functools.partial", CALLS),
    ("_functools.reduce", CALLS),
    ("builtins.reduce", CALLS),
    // files
    ("builtins.open", FILES),
    ("builtins.file", FILES),
    ("io.open", FILES),
    ("io.open_code", FILES),
    ("io.FileIO", FILES),
    ("_io.open", FILES),
    ("_io.open_code", FILES),
    ("_io.FileIO", FILES),
    ("shutil", FILES),
    ("tempfile", FILES),
    ("fileinput", FILES),
    // network
    ("socket", NET),
    ("_socket", NET),
    ("socketserver", NET),
    ("SocketServer", NET),
    ("ssl", NET),
    ("http", NET),
    ("httplib", NET),
    ("urllib", NET),
    ("urllib2", NET),
    ("urllib3", NET),
    ("requests", NET),
    ("ftplib", NET),
    ("smtplib", NET),
    ("telnetlib", NET),
    ("poplib", NET),
    ("imaplib", NET),
    ("nntplib", NET),
    ("xmlrpc", NET),
    ("xmlrpclib", NET),
    // nested deserialization
    ("pickle", NESTED),
    ("_pickle", NESTED),
    ("cPickle", NESTED),
    ("marshal", NESTED),
    ("shelve", NESTED),
    ("dill", NESTED),
    ("cloudpickle", NESTED),
    ("joblib", NESTED),
    ("pandas.read_pickle", NESTED),
    ("numpy.load", NESTED),
    ("torch.load", NESTED),
    ("torch.save", FILES),
    ("torch.serialization.load", NESTED),
    ("torch.serialization._load", NESTED),
    ("torch.serialization._legacy_load", NESTED),
    ("torch.serialization.save", FILES),
    ("torch.serialization._save", FILES),
    ("torch.serialization._legacy_save", FILES),
    ("torch.storage._load_from_bytes", NESTED),
    // native code
    ("ctypes", NATIVE),
    ("_ctypes", NATIVE),
    ("cffi", NATIVE),
];

/// Parts of `torch._C` that are plain tensor operations (a pickled module may reference e.g.
/// `torch._C._nn.gelu`): unknown, like other code, not dangerous.
const TORCH_C_OPS: &[&str] = &[
    "torch._C._nn",
    "torch._C._VariableFunctions",
    "torch._C._special",
    "torch._C._linalg",
    "torch._C._fft",
    "torch._C._nested",
    "torch._C._sparse",
];

/// Attribute names that, reached through a dotted name, make it dangerous.
const DANGEROUS_PARTS: &[&str] = &[
    "os",
    "_os",
    "sys",
    "_sys",
    "posix",
    "nt",
    "subprocess",
    "builtins",
    "system",
    "popen",
    "spawn",
    "exec",
    "eval",
    "compile",
    "getattr",
    "setattr",
    "import_module",
    "load",
    "loads",
    "open",
    "write_text",
    "write_bytes",
    "read_text",
    "read_bytes",
    "unlink",
    "rmdir",
    "rmtree",
    "touch",
    "mkdir",
    "rename",
    "replace",
    "chmod",
    "symlink_to",
    "hardlink_to",
    "tofile",
];

fn dangerous_reason(m: &str, name: &str, full: &str) -> Option<&'static str> {
    for (prefix, reason) in DANGEROUS {
        if under(full, prefix) {
            return Some(reason);
        }
    }
    if under(full, "torch._C") && !TORCH_C_OPS.iter().any(|p| under(full, p)) {
        return Some("reaches torch internals (native bindings that load and run code)");
    }
    let mut parts = name.split('.');
    let first = parts.next().unwrap_or("");
    if is_dunder(first) && !(m == "copyreg" && (first == "__newobj__" || first == "__newobj_ex__"))
    {
        return Some("reaches interpreter internals (dunder attribute)");
    }
    for part in parts {
        if is_dunder(part) || DANGEROUS_PARTS.contains(&part) {
            return Some("reaches attributes through a dotted name");
        }
    }
    None
}

/// Storage classes, as `torch.<Name>` and `torch.cuda.<Name>`.
const STORAGES: &[&str] = &[
    "FloatStorage",
    "DoubleStorage",
    "HalfStorage",
    "BFloat16Storage",
    "LongStorage",
    "IntStorage",
    "ShortStorage",
    "CharStorage",
    "ByteStorage",
    "BoolStorage",
    "ComplexFloatStorage",
    "ComplexDoubleStorage",
    "ComplexHalfStorage",
    "QInt8Storage",
    "QUInt8Storage",
    "QInt32Storage",
    "QUInt4x2Storage",
    "QUInt2x4Storage",
    "UntypedStorage",
    "TypedStorage",
];

/// `torch.<dtype>` names beyond [`crate::DType`]'s table (sub-byte integer types, which have
/// no storage format of their own but can appear as values).
const EXTRA_DTYPES: &[&str] = &[
    "int1", "int2", "int3", "int4", "int5", "int6", "int7", "uint1", "uint2", "uint3", "uint4",
    "uint5", "uint6", "uint7",
];

const LAYOUTS: &[&str] = &[
    "strided",
    "sparse_coo",
    "sparse_csr",
    "sparse_csc",
    "sparse_bsr",
    "sparse_bsc",
    "_mkldnn",
    "jagged",
];

const MEMORY_FORMATS: &[&str] = &[
    "contiguous_format",
    "channels_last",
    "channels_last_3d",
    "preserve_format",
];

const QSCHEMES: &[&str] = &[
    "per_tensor_affine",
    "per_channel_affine",
    "per_tensor_symmetric",
    "per_channel_symmetric",
    "per_channel_affine_float_qparams",
];

const REBUILD: &[&str] = &[
    "_rebuild_tensor",
    "_rebuild_tensor_v2",
    "_rebuild_tensor_v3",
    "_rebuild_parameter",
    "_rebuild_parameter_with_state",
    "_rebuild_meta_tensor_no_storage",
    "_rebuild_device_tensor_from_numpy",
    "_rebuild_qtensor",
    "_rebuild_sparse_tensor",
    "_rebuild_nested_tensor",
    "_rebuild_wrapper_subclass",
    "_rebuild_from_type_v2",
];

/// The allowlist. `m` is the canonical module (`builtins`, `copyreg`, `numpy.core`), `name` is
/// undotted. Returns what the global is, for the reason text.
fn safe_reason(m: &str, name: &str) -> Option<&'static str> {
    let is = |list: &[&str]| list.contains(&name);
    let what = match m {
        "torch" if is(STORAGES) => "torch storage class",
        "torch" if is(EXTRA_DTYPES) || crate::DType::from_name(name).is_some() => "torch dtype",
        "torch" if is(LAYOUTS) => "torch layout",
        "torch" if is(MEMORY_FORMATS) => "torch memory format",
        "torch" if is(QSCHEMES) => "torch quantization scheme",
        "torch" if is(&["Size", "device", "Tensor"]) => "torch value type",
        "torch.cuda" if is(STORAGES) => "torch storage class",
        "torch.storage" if is(&["UntypedStorage", "TypedStorage", "_UntypedStorage"]) => {
            "torch storage class"
        }
        "torch.storage" if is(&["_TypedStorage"]) => "torch storage class",
        "torch._utils" if is(REBUILD) => "torch tensor rebuild function",
        "torch._tensor" if is(&["_rebuild_from_type_v2", "_rebuild_from_type"]) => {
            "torch tensor rebuild function"
        }
        "torch.nn.parameter" if is(&["Parameter"]) => "torch parameter",
        "torch.serialization" if is(&["_get_layout"]) => "torch layout lookup",
        "torch.distributed.checkpoint.metadata"
            if is(&[
                "Metadata",
                "TensorStorageMetadata",
                "BytesStorageMetadata",
                "ChunkStorageMetadata",
                "TensorProperties",
                "MetadataIndex",
                "StorageMeta",
                "_MEM_FORMAT_ENCODING",
            ]) =>
        {
            "torch.distributed.checkpoint metadata type"
        }
        "torch.distributed.checkpoint.filesystem" if is(&["_StorageInfo"]) => {
            "torch.distributed.checkpoint metadata type"
        }
        "collections" if is(&["OrderedDict", "defaultdict", "Counter", "deque"]) => {
            "collections container"
        }
        "builtins"
            if is(&[
                "set",
                "frozenset",
                "bytearray",
                "bytes",
                "complex",
                "slice",
                "range",
                "xrange",
                "dict",
                "list",
                "tuple",
                "int",
                "long",
                "float",
                "str",
                "unicode",
                "basestring",
                "bool",
                "object",
                "Ellipsis",
                "NotImplemented",
            ]) =>
        {
            "builtin data type"
        }
        "copyreg" if is(&["_reconstructor"]) => "copyreg object reconstructor",
        "_codecs" if is(&["encode"]) => "bytes decoding (protocol < 3)",
        "operator" | "_operator" if is(&["getitem"]) => "item lookup (typing generics)",
        "numpy.core.multiarray" if is(&["_reconstruct", "scalar"]) => "numpy reconstruction",
        "numpy.core.numeric" if is(&["_frombuffer"]) => "numpy reconstruction",
        "numpy" if is(&["ndarray", "dtype"]) => "numpy array type",
        "numpy.dtypes" if name.ends_with("DType") && name.len() > 5 => "numpy dtype class",
        "omegaconf.dictconfig" if is(&["DictConfig"]) => "OmegaConf container",
        "omegaconf.listconfig" if is(&["ListConfig"]) => "OmegaConf container",
        "omegaconf.base" if is(&["ContainerMetadata", "Metadata"]) => "OmegaConf metadata",
        "omegaconf.nodes"
            if is(&[
                "AnyNode",
                "StringNode",
                "IntegerNode",
                "FloatNode",
                "BooleanNode",
                "EnumNode",
                "PathNode",
                "BytesNode",
                "ValueNode",
                "InterpolationResultNode",
            ]) =>
        {
            "OmegaConf node"
        }
        "argparse" if is(&["Namespace"]) => "argparse.Namespace",
        "typing" if is(&["Any", "Dict", "List", "Tuple", "Optional", "Union"]) => {
            "typing annotation"
        }
        "lightning.fabric.utilities.data"
        | "lightning_fabric.utilities.data"
        | "lightning.pytorch.utilities.parsing"
        | "pytorch_lightning.utilities.parsing"
            if is(&["AttributeDict"]) =>
        {
            "Lightning AttributeDict"
        }
        "pathlib" | "pathlib._local"
            if is(&[
                "PosixPath",
                "WindowsPath",
                "PurePosixPath",
                "PureWindowsPath",
            ]) =>
        {
            "path value"
        }
        "datetime" if is(&["datetime", "date", "time", "timedelta", "timezone"]) => {
            "datetime value"
        }
        _ => return None,
    };
    Some(what)
}

//! A static security scan of decoded pickles: which globals would `pickle.load` import, and
//! what would that let the file do?
//!
//! Nothing here runs or imports anything: the verdict comes from the *names* of the globals a
//! pickle references (GLOBAL, STACK_GLOBAL, INST, and EXT1/2/4 extension codes) and from how
//! the pickle uses them (called by REDUCE/NEWOBJ/NEWOBJ_EX/INST/OBJ, passed as an argument to
//! such a call, or merely referenced).
//!
//! Classification is allowlist first: a global is [`Verdict::Safe`] only when it is on the
//! allowlist below (torch rebuild functions, storages and dtypes, collections, numpy array
//! reconstruction, OmegaConf node classes, `argparse.Namespace`, a few builtins …). A global is
//! [`Verdict::Dangerous`] when it executes commands or code, imports modules, reaches
//! attributes, opens files or sockets, or deserializes nested pickles. Everything else is
//! [`Verdict::Unknown`]: loading it would import and run code from that module (a user's
//! class, a pickled `nn.Module`, a transformers model).
//!
//! Borderline decisions (see also the tests):
//! - `copyreg._reconstructor` is safe as a name: the classes it is given are globals and are
//!   classified on their own. `copyreg.__newobj__`/`__newobj_ex__` are unknown: they call
//!   `cls.__new__` on whatever they are given, and pickle's own writer never names them for
//!   protocol 2+ (it emits NEWOBJ), so a pickle that does is unusual.
//! - `functools.partial`/`reduce` are dangerous: generic call wrappers that let a pickle call
//!   any callable it can name or build.
//! - `operator.attrgetter`/`methodcaller` are dangerous (they reach attributes);
//!   `operator.getitem` is safe (it is how `typing.Dict[str, int]` pickles, and it can only
//!   index values built from allowlisted globals); `operator.itemgetter` is unknown.
//! - `torch.jit`, `torch.hub`, `torch.utils.cpp_extension`, `torch.load`/`torch.save`,
//!   `torch.serialization.load`/`save`, `torch.storage._load_from_bytes` and `torch._C` (except
//!   its pure tensor-op namespaces) are dangerous.
//! - `pathlib` path classes are safe (DCP metadata records them; constructing a path touches no
//!   file); their methods named through a dotted name (`PosixPath.write_text`) are not.
//! - A dotted name (protocol 4 walks `getattr` along it) is never safe; it is dangerous when a
//!   part is a dunder or names something dangerous (`object.__subclasses__`,
//!   `serialization.os.system`). Any dunder name other than `copyreg.__newobj__` is dangerous.
//! - `posixpath`/`ntpath` are unknown (no code execution of their own).

use std::collections::HashMap;

use ckpt_pickle::{Pickle, Value, ValueId, normalize_module};

/// Verdict order matters: Safe < Unknown < Dangerous (the file's verdict is the max).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Safe,
    Unknown,
    Dangerous,
}

impl Verdict {
    /// `"safe"`, `"unknown"` or `"dangerous"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Safe => "safe",
            Verdict::Unknown => "unknown",
            Verdict::Dangerous => "dangerous",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One global (or extension code) a pickle references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `module.name` as written in the pickle (not normalized: `__builtin__.set` stays so).
    /// Control characters are escaped (`\u{1b}`) so a name cannot drive a terminal.
    pub name: String,
    pub class: Verdict,
    /// Byte offset of the (first) opcode naming it in its pickle.
    pub offset: u64,
    /// Which pickle inside the container (e.g. `best/data.pkl`).
    pub entry: String,
    /// `"called"` (callee of REDUCE/NEWOBJ/NEWOBJ_EX/INST/OBJ), `"argument"` (inside the
    /// args/kwargs/state/items of a call) or `"referenced"`; the strongest over all its uses.
    pub usage: &'static str,
    /// One short reason.
    pub reason: String,
}

/// The findings of one or more pickles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    pub findings: Vec<Finding>,
}

impl ScanReport {
    /// The worst class over all findings; `Safe` when there are none.
    pub fn verdict(&self) -> Verdict {
        self.findings
            .iter()
            .map(|f| f.class)
            .max()
            .unwrap_or(Verdict::Safe)
    }

    /// Append another pickle's findings (e.g. the pickles of a legacy stream).
    pub fn merge(&mut self, other: ScanReport) {
        self.findings.extend(other.findings);
    }
}

const CALLED: u8 = 2;
const ARGUMENT: u8 = 1;
const REFERENCED: u8 = 0;

fn usage_str(rank: u8) -> &'static str {
    match rank {
        CALLED => "called",
        ARGUMENT => "argument",
        _ => "referenced",
    }
}

/// Scan one decoded pickle. Each distinct name is reported once, with the offset of its first
/// reference and its strongest usage ("called" > "argument" > "referenced"); findings are in
/// stream order.
pub fn scan_pickle(p: &Pickle, entry: &str) -> ScanReport {
    let usage = usages(p);
    let rank_of = |name: &str| usage.get(name).copied().unwrap_or(REFERENCED);

    // name -> index in `findings`
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut findings: Vec<Finding> = Vec::new();
    // `offset` is None for a value with no recorded site (hand-built arenas).
    let mut add = |name: String, offset: Option<u64>, classify: &dyn Fn() -> (Verdict, String)| {
        if let Some(&i) = seen.get(&name) {
            if let (Some(f), Some(offset)) = (findings.get_mut(i), offset) {
                f.offset = f.offset.min(offset);
            }
            return;
        }
        let offset = offset.unwrap_or(0);
        let (class, reason) = classify();
        seen.insert(name.clone(), findings.len());
        findings.push(Finding {
            name: escape_controls(&name),
            class,
            offset,
            entry: entry.to_string(),
            usage: usage_str(rank_of(&name)),
            reason,
        });
    };

    for site in &p.globals {
        if let Value::Global(g) = p.get(site.id) {
            let name = format!("{}.{}", g.module, g.name);
            add(name, Some(site.offset), &|| {
                classify_global(&g.module, &g.name)
            });
        }
    }
    for &(code, offset) in &p.extensions {
        add(extension_name(code), Some(offset), &|| {
            classify_extension(code)
        });
    }
    // Globals present in the arena but not recorded as sites (hand-built arenas): still report.
    for v in p.values() {
        if let Value::Global(g) = v {
            let name = format!("{}.{}", g.module, g.name);
            add(name, None, &|| classify_global(&g.module, &g.name));
        }
    }

    findings.sort_by_key(|f| f.offset);
    ScanReport { findings }
}

fn extension_name(code: u32) -> String {
    format!("<extension code {code}>")
}

fn classify_extension(_code: u32) -> (Verdict, String) {
    (
        Verdict::Unknown,
        "names a global through the copyreg extension registry".to_string(),
    )
}

/// The strongest usage of each name (as written), from one linear pass over the arena:
/// callees of calls are "called"; anything reachable from a call's args, kwargs, BUILD state
/// or SETITEMS/APPENDS items (without entering nested calls, whose parts are visited as calls
/// of their own) is "argument".
fn usages(p: &Pickle) -> HashMap<String, u8> {
    let mut usage: HashMap<String, u8> = HashMap::new();
    let bump = |usage: &mut HashMap<String, u8>, id: ValueId, rank: u8| {
        let name = match p.get(id) {
            Value::Global(g) => format!("{}.{}", g.module, g.name),
            Value::Extension(code) => extension_name(*code),
            _ => return,
        };
        let slot = usage.entry(name).or_insert(rank);
        *slot = (*slot).max(rank);
    };

    let mut visited = vec![false; p.len()];
    let mut work: Vec<ValueId> = Vec::new();
    for v in p.values() {
        let Value::Object(o) = v else { continue };
        bump(&mut usage, o.callee, CALLED);
        work.push(o.args);
        work.extend(o.kwargs);
        work.extend(o.state);
        for (k, v) in &o.dict_items {
            work.push(*k);
            work.push(*v);
        }
        work.extend(o.list_items.iter().copied());
    }
    while let Some(id) = work.pop() {
        match visited.get_mut(id.index()) {
            Some(seen) if !*seen => *seen = true,
            _ => continue,
        }
        match p.get(id) {
            Value::Global(_) | Value::Extension(_) => bump(&mut usage, id, ARGUMENT),
            Value::Tuple(items) | Value::List(items) | Value::Set(items) => {
                work.extend(items.iter().copied())
            }
            Value::FrozenSet(items) => work.extend(items.iter().copied()),
            Value::Dict(items) => {
                for (k, v) in items {
                    work.push(*k);
                    work.push(*v);
                }
            }
            Value::PersId(inner) => work.push(*inner),
            // A nested call's callee is "called" and its parts are roots of their own.
            _ => {}
        }
    }
    usage
}

fn escape_controls(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

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

fn is_dunder(s: &str) -> bool {
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

// ------------------------------------------------------------------ TorchScript archives
//
// `torch.load` hands a zip with `constants.pkl` to `torch.jit.load`, whose C++ unpickler
// (torch/csrc/jit/serialization/unpickler.cpp) imports nothing from Python: it knows a fixed
// set of names (tensor rebuilds, storages, OrderedDict, device, complex, and the
// `torch.jit._pickle` tags below) and resolves every other name as a class compiled from the
// archive's own `code/`. Inside such an archive, then, the tags only rebuild lists and
// `__torch__.*` names are the archive's own classes, not imports. What does run is the
// TorchScript code itself: `torch.jit.load` compiles it and runs any class's `__setstate__`
// while loading, and the model runs its methods when used; TorchScript can call any registered
// torch operator. ckpt does not judge that code, so a TorchScript archive is never `safe`: one
// `<TorchScript code>` finding (`unknown`) says what loading it would run. Everything else
// (e.g. `os.system` written into `data.pkl`) keeps its ordinary verdict.

/// The list and type tags of `torch/jit/_pickle.py`: each returns its first argument.
const TORCHSCRIPT_TAGS: &[&str] = &[
    "build_intlist",
    "build_tensorlist",
    "build_doublelist",
    "build_boollist",
    "build_tensor_from_id",
    "restore_type_tag",
];

/// How a global read from a TorchScript archive's pickles is judged, when that differs from
/// [`classify_global`]: `None` for every other name.
pub fn classify_torchscript_global(module: &str, name: &str) -> Option<(Verdict, String)> {
    if name.contains('.') || is_dunder(name) {
        return None;
    }
    if module == "torch.jit._pickle" && TORCHSCRIPT_TAGS.contains(&name) {
        return Some((
            Verdict::Safe,
            "TorchScript list/type tag: returns its argument (torch.jit._pickle)".to_string(),
        ));
    }
    if module == "__main__" && (name == "TensorID" || name == "IntList") {
        return Some((
            Verdict::Safe,
            "legacy TorchScript tag, known to torch.jit.load's unpickler".to_string(),
        ));
    }
    if module == "__torch__.torch.classes" || module.starts_with("__torch__.torch.classes.") {
        return Some((
            Verdict::Safe,
            "TorchScript custom class registered by native code (torch.classes; rebuilt by its native __setstate__, not imported from Python)"
                .to_string(),
        ));
    }
    if module == "__torch__" || module.starts_with("__torch__.") {
        return Some((
            Verdict::Safe,
            "class compiled from this archive's TorchScript code (not imported from Python)"
                .to_string(),
        ));
    }
    None
}

/// Judge the findings of a TorchScript archive's pickles as `torch.jit.load` reads them, and add
/// the `<TorchScript code>` finding. `code_entry` names the code folder (`model/code/`);
/// `code_files` and `setstate_classes` say what it holds.
pub fn apply_torchscript(
    report: &mut ScanReport,
    code_entry: &str,
    code_files: usize,
    setstate_classes: &[String],
) {
    for f in &mut report.findings {
        if let Some((module, name)) = f.name.rsplit_once('.')
            && let Some((class, reason)) = classify_torchscript_global(module, name)
        {
            f.class = class;
            f.reason = reason;
        }
    }
    let plural = if code_files == 1 { "" } else { "s" };
    let (usage, reason) = if setstate_classes.is_empty() {
        (
            "referenced",
            format!(
                "torch.load refuses this archive under weights_only=True and otherwise hands it to torch.jit.load, which compiles its TorchScript code ({code_files} file{plural}); the model runs it when called, and it can call any torch operator. ckpt reads the weights as data and never runs code"
            ),
        )
    } else {
        (
            "called",
            format!(
                "torch.load refuses this archive under weights_only=True and otherwise hands it to torch.jit.load, which compiles its TorchScript code ({code_files} file{plural}) and runs the __setstate__ of {} while loading; it can call any torch operator. ckpt reads the weights as data and never runs code",
                setstate_classes.join(", ")
            ),
        )
    };
    report.findings.push(Finding {
        name: "<TorchScript code>".to_string(),
        class: Verdict::Unknown,
        offset: 0,
        entry: code_entry.to_string(),
        usage,
        reason,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use ckpt_pickle::decode;
    use ckpt_pickle::write::Writer;

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
        assert_eq!((g.class, g.usage), (Verdict::Dangerous, "called"));
        assert_eq!(g.reason, "reaches attributes");
        let o = find(&r, "collections.OrderedDict");
        assert_eq!((o.class, o.usage), (Verdict::Safe, "argument"));
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
        assert_eq!((f.class, f.usage), (Verdict::Dangerous, "called"));
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
        assert_eq!((f.class, f.usage), (Verdict::Dangerous, "called"));
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
        assert_eq!((f.class, f.usage), (Verdict::Dangerous, "argument"));
        assert_eq!(find(&r, "collections.defaultdict").class, Verdict::Safe);
    }

    #[test]
    fn bare_reference_is_referenced() {
        let mut w = Writer::new(2);
        w.global("builtins", "eval");
        let r = scan(&w.finish());
        let f = find(&r, "builtins.eval");
        assert_eq!((f.class, f.usage), (Verdict::Dangerous, "referenced"));
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
        assert_eq!((f.class, f.usage), (Verdict::Safe, "called"));
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
            (f.class, f.usage, f.offset),
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
        assert_eq!((f.offset, f.usage), (3, "called"));
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
}

//! TorchScript archives (`torch.jit.save`): a format of their own inside torch's zip.
//!
//! An archive holds `<root>/data.pkl` (the module tree: objects of `__torch__.*` classes, their
//! attributes in slot order, tensors as in `torch.save`), `<root>/constants.pkl` (+
//! `<root>/constants/<key>` tensors: values the code refers to as `CONSTANTS.cN`),
//! `<root>/code/**.py` (the TorchScript source of every class, with `.debug_pkl` source maps),
//! `version`, `byteorder` and `.data/serialization_id`; traced modules add `traced_inputs.pkl`.
//! `torch.load` recognizes an archive by its `constants.pkl` record
//! (`torch.serialization._is_torchscript_zip`), refuses it under `weights_only=True`, and
//! otherwise hands it to `torch.jit.load`, which returns a `torch.jit._script.RecursiveScriptModule`.
//!
//! `torch.jit.load` does not use Python's pickle: its C++ unpickler
//! (`torch/csrc/jit/serialization/unpickler.cpp`) knows a fixed set of globals (tensor rebuild
//! functions, storage types, `collections.OrderedDict`, `torch.device`, `builtins.complex`, the
//! `torch.jit._pickle.build_*`/`restore_type_tag` list and type tags, which return their
//! argument) and resolves every other name as a class compiled from the archive's own `code/`
//! (`__torch__.*`). Nothing is imported from Python. But it *compiles and runs* that code: a
//! class's TorchScript `__setstate__` runs while loading, `forward` and the other methods when
//! the model is used, and TorchScript can call any registered torch operator. ckpt reads the
//! archive as data (it never runs the code) and says so in `scan`.
//!
//! Which attributes are parameters and which are buffers is not in the pickle: the class
//! definitions in `code/` list them (`__parameters__ = ["weight", "bias", ]`, `__buffers__ =
//! [...]`). A module's state dict is then what `torch.jit.load(f).state_dict()` returns: per
//! module, depth first, its parameters, then its buffers (TorchScript keeps no "persistent"
//! flag, so every buffer is there), then its submodules, in attribute-slot order. A class with
//! its own `__setstate__` pickles its `__getstate__` result instead of its attributes; when
//! that `__setstate__` only unpacks the state (`self.weight = (state)[0]`) its source is read as
//! a map from attributes to places in the state ([`setstate`]), never run.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::container::{Checkpoint, Options, StorageIndex};
use crate::doc::{Doc, Node, NodeId, ObjectNode, PersIdStyle, View};
use crate::error::Result;

pub mod setstate;

/// Most bytes of `code/` read (inflated) to learn the class table; past it the rest is listed,
/// unread. Real archives hold kilobytes to a few megabytes of code.
const MAX_CODE_BYTES: u64 = 16 << 20;

/// The class `torch.jit.load` returns for an archive (what `dump` shows at the top).
pub const RECURSIVE_SCRIPT_MODULE: &str = "torch.jit._script.RecursiveScriptModule";

/// One TorchScript class, from its definition in `code/`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ScriptClass {
    /// `__torch__.torch.nn.modules.conv.Conv2d`, as `data.pkl` names it.
    pub qualname: String,
    /// Derives from `Module` (not a plain TorchScript class or a named tuple).
    pub is_module: bool,
    pub parameters: Vec<String>,
    pub buffers: Vec<String>,
    /// Defines `__setstate__`: `torch.jit.load` runs it while loading.
    pub has_setstate: bool,
    /// What its `__setstate__` does, when all it does is move values of the state into
    /// attributes (see [`setstate`]); `None` without one or when it does more.
    pub setstate: Option<Vec<setstate::Assign>>,
    /// The attribute slots its code declares (`name : Type`, `__annotations__["0"] = Type`),
    /// in slot order: name and type as printed.
    pub attributes: Vec<(String, String)>,
}

/// Every class the archive's code defines, by qualified name.
#[derive(Debug, Clone, Default)]
pub struct ScriptClasses {
    by_name: HashMap<String, ScriptClass>,
}

impl ScriptClasses {
    pub fn get(&self, qualname: &str) -> Option<&ScriptClass> {
        self.by_name.get(qualname)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Classes sorted by name.
    pub fn sorted(&self) -> Vec<&ScriptClass> {
        let mut v: Vec<&ScriptClass> = self.by_name.values().collect();
        v.sort_by(|a, b| a.qualname.cmp(&b.qualname));
        v
    }
}

/// A file under `code/`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CodeFile {
    /// Path inside the archive, without the root folder (`code/__torch__.py`).
    pub name: String,
    pub bytes: u64,
}

/// What a TorchScript archive holds besides `data.pkl`.
#[derive(Debug, Clone)]
pub struct TorchScript {
    /// `code/**.py`, sorted by name.
    pub code_files: Vec<CodeFile>,
    /// `.debug_pkl` source maps (not needed to load; counted).
    pub debug_files: usize,
    pub classes: Arc<ScriptClasses>,
    /// `constants.pkl`, decoded (a tuple of the values `CONSTANTS.cN` names). Its tensors live
    /// under `<root>/constants/`, not `<root>/data/`: shapes and dtypes only, never read.
    pub constants: Option<Doc>,
    /// `<root>/constants.pkl`.
    pub constants_entry: String,
    /// Other pickles in the archive (`traced_inputs.pkl`, `extra/…`), full entry names.
    pub other_pickles: Vec<String>,
    /// `extra/…`: the `_extra_files` given to `torch.jit.save` (model cards, configs),
    /// names without the root folder and stored sizes. Never read.
    pub extra_files: Vec<CodeFile>,
    /// Problems reading the code or constants (the archive still opens).
    pub warnings: Vec<String>,
}

/// A module in the tree, depth first.
#[derive(Debug, Clone)]
pub struct ScriptModule {
    /// Dotted path from the root (`""` for the root, `blocks.0.proj`).
    pub path: String,
    pub node: NodeId,
    pub class: String,
    pub parameters: Vec<(String, NodeId)>,
    pub buffers: Vec<(String, NodeId)>,
    /// `false` when its class has its own `__setstate__` (it pickles whatever `__getstate__`
    /// returned) that does more than unpack that state into attributes (see [`setstate`]):
    /// its parameters, buffers and submodules are computed by TorchScript code at load time,
    /// which ckpt does not run.
    pub resolved: bool,
}

/// Is `root/constants.pkl` in the archive? (torch's own test for a TorchScript archive.)
pub(crate) fn is_archive(entries: &HashMap<String, (u64, u64, u16)>, prefix: &str) -> bool {
    entries.contains_key(&format!("{prefix}constants.pkl"))
}

/// Read the class table and constants of the archive `ck` was opened from, and attach the
/// class table to `ck.doc` (with the synthesized `RecursiveScriptModule` as what `torch.load`
/// returns).
pub(crate) fn attach(ck: &mut Checkpoint, prefix: &str, opts: &Options) -> Result<()> {
    let StorageIndex::Zip { entries, .. } = &ck.storages else {
        return Ok(());
    };
    if !is_archive(entries, prefix) {
        return Ok(());
    }
    let mut names: Vec<String> = entries
        .keys()
        .filter(|n| n.starts_with(prefix))
        .cloned()
        .collect();
    names.sort();
    if ck.wants_hints() {
        // The code files and the constants are read next: one round for a remote archive.
        let code_prefix = format!("{prefix}code/");
        let constants = format!("{prefix}constants.pkl");
        let wanted = names
            .iter()
            .filter(|n| n.starts_with(&code_prefix) && n.ends_with(".py"))
            .map(String::as_str)
            .chain([constants.as_str()]);
        let hint = ck.entry_spans(wanted, 0, MAX_CODE_BYTES);
        ck.prefetch(&hint);
    }
    let mut warnings = Vec::new();
    let mut code_files = Vec::new();
    let mut debug_files = 0;
    let mut classes = ScriptClasses::default();
    let mut read_budget = MAX_CODE_BYTES;
    let code_prefix = format!("{prefix}code/");
    let mut other_pickles = Vec::new();
    let mut extra_files = Vec::new();
    for name in &names {
        let rel = &name[prefix.len()..];
        if let Some(path) = name.strip_prefix(&code_prefix) {
            if path.ends_with(".debug_pkl") {
                debug_files += 1;
                continue;
            }
            let Some(module_path) = path.strip_suffix(".py") else {
                continue;
            };
            // Compressed size until the file is read (then its real size).
            let mut bytes = entries.get(name).map_or(0, |e| e.1);
            if read_budget == 0 {
                code_files.push(CodeFile {
                    name: rel.to_owned(),
                    bytes,
                });
                continue;
            }
            let module = module_path.replace('/', ".");
            let mut parser = CodeParser::new(&module);
            match ck.entry_raw(name, read_budget).map(|raw| {
                raw.map(|(raw, deflated)| read_code(&raw, deflated, read_budget, &mut parser))
            }) {
                Ok(Some(Ok(n))) => {
                    bytes = n;
                    read_budget = read_budget.saturating_sub(n);
                    parser.finish(&mut classes);
                }
                Ok(Some(Err(CodeError::Budget))) | Ok(None) => {
                    warnings.push(format!(
                        "TorchScript code is read up to {} MiB in all; {name} and the files after it were not read, so parameters of classes defined there are not known",
                        MAX_CODE_BYTES >> 20
                    ));
                    read_budget = 0;
                }
                Ok(Some(Err(CodeError::Inflate(detail)))) => {
                    warnings.push(format!("{name} does not inflate: {detail}"));
                }
                Err(e) => warnings.push(e.to_string()),
            }
            code_files.push(CodeFile {
                name: rel.to_owned(),
                bytes,
            });
        } else if rel.ends_with(".pkl") && rel != "data.pkl" && rel != "constants.pkl" {
            other_pickles.push(name.clone());
        } else if rel.starts_with("extra/") {
            extra_files.push(CodeFile {
                name: rel.to_owned(),
                bytes: entries.get(name).map_or(0, |e| e.1),
            });
        }
    }
    let constants_entry = format!("{prefix}constants.pkl");
    let constants = match ck.entry_bytes(&constants_entry, opts.max_pickle_bytes) {
        Ok(bytes) => match ckpt_pickle::decode_with(&bytes, &opts.limits) {
            Ok(p) if opts.classify => match Doc::classify(p, PersIdStyle::Zip) {
                Ok(d) => Some(d),
                Err(e) => {
                    warnings.push(format!(
                        "{constants_entry}: malformed {} at byte {}: {}",
                        e.what, e.offset, e.detail
                    ));
                    None
                }
            },
            Ok(p) => Some(Doc::unclassified(p)),
            Err(e) => {
                warnings.push(format!("{constants_entry}: {e}"));
                None
            }
        },
        Err(e) => {
            warnings.push(e.to_string());
            None
        }
    };
    let classes = Arc::new(classes);
    ck.doc.set_script(classes.clone());
    if opts.classify {
        synthesize_loaded_root(&mut ck.doc);
    }
    ck.torchscript = Some(Box::new(TorchScript {
        code_files,
        debug_files,
        classes,
        constants,
        constants_entry,
        other_pickles,
        extra_files,
        warnings,
    }));
    Ok(())
}

/// Why a code file was not (completely) read.
enum CodeError {
    /// It inflates past the remaining budget.
    Budget,
    Inflate(String),
}

/// Longest line kept whole (a `__parameters__` list of a module with thousands of parameters
/// fits); the rest of a longer line is skipped.
const MAX_LINE: usize = 1 << 20;

/// Feed a code file (deflated or stored) to `parser` line by line, inflating 64 KiB at a time,
/// so memory stays small whatever the file inflates to. Returns the inflated size.
fn read_code(
    raw: &[u8],
    deflated: bool,
    budget: u64,
    parser: &mut CodeParser,
) -> Result<u64, CodeError> {
    let mut lines = LineSplitter::default();
    if !deflated {
        if raw.len() as u64 > budget {
            return Err(CodeError::Budget);
        }
        lines.feed(raw, parser);
        lines.end(parser);
        return Ok(raw.len() as u64);
    }
    use miniz_oxide::inflate::stream::{InflateState, inflate};
    use miniz_oxide::{DataFormat, MZFlush, MZStatus};
    let mut state = InflateState::new_boxed(DataFormat::Raw);
    let mut out = vec![0u8; 64 << 10];
    let mut input = raw;
    let mut total: u64 = 0;
    loop {
        let r = inflate(&mut state, input, &mut out, MZFlush::None);
        input = input.get(r.bytes_consumed..).unwrap_or(&[]);
        total = total.saturating_add(r.bytes_written as u64);
        if total > budget {
            return Err(CodeError::Budget);
        }
        lines.feed(out.get(..r.bytes_written).unwrap_or(&[]), parser);
        match r.status {
            Ok(MZStatus::StreamEnd) => break,
            Ok(_) if r.bytes_consumed == 0 && r.bytes_written == 0 => {
                return Err(CodeError::Inflate("the deflate stream ends early".into()));
            }
            Ok(_) => {}
            Err(e) => return Err(CodeError::Inflate(format!("{e:?}"))),
        }
    }
    lines.end(parser);
    Ok(total)
}

/// Splits a byte stream into lines for [`CodeParser`], keeping at most [`MAX_LINE`] bytes of
/// any one line.
#[derive(Default)]
struct LineSplitter {
    line: Vec<u8>,
}

impl LineSplitter {
    fn feed(&mut self, mut chunk: &[u8], parser: &mut CodeParser) {
        while let Some(i) = chunk.iter().position(|b| *b == b'\n') {
            self.push(&chunk[..i]);
            parser.line(&String::from_utf8_lossy(&self.line));
            self.line.clear();
            chunk = &chunk[i + 1..];
        }
        self.push(chunk);
    }

    fn push(&mut self, part: &[u8]) {
        let room = MAX_LINE.saturating_sub(self.line.len());
        self.line.extend_from_slice(&part[..part.len().min(room)]);
    }

    fn end(&mut self, parser: &mut CodeParser) {
        if !self.line.is_empty() {
            parser.line(&String::from_utf8_lossy(&self.line));
            self.line.clear();
        }
    }
}

/// Learns the classes one `code/` file defines, a line at a time. `module` is the file's
/// dotted path (`__torch__.torch.nn.modules.conv`); a class `Conv2d` in it is
/// `<module>.Conv2d`.
///
/// The files are what torch's Python printer writes: `class Name(Base):` at column 0, then
/// indented `__parameters__ = ["a", "b", ]`, `__buffers__ = [...]`, attribute annotations and
/// `def` lines. Only those lines are read; everything else is skipped.
struct CodeParser {
    module: String,
    current: Option<ScriptClass>,
    done: Vec<ScriptClass>,
    /// Inside the current class's `def __setstate__(`.
    setstate: Option<setstate::Collector>,
    /// Inside some other method of the current class (its body is skipped).
    in_def: bool,
}

impl CodeParser {
    fn new(module: &str) -> CodeParser {
        CodeParser {
            module: module.to_owned(),
            current: None,
            done: Vec::new(),
            setstate: None,
            in_def: false,
        }
    }

    /// Close the class being read (and its `__setstate__`, if that is being read).
    fn end_class(&mut self) {
        self.end_setstate();
        self.in_def = false;
        self.done.extend(self.current.take());
    }

    fn end_setstate(&mut self) {
        if let Some(c) = self.setstate.take() {
            let plan = c.finish();
            if let Some(cur) = self.current.as_mut() {
                cur.setstate = plan;
            }
        }
    }

    fn line(&mut self, line: &str) {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(c) = self.setstate.as_mut() {
            if c.line(line) {
                return;
            }
            self.end_setstate();
        }
        if let Some(rest) = line.strip_prefix("class ") {
            self.end_class();
            let name_end = rest.find(['(', ':']).unwrap_or(rest.len());
            let name = rest[..name_end].trim();
            if name.is_empty() {
                return;
            }
            let base = rest[name_end..]
                .strip_prefix('(')
                .and_then(|b| b.split(')').next())
                .unwrap_or("")
                .trim();
            self.current = Some(ScriptClass {
                qualname: format!("{}.{name}", self.module),
                is_module: base == "Module",
                parameters: Vec::new(),
                buffers: Vec::new(),
                has_setstate: false,
                setstate: None,
                attributes: Vec::new(),
            });
            return;
        }
        if !line.starts_with(' ') && !line.trim().is_empty() {
            // A top-level `def` (a free function) ends the class.
            self.end_class();
            return;
        }
        let Some(c) = self.current.as_mut() else {
            return;
        };
        let t = line.trim_start();
        // Members are printed at two spaces; method bodies (and signatures) deeper.
        let member = line.len() - t.len() == 2;
        if member {
            self.in_def = false;
        }
        if let Some(v) = t.strip_prefix("__parameters__ = ") {
            c.parameters = string_list(v);
        } else if let Some(v) = t.strip_prefix("__buffers__ = ") {
            c.buffers = string_list(v);
        } else if t.starts_with("def __setstate__(") {
            c.has_setstate = true;
            self.setstate = Some(setstate::Collector::new(line));
        } else if t.starts_with("def ") {
            self.in_def = true;
        } else if member
            && !self.in_def
            && let Some(slot) = attribute_slot(t)
        {
            c.attributes.push(slot);
        }
    }

    fn finish(mut self, out: &mut ScriptClasses) {
        self.end_class();
        for c in self.done {
            out.by_name.insert(c.qualname.clone(), c);
        }
    }
}

/// Learn the classes of one `code/` file's text (see [`CodeParser`]).
pub fn parse_code(module: &str, text: &str, out: &mut ScriptClasses) {
    let mut p = CodeParser::new(module);
    for line in text.lines() {
        p.line(line);
    }
    p.finish(out);
}

/// An attribute slot's declaration in a class body: `name : Type` or
/// `__annotations__["0"] = Type` (names that are not identifiers). Constants
/// (`name : Final[int] = 3`) are not slots.
fn attribute_slot(t: &str) -> Option<(String, String)> {
    if let Some(rest) = t.strip_prefix("__annotations__[") {
        let (name, ty) = rest.split_once("] = ")?;
        let name = string_list(name).into_iter().next()?;
        return Some((name, ty.trim().to_owned()));
    }
    let (name, ty) = t.split_once(" : ")?;
    let name = name.trim();
    let ty = ty.trim();
    if name.is_empty() || name.contains([' ', '(', '=']) || ty.starts_with("Final[") {
        return None;
    }
    Some((name.to_owned(), ty.to_owned()))
}

/// `["a", "b", ]` → `a`, `b` (double-quoted strings with backslash escapes, as torch prints
/// them).
fn string_list(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut s = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        s.push(n);
                    }
                }
                '"' => break,
                _ => s.push(c),
            }
        }
        out.push(s);
    }
    out
}

/// The class of `id` when it is a TorchScript module object.
fn module_class(doc: &Doc, id: NodeId) -> Option<(&ObjectNode, &ScriptClass)> {
    let script = doc.script()?;
    match doc.view(id) {
        View::Object(o) => {
            let c = script.get(&o.class)?;
            c.is_module.then_some((o, c))
        }
        _ => None,
    }
}

/// Whether `id` is a module object of a TorchScript archive.
pub fn is_script_module(doc: &Doc, id: NodeId) -> bool {
    module_class(doc, id).is_some()
}

/// The module tree under `id`, depth first (as `state_dict()` walks it: a submodule reached
/// twice is listed twice). `None` when `id` is not a TorchScript module. Visits at most as many
/// modules as the document has nodes, so a hostile cycle ends.
pub fn modules(doc: &Doc, id: NodeId) -> Option<Vec<ScriptModule>> {
    module_class(doc, id)?;
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), id)];
    let mut budget = doc.len();
    // Tensors listed over all modules: a module object shared many times (memoized once) must
    // not multiply into more names than the pickle has values.
    let mut listed = 0usize;
    while let Some((path, m)) = stack.pop() {
        if budget == 0 || listed > doc.len() {
            break;
        }
        budget -= 1;
        let Some((o, class)) = module_class(doc, m) else {
            continue;
        };
        let mut entry = ScriptModule {
            path: path.clone(),
            node: m,
            class: o.class.clone(),
            parameters: Vec::new(),
            buffers: Vec::new(),
            resolved: true,
        };
        if class.has_setstate {
            // The state is what `__getstate__` returned: only the `__setstate__` plan says
            // which attribute is where in it.
            let found = o
                .state
                .zip(class.setstate.as_ref())
                .and_then(|(state, plan)| from_setstate(doc, state, class, plan));
            let Some((parameters, buffers, children)) = found else {
                entry.resolved = false;
                out.push(entry);
                continue;
            };
            entry.parameters = parameters;
            entry.buffers = buffers;
            listed = listed.saturating_add(entry.parameters.len() + entry.buffers.len());
            out.push(entry);
            stack.extend(
                children
                    .into_iter()
                    .rev()
                    .map(|(name, v)| (dotted(&path, &name), v)),
            );
            continue;
        }
        let Some(attrs) = o.state.and_then(|s| doc.dict(s)) else {
            entry.resolved = o.state.is_none() && class.parameters.is_empty();
            out.push(entry);
            continue;
        };
        let mut children = Vec::new();
        for (k, v) in attrs {
            let Some(name) = doc.as_str(*k) else { continue };
            let is_tensor = matches!(doc.view(*v), View::Tensor(_));
            if is_tensor && class.parameters.iter().any(|p| p == name) {
                entry.parameters.push((name.to_owned(), *v));
            } else if is_tensor && class.buffers.iter().any(|b| b == name) {
                entry.buffers.push((name.to_owned(), *v));
            } else if module_class(doc, *v).is_some() {
                children.push((dotted(&path, name), *v));
            }
        }
        listed = listed.saturating_add(entry.parameters.len() + entry.buffers.len());
        out.push(entry);
        stack.extend(children.into_iter().rev());
    }
    Some(out)
}

/// `path.name`, or `name` at the root.
fn dotted(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// Parameters, buffers and submodules (in slot order) of a module of `class` whose pickled
/// `state` its `__setstate__` `plan` unpacks. `None` when one of them is computed by the
/// code, left unset (torch.jit.load refuses such a file) or not where the plan says.
#[allow(clippy::type_complexity)]
fn from_setstate(
    doc: &Doc,
    state: NodeId,
    class: &ScriptClass,
    plan: &[setstate::Assign],
) -> Option<(
    Vec<(String, NodeId)>,
    Vec<(String, NodeId)>,
    Vec<(String, NodeId)>,
)> {
    // Attribute → its value (`None`: computed); a later assignment wins.
    let mut value: HashMap<&str, Option<NodeId>> = HashMap::new();
    for a in plan {
        let v = a.from.as_deref().and_then(|p| follow(doc, state, p));
        value.insert(a.attr.as_str(), v);
    }
    let tensors = |names: &[String]| -> Option<Vec<(String, NodeId)>> {
        let mut out = Vec::new();
        for n in names {
            let v = (*value.get(n.as_str())?)?;
            match doc.view(v) {
                View::Tensor(_) => out.push((n.clone(), v)),
                // An absent optional parameter (`Linear(bias=False)`): not in state_dict().
                View::None => {}
                _ => return None,
            }
        }
        Some(out)
    };
    let parameters = tensors(&class.parameters)?;
    let buffers = tensors(&class.buffers)?;
    let mut children = Vec::new();
    let script = doc.script()?;
    if class.attributes.is_empty() {
        // Slots unknown: the submodules the plan sets, in its order.
        for a in plan {
            if let Some(Some(v)) = value.get(a.attr.as_str())
                && module_class(doc, *v).is_some()
                && !children.iter().any(|(n, _)| n == &a.attr)
            {
                children.push((a.attr.clone(), *v));
            }
        }
    } else {
        for (name, ty) in &class.attributes {
            if !script.get(ty).is_some_and(|c| c.is_module) {
                continue;
            }
            let v = (*value.get(name.as_str())?)?;
            module_class(doc, v)?;
            children.push((name.clone(), v));
        }
    }
    Some((parameters, buffers, children))
}

/// The value at `path` inside `id` (tuple/list indices, dict string keys).
fn follow(doc: &Doc, mut id: NodeId, path: &[setstate::Step]) -> Option<NodeId> {
    for step in path {
        id = match (doc.view(id), step) {
            (View::Tuple(items) | View::List(items), setstate::Step::Index(i)) => {
                let len = i64::try_from(items.len()).ok()?;
                let i = if *i < 0 { i.checked_add(len)? } else { *i };
                *items.get(usize::try_from(i).ok()?)?
            }
            (View::Dict(pairs), setstate::Step::Key(k)) => pairs
                .iter()
                .find(|(key, _)| doc.as_str(*key) == Some(k.as_str()))
                .map(|(_, v)| *v)?,
            _ => return None,
        };
    }
    Some(id)
}

/// `torch.jit.load(f).state_dict()`: per module, depth first, parameters then buffers.
/// `None` when `id` is not a TorchScript module, or when some module's state is only known to
/// its TorchScript `__setstate__` (the names would be incomplete).
pub fn state_dict(doc: &Doc, id: NodeId) -> Option<Vec<(String, NodeId)>> {
    let mods = modules(doc, id)?;
    if mods.iter().any(|m| !m.resolved) {
        return None;
    }
    let mut out = Vec::new();
    for m in &mods {
        let dotted = |n: &str| {
            if m.path.is_empty() {
                n.to_owned()
            } else {
                format!("{}.{n}", m.path)
            }
        };
        for (n, v) in m.parameters.iter().chain(&m.buffers) {
            out.push((dotted(n), *v));
        }
    }
    Some(out)
}

/// `named_parameters()` or `named_buffers()`: modules and tensors reached twice are listed
/// once (torch removes duplicates by identity; a tensor pickled twice is one memoized value).
fn named(mods: &[ScriptModule], buffers: bool) -> Vec<(String, NodeId)> {
    let mut seen_mod = HashSet::new();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for m in mods {
        if !seen_mod.insert(m.node) {
            continue;
        }
        let list = if buffers { &m.buffers } else { &m.parameters };
        for (n, v) in list {
            if seen.insert(*v) {
                let name = if m.path.is_empty() {
                    n.clone()
                } else {
                    format!("{}.{n}", m.path)
                };
                out.push((name, *v));
            }
        }
    }
    out
}

/// `named_parameters()` of the module at `id`.
pub fn named_parameters(doc: &Doc, id: NodeId) -> Vec<(String, NodeId)> {
    modules(doc, id).map_or_else(Vec::new, |m| named(&m, false))
}

/// `named_buffers()` of the module at `id`.
pub fn named_buffers(doc: &Doc, id: NodeId) -> Vec<(String, NodeId)> {
    modules(doc, id).map_or_else(Vec::new, |m| named(&m, true))
}

/// Paths of modules whose state TorchScript code sets at load (see [`ScriptModule::resolved`]).
pub fn unresolved_modules(doc: &Doc, id: NodeId) -> Vec<String> {
    modules(doc, id)
        .unwrap_or_default()
        .into_iter()
        .filter(|m| !m.resolved)
        .map(|m| m.path)
        .collect()
}

/// The state dict a conversion writes for a TorchScript archive: what
/// `torch.jit.load(f).state_dict()` returns. An error (one phrase) when ckpt cannot name the
/// tensors as torch would: a module whose state only TorchScript `__setstate__` sets, or an
/// archive with no parameters or buffers (a `torch.jit.freeze`d model keeps its weights as
/// constants of its code).
pub fn export_state_dict(ck: &Checkpoint) -> Result<Vec<(String, NodeId)>, String> {
    let doc = &ck.doc;
    let root = doc.root();
    if modules(doc, root).is_none() {
        return Err("its data.pkl does not hold a module defined by its code".to_owned());
    }
    let unresolved = unresolved_modules(doc, root);
    if !unresolved.is_empty() {
        let names: Vec<&str> = unresolved
            .iter()
            .map(|p| {
                if p.is_empty() {
                    "the root module"
                } else {
                    p.as_str()
                }
            })
            .collect();
        return Err(format!(
            "the state of {} is set by TorchScript __setstate__ while torch.jit.load runs (ckpt never runs code), so its tensors cannot be named; load it with torch.jit.load and save model.state_dict() instead",
            names.join(", ")
        ));
    }
    let entries = state_dict(doc, root).unwrap_or_default();
    if entries.is_empty() {
        let constants = ck
            .torchscript
            .as_ref()
            .and_then(|t| t.constants.as_ref())
            .map_or(0, |c| {
                (0..c.len())
                    .filter(|i| matches!(c.view(NodeId(*i as u32)), View::Tensor(_)))
                    .count()
            });
        return Err(if constants > 0 {
            format!(
                "no parameters or buffers: the weights are {constants} constant tensor(s) of its code (a torch.jit.freeze'd model); convert the model before freezing it"
            )
        } else {
            "no parameters or buffers".to_owned()
        });
    }
    Ok(entries)
}

/// Finish a scan of a TorchScript archive's `data.pkl` (`report`, from
/// [`crate::scan::scan_pickle`]): add `constants.pkl`'s findings, judge the names as
/// `torch.jit.load` resolves them, and add the `<TorchScript code>` finding
/// ([`crate::scan::apply_torchscript`]). Does nothing for other checkpoints.
pub fn scan_archive(ck: &Checkpoint, report: &mut crate::scan::ScanReport) {
    let Some(ts) = &ck.torchscript else { return };
    if let Some(c) = &ts.constants {
        report.merge(crate::scan::scan_pickle(&c.pickle, &ts.constants_entry));
    }
    judge_as_torchscript(ck, report);
}

/// Judge the findings of a TorchScript archive's pickles (already in `report`, e.g. from
/// `ckpt scan`'s member-by-member pass) as `torch.jit.load` resolves their names, and add the
/// one `<TorchScript code>` finding. Nothing for a checkpoint that is not TorchScript.
pub fn judge_as_torchscript(ck: &Checkpoint, report: &mut crate::scan::ScanReport) {
    let Some(ts) = &ck.torchscript else { return };
    let code = ts
        .constants_entry
        .strip_suffix("constants.pkl")
        .map_or_else(|| "code/".to_owned(), |root| format!("{root}code/"));
    let setstate: Vec<String> = ts
        .classes
        .sorted()
        .into_iter()
        .filter(|c| c.has_setstate)
        .map(|c| c.qualname.clone())
        .collect();
    crate::scan::apply_torchscript(report, &code, ts.code_files.len(), &setstate);
}

/// `qualified_name` → `original_name` (the class name without module or mangling).
pub fn original_name(qualname: &str) -> &str {
    qualname.rsplit('.').next().unwrap_or(qualname)
}

/// Make what `torch.jit.load` returns the document's loaded root: an object of class
/// `torch.jit._script.RecursiveScriptModule` whose state is `original_name`,
/// `qualified_name`, `parameters` and `buffers` (named, in torch's order), plus
/// `set_by_setstate` (module paths) when some module's state is only known to TorchScript code.
fn synthesize_loaded_root(doc: &mut Doc) {
    let root = doc.root();
    let Some(mods) = modules(doc, root) else {
        return;
    };
    let Some(first) = mods.first() else { return };
    let qualname = first.class.clone();
    let params = named(&mods, false);
    let buffers = named(&mods, true);
    let unresolved: Vec<String> = mods
        .iter()
        .filter(|m| !m.resolved)
        .map(|m| m.path.clone())
        .collect();
    let str_node = |doc: &mut Doc, s: &str| doc.push_node(Node::Str(s.to_owned()));
    let dict = |doc: &mut Doc, items: &[(String, NodeId)]| {
        let pairs: Vec<(NodeId, NodeId)> = items
            .iter()
            .map(|(k, v)| (doc.push_node(Node::Str(k.clone())), *v))
            .collect();
        doc.push_node(Node::Dict(pairs))
    };
    let mut state = vec![
        (
            str_node(doc, "original_name"),
            str_node(doc, original_name(&qualname)),
        ),
        (str_node(doc, "qualified_name"), str_node(doc, &qualname)),
        (str_node(doc, "parameters"), dict(doc, &params)),
        (str_node(doc, "buffers"), dict(doc, &buffers)),
    ];
    if !unresolved.is_empty() {
        let items: Vec<NodeId> = unresolved.iter().map(|p| str_node(doc, p)).collect();
        let list = doc.push_node(Node::List(items));
        state.push((str_node(doc, "set_by_setstate"), list));
    }
    let state = doc.push_node(Node::Dict(state));
    let obj = doc.push_node(Node::Object(Box::new(ObjectNode {
        class: RECURSIVE_SCRIPT_MODULE.to_owned(),
        args: Vec::new(),
        state: Some(state),
        construct: ckpt_pickle::Construct::Reduce,
    })));
    doc.set_loaded_root(obj);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_definitions_are_read_from_code() {
        let code = "class BatchNorm2d(Module):\n  __parameters__ = [\"weight\", \"bias\", ]\n  __buffers__ = [\"running_mean\", \"running_var\", \"num_batches_tracked\", ]\n  weight : Tensor\n  def forward(self: __torch__.X,\n    input: Tensor) -> Tensor:\n    return input\nclass Point(NamedTuple):\n  x : int\ndef helper(x: int) -> int:\n  return x\nclass S(Module):\n  __parameters__ = []\n  __buffers__ = []\n  def __setstate__(self: __torch__.S,\n    state: int) -> NoneType:\n    return None\n";
        let mut c = ScriptClasses::default();
        parse_code("__torch__.torch.nn.modules.batchnorm", code, &mut c);
        let bn = c
            .get("__torch__.torch.nn.modules.batchnorm.BatchNorm2d")
            .unwrap();
        assert!(bn.is_module);
        assert_eq!(bn.parameters, ["weight", "bias"]);
        assert_eq!(
            bn.buffers,
            ["running_mean", "running_var", "num_batches_tracked"]
        );
        assert!(!bn.has_setstate);
        let p = c.get("__torch__.torch.nn.modules.batchnorm.Point").unwrap();
        assert!(!p.is_module);
        let s = c.get("__torch__.torch.nn.modules.batchnorm.S").unwrap();
        assert!(s.has_setstate && s.parameters.is_empty());
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn torchscript_names_are_judged_as_torch_jit_load_resolves_them() {
        use crate::scan::{Verdict, classify_torchscript_global as ts};
        for (m, n) in [
            ("torch.jit._pickle", "build_intlist"),
            ("torch.jit._pickle", "restore_type_tag"),
            ("__torch__", "M"),
            ("__torch__.torch.nn.modules.conv", "Conv2d"),
            ("__main__", "TensorID"),
        ] {
            assert_eq!(ts(m, n).map(|x| x.0), Some(Verdict::Safe), "{m}.{n}");
        }
        // Anything else keeps its ordinary verdict (None: not this table's business).
        for (m, n) in [
            ("os", "system"),
            ("torch.jit._pickle", "something_else"),
            ("torch.jit", "load"),
            ("__torch__", "__reduce__"),
            ("__torch__.x", "a.b"),
            ("__main__", "Stage"),
        ] {
            assert!(ts(m, n).is_none(), "{m}.{n}");
        }
    }

    #[test]
    fn quoted_names_with_escapes() {
        assert_eq!(string_list(r#"["0", "a\"b", ]"#), ["0", "a\"b"]);
        assert!(string_list("[]").is_empty());
    }
}

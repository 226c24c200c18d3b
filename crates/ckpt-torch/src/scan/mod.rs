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
//!
//! The scan is cut by idea:
//! - `report`: what a scan says (a global's [`Verdict`], its [`Finding`]s, a file's
//!   [`FileScan`] and [`FileVerdict`]);
//! - `pickle`: the findings of one decoded pickle (which globals, how they are used);
//! - `policy`: how a global is judged by its name (the allowlist and the dangerous list);
//! - `torchscript`: how names read from a TorchScript archive are judged instead;
//! - `file`: one file by content (which loader would unpickle what), with `npy`, `tar`
//!   and `zip` for the containers a loader unpickles from.

pub(crate) mod file;
mod npy;
mod pickle;
mod policy;
mod report;
mod tar;
mod torchscript;
mod zip;

pub use file::{MAX_INFLATED, ScanLimits, scan_path};
pub use pickle::scan_pickle;
pub use policy::classify_global;
pub use report::{
    FileScan, FileVerdict, Finding, ScanFormat, ScanRecord, ScanReport, Usage, Verdict,
};
pub use torchscript::{apply_torchscript, classify_torchscript_global};

#[cfg(test)]
mod tests;

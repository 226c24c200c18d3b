//! What a checkpoint records about itself: read once from the file (and cached by the
//! catalog, keyed by the file). Sources `checkpoint`, `callback`, `cleval`, `hparams`, and the
//! `inferred` signature of its state dict.

use std::path::Path;

use ckpt_model::state_dict::{find_state_dicts, first_state_dict_entries_borrowed};
use ckpt_model::summary::first_state_dict_totals;
use ckpt_model::{Inference, TensorSig, infer, infer_each};
use ckpt_torch::summary::{CallbackSummary, Summary};
use ckpt_torch::{Checkpoint, View};
use serde_json::{Value, json};

use crate::config::{ResolveError, read_config};
use crate::fact::{Fact, Field, Source};
use crate::sources::config::tree_facts;

/// What kind of checkpoint a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// One file (zip, legacy, pickle, TorchScript, safetensors).
    File,
    /// A torch.distributed.checkpoint folder (`.metadata` + shards).
    Dcp,
    /// A Hugging Face folder with a sharded index.
    HfSharded,
}

/// The checkpoint's `hyper_parameters` as a value, interpolations resolved within the hparams
/// tree as OmegaConf attribute access would; the key in an error is prefixed with
/// `hyper_parameters.`. From the summary's rendering of that node (`Summary::hyper_parameters`),
/// so it is rendered once.
pub fn hparams_of(summary: &Summary) -> Option<Result<Value, ResolveError>> {
    let h = summary.hyper_parameters.as_ref()?;
    Some(crate::config::resolve(h).map_err(|e| e.under("hyper_parameters")))
}

/// Every fact the checkpoint at `path` gives.
pub fn checkpoint_facts(path: &Path, kind: Kind) -> Vec<Fact> {
    checkpoint_facts_read(path, kind, None).facts
}

/// What reading a checkpoint's own facts gave.
#[derive(Debug)]
pub struct FactsRead {
    pub facts: Vec<Fact>,
    /// The read failed for a reason that says nothing about the checkpoint (a request that
    /// failed, an object replaced while it was read): such facts must not be remembered, as
    /// a damaged file's are.
    pub transient: bool,
}

/// [`checkpoint_facts`] of a checkpoint whose identity a listing gave (`known`: an object's
/// size and ETag, so it is read without asking for them, and only as listed), saying whether
/// a failure was transient ([`FactsRead::transient`]).
pub fn checkpoint_facts_read(
    path: &Path,
    kind: Kind,
    known: Option<&ckpt_io::Identity>,
) -> FactsRead {
    let mut transient = false;
    let facts = match kind {
        Kind::File => file_facts(path, known, &mut transient),
        Kind::Dcp => dcp_facts(path, &mut transient),
        Kind::HfSharded => sharded_facts(path, &mut transient),
    };
    FactsRead { facts, transient }
}

/// Did reading `path` fail for a reason outside the file: an I/O error on an object in a
/// bucket (a request that failed, the object replaced since it was listed), anything but a
/// read past its end or bytes that do not parse (a truncated object gives them every time, as
/// a local file does)?
pub fn failed_transiently(path: &Path, e: &(dyn std::error::Error + 'static)) -> bool {
    if !ckpt_io::is_remote(path) {
        return false;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(x) = cur {
        if let Some(io) = x.downcast_ref::<std::io::Error>() {
            return !matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::InvalidData
                    // Gone since it was listed: the next listing says so, and keys change.
                    | std::io::ErrorKind::NotFound
            );
        }
        cur = x.source();
    }
    false
}

fn fact(field: Field, v: Value) -> Fact {
    Fact::new(field, v, Source::Checkpoint)
}

fn file_name_of(p: &str) -> Option<String> {
    p.rsplit(['/', '\\'])
        .next()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The file is scanned and opened in one go: the `data.pkl` both read is decoded once
/// ([`Checkpoint::scan_and_open`] gives what [`scan`] and [`Checkpoint::open`] give).
fn file_facts(path: &Path, known: Option<&ckpt_io::Identity>, transient: &mut bool) -> Vec<Fact> {
    let limits = ckpt_torch::scan_file::ScanLimits::default();
    let opts = ckpt_torch::Options::default();
    // With the listing's identity: no request to learn the object's size, and every read
    // conditional on the ETag the cache key was made from.
    let (scan, ck) = match known {
        Some(id) => Checkpoint::scan_and_open_known(path, id, &limits, &opts),
        None => Checkpoint::scan_and_open(path, &limits, &opts),
    };
    // A remote object read with problems may have met a failed request mid-scan (the scan's
    // problems are text, so ask the source whether a read failed outside the bytes); a
    // damaged object's problems are its own and are remembered, as a local file's are.
    if ckpt_io::is_remote(path)
        && !scan.problems.is_empty()
        && ck.as_ref().is_ok_and(|c| c.source().failed_reads() > 0)
    {
        *transient = true;
    }
    let ck = match ck {
        Ok(ck) => ck,
        Err(e) => {
            *transient |= failed_transiently(path, &e);
            // Still judged: a hostile file that is not a readable checkpoint stays dangerous.
            let mut f = vec![security_fact(&scan)];
            f.push(fact(Field::Error, json!(e.to_string())));
            return f;
        }
    };
    file_facts_of_open(path, &ck, &scan)
}

/// What loading it would run, judged exactly as `ckpt scan` judges the file (every pickle
/// member, every copy of a duplicated name, frames as torch reads them, TorchScript): a
/// checkpoint whose pickles call os.system is not one to list as a model.
pub fn scan(path: &Path) -> ckpt_torch::scan_file::FileScan {
    ckpt_torch::scan_file::scan_path(path, &ckpt_torch::scan_file::ScanLimits::default())
}

fn security_fact(scan: &ckpt_torch::scan_file::FileScan) -> Fact {
    fact(Field::Security, json!(scan.verdict().as_str()))
}

/// [`checkpoint_facts`] of a file already opened (the sidecar writer has it open: opening it
/// again would hold two decoded copies at once), given its scan.
pub fn file_facts_of_open(
    path: &Path,
    ck: &Checkpoint,
    scan: &ckpt_torch::scan_file::FileScan,
) -> Vec<Fact> {
    let mut f = vec![security_fact(scan)];
    f.push(fact(Field::Format, json!(ck.format_name())));
    f.push(fact(Field::PickleSha256, json!(ck.pickle_sha256)));
    if scan.verdict() == ckpt_torch::scan_file::FileVerdict::Dangerous {
        let names: Vec<&str> = scan
            .report
            .findings
            .iter()
            .filter(|x| x.class == ckpt_torch::scan::Verdict::Dangerous)
            .map(|x| x.name.as_str())
            .collect();
        f.push(fact(
            Field::Error,
            json!(format!(
                "{}: dangerous pickle (would call {} when loaded); not a checkpoint",
                path.display(),
                names.join(", ")
            )),
        ));
        return f;
    }
    let root_kind = match ck.doc.view(ck.doc.root()) {
        View::Dict(_) | View::Object(_) | View::Tensor(_) => None,
        View::List(_) => Some("a list"),
        View::Tuple(_) => Some("a tuple"),
        _ => Some("a plain value"),
    };
    if let Some(kind) = root_kind
        && find_state_dicts(&ck.doc, ck.doc.root()).is_empty()
    {
        f.push(fact(
            Field::Error,
            json!(format!(
                "{}: not a checkpoint: the pickle holds {kind}, with no state dict",
                path.display()
            )),
        ));
        return f;
    }
    // The catalog keeps two numbers of the state dict's summary: summarized without its
    // state dicts (their groups, dtypes and names), the rest counted apart (issue 10).
    let summary = ck.summary_with(Vec::new());
    let totals = first_state_dict_totals(&ck.doc);
    f.extend(opened_facts_with(ck, &summary, totals, path));
    f
}

/// The facts of a checkpoint already opened and summarized (the sidecar writer has both).
pub fn opened_facts(ck: &Checkpoint, summary: &Summary, path: &Path) -> Vec<Fact> {
    let totals = summary
        .state_dicts
        .first()
        .map(|sd| (sd.tensors, sd.elements));
    opened_facts_with(ck, summary, totals, path)
}

/// [`opened_facts`], the first state dict's (tensors, elements) given apart from `summary`.
fn opened_facts_with(
    ck: &Checkpoint,
    summary: &Summary,
    totals: Option<(usize, u64)>,
    path: &Path,
) -> Vec<Fact> {
    let doc = &ck.doc;
    let root = doc.root();
    let mut f = Vec::new();
    if let Some(e) = summary.epoch {
        f.push(fact(Field::Epoch, json!(e)));
    }
    if let Some(g) = doc
        .get(root, "global_step")
        .and_then(|v| doc.as_i64(v))
        .or_else(|| doc.get(root, "step").and_then(|v| doc.as_i64(v)))
    {
        f.push(fact(Field::GlobalStep, json!(g)));
    }
    if let Some(v) = &summary.lightning_version {
        f.push(fact(Field::LightningVersion, json!(v)));
    }
    match hparams_of(summary) {
        Some(Ok(h)) => {
            if let Some(m) = h.as_object() {
                for (k, v) in m {
                    f.push(Fact::new(
                        Field::Hparam(k.clone()),
                        v.clone(),
                        Source::Hparams,
                    ));
                }
            }
            f.extend(tree_facts(&h, Source::Hparams));
        }
        Some(Err(e)) => f.push(Fact::warning(
            format!("{}: {e}; hyper_parameters ignored", path.display()),
            Source::Hparams,
        )),
        None => {}
    }
    if let Some(cm) = doc.get(root, "cleval_metrics")
        && let Some(items) = doc.dict(cm)
    {
        for (k, v) in items {
            let name = ckpt_torch::pyrepr::key_str(doc, *k);
            if let Ok(Some(x)) = ck.number(*v) {
                f.push(Fact::new(Field::Metric(name), json!(x), Source::Cleval));
            }
        }
    }
    callback_facts(summary, path, &mut f);
    if let Some((tensors, elements)) = totals {
        f.push(fact(Field::Params, json!(elements)));
        f.push(fact(Field::Tensors, json!(tensors)));
        if let Some((_, items)) = first_state_dict_entries_borrowed(doc, root) {
            // Names and shapes borrowed from the document and read as they come: a header
            // of 170,000 tensors is not copied, nor collected, to be read once (issue 10).
            let sigs = items.iter().filter_map(|(name, v)| match doc.view(*v) {
                View::Tensor(t) => Some(TensorSig {
                    name,
                    shape: &t.shape,
                    dtype: t.dtype.name(),
                }),
                _ => None,
            });
            push_inference(infer_each(sigs), &mut f);
        }
    }
    f
}

/// The ModelCheckpoint callback that describes this file: the one whose best or last path
/// names it, else the first.
fn pick_callback<'s>(cbs: &[&'s CallbackSummary], file_name: &str) -> Option<&'s CallbackSummary> {
    let names_it = |p: &Option<String>| {
        p.as_deref()
            .and_then(file_name_of)
            .is_some_and(|n| n == file_name)
    };
    cbs.iter()
        .find(|c| names_it(&c.best_model_path) || names_it(&c.last_model_path))
        .or_else(|| cbs.first())
        .copied()
}

fn callback_facts(summary: &Summary, path: &Path, f: &mut Vec<Fact>) {
    let mcs: Vec<&CallbackSummary> = summary
        .callbacks
        .iter()
        .filter(|c| c.kind == "ModelCheckpoint")
        .collect();
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cb = |field, v| Fact::new(field, v, Source::Callback);
    if let Some(c) = pick_callback(&mcs, &file_name) {
        if let Some(m) = &c.monitor {
            f.push(cb(Field::Monitor, json!(m)));
        }
        if let Some(m) = &c.mode {
            f.push(cb(Field::Mode, json!(m)));
        }
        // Lightning does not store save_top_k: the number of best_k_models is a lower bound.
        if let Some(k) = c.best_k_models.filter(|k| *k > 0) {
            f.push(Fact::new(Field::SaveTopK, json!(k), Source::Inferred));
        }
        // A ModelCheckpoint with save_last=True records last_model_path once it wrote
        // last.ckpt; one without it says save_last was off, unless a last.ckpt beside the
        // file says otherwise (the folder's source).
        if c.last_model_path.as_deref().is_some_and(|p| !p.is_empty()) {
            f.push(cb(Field::SaveLast, json!(true)));
        } else {
            f.push(Fact::new(Field::SaveLast, json!(false), Source::Inferred));
        }
    }
    for c in &mcs {
        if let (Some(m), Some(score)) = (&c.monitor, c.current_score) {
            f.push(cb(Field::Metric(m.clone()), json!(score)));
        }
        if let Some(n) = c.best_model_path.as_deref().and_then(file_name_of) {
            f.push(cb(Field::BestName, json!(n)));
        }
        if let Some(n) = c.last_model_path.as_deref().and_then(file_name_of) {
            f.push(cb(Field::LastName, json!(n)));
        }
    }
}

/// What the state dict's signature says (`source: inferred`). The family doubles as the
/// architecture when nothing better names it, so an inferred `gpt2` is what both the catalog
/// and a written sidecar say.
fn infer_facts(owned: &[(String, Vec<u64>, &str)], f: &mut Vec<Fact>) {
    let sigs: Vec<TensorSig<'_>> = owned
        .iter()
        .map(|(n, s, d)| TensorSig {
            name: n,
            shape: s,
            dtype: d,
        })
        .collect();
    push_inference(infer(&sigs), f);
}

/// The facts of an inference.
fn push_inference(inf: Inference, f: &mut Vec<Fact>) {
    let inferred = |k: &str, v: Value| Fact::new(Field::Model(k.to_owned()), v, Source::Inferred);
    if let Some(x) = inf.family {
        f.push(inferred("architecture", json!(x)));
        f.push(inferred("family", json!(x)));
    }
    if let Some(x) = inf.encoder {
        f.push(inferred("encoder", json!(x)));
    }
    if let Some(x) = inf.decoder {
        f.push(inferred("decoder", json!(x)));
    }
    if let Some(x) = inf.head {
        f.push(inferred("head", json!(x)));
    }
    for (k, v) in inf.details {
        f.push(inferred(&k, v));
    }
    if inf.params > 0 {
        f.push(Fact::new(
            Field::Params,
            json!(inf.params),
            Source::Inferred,
        ));
    }
}

fn dcp_facts(dir: &Path, transient: &mut bool) -> Vec<Fact> {
    let mut f = vec![fact(Field::Format, json!("dcp"))];
    let index = match ckpt_torch::dcp::DcpIndex::open(dir) {
        Ok(i) => i,
        Err(e) => {
            *transient |= failed_transiently(dir, &e);
            f.push(fact(Field::Error, json!(e.to_string())));
            return f;
        }
    };
    // Each tensor's dtype is the one `.metadata` records (the first field of its
    // TensorProperties); float32 only when it records none.
    let owned: Vec<(String, Vec<u64>, &'static str)> = index
        .tensors
        .iter()
        .map(|t| {
            let dtype = t.dtype.map_or("float32", ckpt_torch::DType::name);
            (t.fqn.clone(), t.shape.clone(), dtype)
        })
        .collect();
    let (params, _) = index.totals();
    // `dcp.save({"model": …, "step": step, "epoch": epoch})`: small values, read in place.
    if let Some(e) = index.read_int("epoch") {
        f.push(fact(Field::Epoch, json!(e)));
    }
    if let Some(s) = index.step() {
        f.push(fact(Field::GlobalStep, json!(s)));
    }
    f.push(fact(Field::Tensors, json!(owned.len())));
    f.push(fact(Field::Params, json!(params)));
    infer_facts(&owned, &mut f);
    f
}

/// The files a sharded folder's facts are read from besides its index: `config.json` and
/// every shard the index names (the catalog's cache key covers them all).
pub fn sharded_inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.join("config.json")];
    for n in [
        "model.safetensors.index.json",
        "pytorch_model.bin.index.json",
    ] {
        let p = dir.join(n);
        if crate::consulted::is_file(&p) {
            out.push(p);
            break;
        }
    }
    out.extend(
        shard_names(dir)
            .into_iter()
            .filter_map(Result::ok)
            .map(|s| dir.join(s)),
    );
    out
}

/// The shard names of a sharded folder's index, sorted and deduplicated; a name that leaves
/// the folder is an error (an index naming `../x` or `/etc/x` is not read).
fn shard_names(dir: &Path) -> Vec<Result<String, String>> {
    let index = [
        "model.safetensors.index.json",
        "pytorch_model.bin.index.json",
    ]
    .iter()
    .find_map(|n| read_config(&dir.join(n)).ok());
    let mut shards: Vec<String> = index
        .as_ref()
        .and_then(|i| i.get("weight_map"))
        .and_then(Value::as_object)
        .map(|m| {
            m.values()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    shards.sort();
    shards.dedup();
    shards
        .into_iter()
        .map(|s| {
            let plain = Path::new(&s)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
            if !plain || s.is_empty() {
                Err(format!(
                    "{}: weight_map names a shard outside the folder: {s:?}",
                    dir.display()
                ))
            } else {
                Ok(s)
            }
        })
        .collect()
}

fn sharded_facts(dir: &Path, transient: &mut bool) -> Vec<Fact> {
    let mut f = vec![fact(Field::Format, json!("hf-sharded"))];
    let cfg = read_config(&dir.join("config.json"));
    if let Err(e) = &cfg {
        *transient |= failed_transiently(dir, e);
    }
    if let Ok(cfg) = cfg {
        if let Some(t) = cfg.get("model_type").and_then(Value::as_str) {
            f.push(Fact::new(
                Field::Model("family".into()),
                json!(t),
                Source::JsonReport,
            ));
        }
        if let Some(a) = cfg
            .get("architectures")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        {
            f.push(Fact::new(
                Field::Model("architecture".into()),
                a.clone(),
                Source::JsonReport,
            ));
        }
    }
    let mut owned: Vec<(String, Vec<u64>, &'static str)> = Vec::new();
    for s in shard_names(dir) {
        let s = match s {
            Ok(s) => s,
            Err(e) => {
                f.push(fact(Field::Error, json!(e)));
                continue;
            }
        };
        match Checkpoint::open(dir.join(&s)) {
            Ok(ck) => {
                let doc = &ck.doc;
                if let Some(items) = doc.dict(doc.root()) {
                    for (k, v) in items {
                        if let (Some(name), View::Tensor(t)) = (doc.as_str(*k), doc.view(*v)) {
                            owned.push((name.to_owned(), t.shape.clone(), t.dtype.name()));
                        }
                    }
                }
            }
            Err(e) => {
                *transient |= failed_transiently(dir, &e);
                f.push(fact(Field::Error, json!(e.to_string())));
            }
        }
    }
    // Shapes come from the shards' headers: a claimed size that overflows saturates.
    let params: u64 = owned
        .iter()
        .map(|(_, s, _)| s.iter().fold(1u64, |a, d| a.saturating_mul(*d)))
        .fold(0u64, u64::saturating_add);
    f.push(fact(Field::Tensors, json!(owned.len())));
    f.push(fact(Field::Params, json!(params)));
    infer_facts(&owned, &mut f);
    f
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::path::PathBuf;

    use super::*;

    /// The facts as they were read before the file was scanned and opened in one go: the
    /// scan, then a separate [`Checkpoint::open`] (which decodes `data.pkl` again).
    fn file_facts_scan_then_open(path: &Path) -> Vec<Fact> {
        let scan = scan(path);
        let ck = match Checkpoint::open(path) {
            Ok(ck) => ck,
            Err(e) => {
                let mut f = vec![security_fact(&scan)];
                f.push(fact(Field::Error, json!(e.to_string())));
                return f;
            }
        };
        file_facts_of_open(path, &ck, &scan)
    }

    fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                files_under(&e.path(), out);
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }

    fn same_facts_under(dirs: &[PathBuf]) -> usize {
        let mut files = Vec::new();
        for d in dirs {
            files_under(d, &mut files);
        }
        files.sort();
        for f in &files {
            assert_eq!(
                file_facts(f, None, &mut false),
                file_facts_scan_then_open(f),
                "{}",
                f.display()
            );
        }
        files.len()
    }

    fn workspace() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// Decoding `data.pkl` once changes no fact of any fixture or example file (hostile,
    /// damaged, legacy, TorchScript, safetensors and Lightning checkpoints alike).
    #[test]
    fn file_facts_equal_scan_then_open_on_every_fixture() {
        let w = workspace();
        let n = same_facts_under(&[w.join("fixtures"), w.join("examples")]);
        assert!(n >= 300, "only {n} files");
    }

    /// The same on the reference corpus (`../shared/corpus/data` or `$CKPT_CORPUS`).
    #[test]
    #[ignore = "needs ../shared/corpus"]
    fn file_facts_equal_scan_then_open_on_the_corpus() {
        let dir = std::env::var_os("CKPT_CORPUS")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("../shared/corpus/data"));
        assert!(dir.join("expected").is_dir(), "corpus not found");
        let n = same_facts_under(&[dir]);
        assert!(n >= 100, "only {n} files");
    }
}

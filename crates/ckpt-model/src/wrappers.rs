//! Wrapper prefixes: the names training frameworks put in front of a model's own parameter
//! names (DDP's `module.`, FSDP's `_fsdp_wrapped_module.`, `torch.compile`'s `_orig_mod.` …).
//! One rule for what a wrapper is, used to strip them (convert, identity, inference), to
//! report them (inspect) and to match names with them (inference).

/// Wrapper prefixes that training frameworks put in front of parameter names. The order is the
/// order in which they are reported.
pub const WRAPPER_PREFIXES: &[&str] = &[
    "_fsdp_wrapped_module.",
    "_fpw_module.",
    "_checkpoint_wrapped_module.",
    "_orig_mod.",
    "module.",
];

/// Which of [`WRAPPER_PREFIXES`] a set of names carried (a bit per prefix, in that order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wrappers(u8);

impl Wrappers {
    /// Note the prefix at `index` of [`WRAPPER_PREFIXES`].
    pub fn insert(&mut self, index: usize) {
        if index < WRAPPER_PREFIXES.len() {
            self.0 |= 1 << index;
        }
    }

    /// Note `prefix` (one of [`WRAPPER_PREFIXES`]; anything else is ignored).
    pub fn insert_prefix(&mut self, prefix: &str) {
        if let Some(i) = WRAPPER_PREFIXES.iter().position(|p| *p == prefix) {
            self.insert(i);
        }
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The prefixes noted, in [`WRAPPER_PREFIXES`] order.
    pub fn iter(self) -> impl Iterator<Item = &'static str> {
        WRAPPER_PREFIXES
            .iter()
            .enumerate()
            .filter(move |(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, p)| *p)
    }
}

/// The index in [`WRAPPER_PREFIXES`] of a dotted name's segment `seg` (without its dot) when it
/// is a wrapper there. `leading` says whether every segment before it was a wrapper too: DDP's
/// `module` only ever wraps the whole model, the others wrap submodules as well. The last
/// segment of a name (the parameter's own) is never a wrapper; the caller does not ask.
pub fn wrapper_segment(seg: &str, leading: bool) -> Option<usize> {
    if !(seg.starts_with('_') || (leading && seg == "module")) {
        return None;
    }
    WRAPPER_PREFIXES
        .iter()
        .position(|p| p.len() == seg.len() + 1 && p.starts_with(seg))
}

/// Strip every known wrapper prefix, wherever it occurs in a dotted name.
pub fn strip_wrappers(name: &str) -> String {
    strip_wrappers_noting(name, &mut |_| {})
}

/// `strip_wrappers`, telling `removed` each prefix it removes (a `module.` inside
/// `_fsdp_wrapped_module.` is not one).
pub fn strip_wrappers_noting(name: &str, removed: &mut dyn FnMut(&'static str)) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    'outer: while !rest.is_empty() {
        for p in WRAPPER_PREFIXES {
            // DDP's `module.` only ever wraps the whole model; the others wrap submodules too.
            let here = if *p == "module." {
                out.is_empty()
            } else {
                out.is_empty() || out.ends_with('.')
            };
            if here && rest.starts_with(p) {
                rest = &rest[p.len()..];
                removed(p);
                continue 'outer;
            }
        }
        match rest.find('.') {
            Some(i) => {
                out.push_str(&rest[..=i]);
                rest = &rest[i + 1..];
            }
            None => {
                out.push_str(rest);
                rest = "";
            }
        }
    }
    out
}

/// `strip_wrappers`, adding the prefixes it removes to `seen`.
pub fn strip_wrappers_into(name: &str, seen: &mut Wrappers) -> String {
    strip_wrappers_noting(name, &mut |p| seen.insert_prefix(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrappers_are_stripped_anywhere() {
        assert_eq!(
            strip_wrappers(
                "_fsdp_wrapped_module.transformer.h.0._fsdp_wrapped_module.attn.c_attn.weight"
            ),
            "transformer.h.0.attn.c_attn.weight"
        );
        assert_eq!(strip_wrappers("module.fc.weight"), "fc.weight");
        assert_eq!(strip_wrappers("_orig_mod.fc.weight"), "fc.weight");
        assert_eq!(strip_wrappers("submodule.fc.weight"), "submodule.fc.weight");
        assert_eq!(
            strip_wrappers("encoder.module.weight"),
            "encoder.module.weight"
        );
    }

    #[test]
    fn what_is_stripped_is_what_is_reported() {
        let mut seen = Wrappers::default();
        let out = strip_wrappers_into("_orig_mod.module.enc._fpw_module.w", &mut seen);
        assert_eq!(out, "enc.w");
        assert_eq!(
            seen.iter().collect::<Vec<_>>(),
            ["_fpw_module.", "_orig_mod.", "module."]
        );
        // A `module` segment after a model's own segment is the model's.
        let mut seen = Wrappers::default();
        assert_eq!(
            strip_wrappers_into("enc.module.w", &mut seen),
            "enc.module.w"
        );
        assert!(seen.is_empty());
    }

    #[test]
    fn segments_follow_the_same_rule_as_stripping() {
        assert_eq!(wrapper_segment("module", true), Some(4));
        assert_eq!(wrapper_segment("module", false), None);
        assert_eq!(wrapper_segment("_orig_mod", false), Some(3));
        assert_eq!(wrapper_segment("_private", true), None);
        assert_eq!(wrapper_segment("modules", true), None);
    }
}

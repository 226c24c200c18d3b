//! Output names: wrapper prefixes removed ([`ckpt_model::wrappers`]), then `--strip-prefix`
//! and `--add-prefix`.

use ckpt_model::wrappers::strip_wrappers;

use crate::options::ConvertOptions;

pub(crate) fn rename(name: &str, opts: &ConvertOptions) -> String {
    let mut n = strip_wrappers(name);
    for p in &opts.strip_prefix {
        if let Some(rest) = n.strip_prefix(p.as_str()) {
            n = rest.to_owned();
        }
    }
    if let Some(p) = &opts.add_prefix {
        n = format!("{p}{n}");
    }
    n
}

/// The wrapper prefixes `rename` removes from these names, in the order first seen.
pub(crate) fn stripped_prefixes<'n>(names: impl Iterator<Item = &'n str>) -> Vec<String> {
    let mut stripped: Vec<String> = Vec::new();
    for n in names {
        ckpt_model::wrappers::strip_wrappers_noting(n, &mut |p| {
            if !stripped.iter().any(|s| s == p) {
                stripped.push(p.to_owned());
            }
        });
    }
    stripped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Target;

    #[test]
    fn names_lose_wrappers_and_prefixes() {
        let o = ConvertOptions {
            target: Target::Safetensors,
            base_model: None,
            key: None,
            strip_prefix: vec!["model.".into()],
            add_prefix: Some("x.".into()),
            force: false,
            sync: false,
            dry_run: false,
            max_shard_size: 5_000_000_000,
            dtype: None,
            progress: None,
        };
        assert_eq!(
            rename(
                "_fsdp_wrapped_module.model._fsdp_wrapped_module.fc.weight",
                &o
            ),
            "x.fc.weight"
        );
        assert_eq!(rename("module._orig_mod.fc.weight", &o), "x.fc.weight");
    }
}

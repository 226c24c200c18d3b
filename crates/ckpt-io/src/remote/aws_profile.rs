//! The AWS CLI's shared files (`~/.aws/credentials`, `~/.aws/config`), which object_store 0.14
//! does not read.
//!
//! Most people who can `aws s3 ls` have keys there, not in the environment, and without this
//! they would reach the instance-metadata probe and a confusing "no credentials" error. Only
//! static keys (with an optional session token), `region` and `endpoint_url` are read. A profile
//! that needs a program to run (SSO, `credential_process`, assumed roles) is refused with the
//! command that exports its credentials: ckpt runs no external processes.
//!
//! The profile is `AWS_PROFILE` (else `default`). Files: `AWS_SHARED_CREDENTIALS_FILE` (else
//! `~/.aws/credentials`, sections `[name]`) and `AWS_CONFIG_FILE` (else `~/.aws/config`,
//! sections `[profile name]`, or `[default]`). Keys in the credentials file win over keys in the
//! config file, as in the AWS CLI.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What a profile gave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

/// The sections of an INI file: section header (trimmed) → key (lowercased) → value. Indented
/// lines under a key with an empty value (`s3 =` sub-sections) are read as `key.sub`.
fn parse_ini(text: &str) -> HashMap<String, HashMap<String, String>> {
    let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut section: Option<String> = None;
    let mut parent: Option<String> = None;
    for raw in text.lines() {
        let indented = raw.starts_with([' ', '\t']);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(h) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let h = h.trim().to_owned();
            out.entry(h.clone()).or_default();
            section = Some(h);
            parent = None;
            continue;
        }
        let Some(sec) = &section else { continue };
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let k = k.trim().to_ascii_lowercase();
        let v = v.trim().to_owned();
        let map = out.entry(sec.clone()).or_default();
        match (&parent, indented) {
            (Some(p), true) => {
                map.insert(format!("{p}.{k}"), v);
            }
            _ => {
                parent = v.is_empty().then(|| k.clone());
                map.insert(k, v);
            }
        }
    }
    out
}

/// Where the two files are, from the environment (`get`) and the home folder.
fn files(get: &dyn Fn(&str) -> Option<String>) -> (Option<PathBuf>, Option<PathBuf>) {
    let home = get("HOME").map(PathBuf::from);
    let creds = get("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".aws").join("credentials")));
    let config = get("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".aws").join("config")));
    (creds, config)
}

fn read(p: &Option<PathBuf>) -> Result<Option<String>, String> {
    let Some(p) = p else { return Ok(None) };
    match std::fs::read_to_string(p) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", p.display())),
    }
}

/// The profile named by `AWS_PROFILE` (or `default`), read from the shared files. `Ok(None)`
/// when neither file has it and it was not asked for by name; an error when `AWS_PROFILE`
/// names a profile that is not there, or the profile needs a program to produce credentials.
pub fn load(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<Profile>, String> {
    let named = get("AWS_PROFILE").filter(|s| !s.is_empty());
    let name = named.clone().unwrap_or_else(|| "default".to_owned());
    let (creds_path, config_path) = files(get);
    let creds = read(&creds_path)?.map(|t| parse_ini(&t));
    let config = read(&config_path)?.map(|t| parse_ini(&t));
    let from_creds = creds.as_ref().and_then(|c| c.get(&name));
    let config_section = if name == "default" {
        "default".to_owned()
    } else {
        format!("profile {name}")
    };
    let from_config = config.as_ref().and_then(|c| {
        c.get(&config_section).or_else(|| {
            // Some hand-written configs use `[name]` as the credentials file does.
            c.get(&name)
        })
    });
    if from_creds.is_none() && from_config.is_none() {
        return match named {
            Some(n) => Err(format!(
                "AWS_PROFILE={n}: no such profile in {} or {}",
                shown(&creds_path),
                shown(&config_path)
            )),
            None => Ok(None),
        };
    }
    let pick = |k: &str| -> Option<String> {
        from_creds
            .and_then(|m| m.get(k))
            .or_else(|| from_config.and_then(|m| m.get(k)))
            .filter(|v| !v.is_empty())
            .cloned()
    };
    let p = Profile {
        name: name.clone(),
        access_key_id: pick("aws_access_key_id"),
        secret_access_key: pick("aws_secret_access_key"),
        session_token: pick("aws_session_token"),
        region: from_config
            .and_then(|m| m.get("region"))
            .filter(|v| !v.is_empty())
            .cloned(),
        endpoint_url: from_config
            .and_then(|m| m.get("s3.endpoint_url").or_else(|| m.get("endpoint_url")))
            .filter(|v| !v.is_empty())
            .cloned(),
    };
    if p.access_key_id.is_none() {
        let needs = [
            ("sso_session", "AWS SSO"),
            ("sso_start_url", "AWS SSO"),
            ("credential_process", "credential_process"),
            ("role_arn", "an assumed role (role_arn)"),
        ]
        .into_iter()
        .find(|(k, _)| pick(k).is_some());
        if let Some((_, what)) = needs {
            return Err(format!(
                "AWS profile `{name}` gets its credentials from {what}, which ckpt does not run; \
                 export them first: eval \"$(aws configure export-credentials --profile {name} --format env)\""
            ));
        }
    }
    Ok(Some(p))
}

fn shown(p: &Option<PathBuf>) -> String {
    p.as_deref()
        .map_or_else(|| "~/.aws".to_owned(), |p: &Path| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn reads_keys_region_and_endpoint_of_the_named_profile() {
        let d = tempfile::tempdir().unwrap();
        let creds = d.path().join("credentials");
        let config = d.path().join("config");
        std::fs::write(
            &creds,
            "# comment\n[default]\naws_access_key_id = AKDEF\naws_secret_access_key=SDEF\n\n\
             [work]\naws_access_key_id = AKWORK\naws_secret_access_key = SWORK\naws_session_token = TOK\n",
        )
        .unwrap();
        std::fs::write(
            &config,
            "[default]\nregion = eu-west-1\n[profile work]\nregion = us-west-2\ns3 =\n  endpoint_url = http://127.0.0.1:9000\n",
        )
        .unwrap();
        let base = vec![
            ("AWS_SHARED_CREDENTIALS_FILE", creds.display().to_string()),
            ("AWS_CONFIG_FILE", config.display().to_string()),
        ];
        let p = load(&env(base.clone())).unwrap().unwrap();
        assert_eq!(p.name, "default");
        assert_eq!(p.access_key_id.as_deref(), Some("AKDEF"));
        assert_eq!(p.secret_access_key.as_deref(), Some("SDEF"));
        assert_eq!(p.session_token, None);
        assert_eq!(p.region.as_deref(), Some("eu-west-1"));
        assert_eq!(p.endpoint_url, None);

        let mut w = base.clone();
        w.push(("AWS_PROFILE", "work".into()));
        let p = load(&env(w)).unwrap().unwrap();
        assert_eq!(p.access_key_id.as_deref(), Some("AKWORK"));
        assert_eq!(p.session_token.as_deref(), Some("TOK"));
        assert_eq!(p.region.as_deref(), Some("us-west-2"));
        assert_eq!(p.endpoint_url.as_deref(), Some("http://127.0.0.1:9000"));

        let mut m = base;
        m.push(("AWS_PROFILE", "missing".into()));
        let e = load(&env(m)).unwrap_err();
        assert!(e.contains("AWS_PROFILE=missing: no such profile"), "{e}");
    }

    #[test]
    fn no_files_is_no_profile_and_sso_is_refused_with_the_export_command() {
        let d = tempfile::tempdir().unwrap();
        let none = env(vec![("HOME", d.path().display().to_string())]);
        assert_eq!(load(&none).unwrap(), None);

        let config = d.path().join("config");
        std::fs::write(
            &config,
            "[profile sso]\nsso_session = corp\nregion = us-east-2\n",
        )
        .unwrap();
        let e = load(&env(vec![
            ("HOME", d.path().display().to_string()),
            ("AWS_CONFIG_FILE", config.display().to_string()),
            ("AWS_PROFILE", "sso".into()),
        ]))
        .unwrap_err();
        assert!(e.contains("AWS SSO"), "{e}");
        assert!(
            e.contains("aws configure export-credentials --profile sso --format env"),
            "{e}"
        );
    }
}

//! One `ObjectStore` per (scheme, bucket, endpoint), built from the environment on first use.
//!
//! S3: every `AWS_*` variable object_store knows (keys, session token, `AWS_ENDPOINT_URL`,
//! `AWS_ALLOW_HTTP`, `AWS_REGION`, web identity, container credentials, `AWS_SKIP_SIGNATURE`),
//! then [`super::Config::endpoint`] (`--endpoint`, which wins over the environment; an
//! `http://` endpoint given there allows plain HTTP), then the shared credentials/config files
//! ([`super::aws_profile`]) for what is still missing. The region: environment, profile, else
//! (only against AWS itself, no custom endpoint) asked of S3 with one HEAD per bucket per
//! process, else `us-east-1`. GCS and Azure read their own variables (`GOOGLE_*`, `AZURE_*`).
//!
//! Every store gets ckpt's retry policy ([`retry_config`]), a 5 s connect timeout (so a
//! machine without credentials does not wait on the instance-metadata probe for long) and the
//! counting HTTP layer.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::client::ReqwestConnector;
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::{BackoffConfig, ClientConfigKey, ClientOptions, ObjectStore, RetryConfig};

use super::http::CountingConnector;
use super::{aws_profile, rt};
use crate::{RemoteUrl, Scheme};

type Key = (Scheme, String, Option<String>);

static STORES: Stores<Key> = OnceLock::new();
type Stores<K> = OnceLock<Mutex<HashMap<K, Arc<dyn ObjectStore>>>>;
static TEST_STORES: Stores<(Scheme, String)> = OnceLock::new();
static REGIONS: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
static CONFIG: Mutex<Option<super::Config>> = Mutex::new(None);

/// Install the CLI's settings (see [`super::configure`]).
pub fn set_config(cfg: super::Config) {
    if let Ok(mut g) = CONFIG.lock() {
        *g = Some(cfg);
    }
}

fn config() -> super::Config {
    CONFIG
        .lock()
        .ok()
        .and_then(|g| g.clone())
        .unwrap_or_default()
}

/// Use `store` for every URL of `scheme://bucket` (tests: an in-memory store, no server).
pub fn register_for_tests(scheme: Scheme, bucket: &str, store: Arc<dyn ObjectStore>) {
    let m = TEST_STORES.get_or_init(Default::default);
    if let Ok(mut g) = m.lock() {
        g.insert((scheme, bucket.to_owned()), store);
    }
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

fn env_u64(k: &str) -> Option<u64> {
    env(k).and_then(|v| v.trim().parse().ok())
}

/// Retries: 4 (`CKPT_IO_RETRIES`), for at most 60 s (`CKPT_IO_RETRY_TIMEOUT_MS`), backing
/// off from 100 ms (`CKPT_IO_BACKOFF_MS`, so tests are quick) doubling up to 5 s. object_store's
/// default (10 retries over 3 minutes) makes a dead server look like a hang.
pub fn retry_config() -> RetryConfig {
    let init = Duration::from_millis(env_u64("CKPT_IO_BACKOFF_MS").unwrap_or(100));
    let max = Duration::from_secs(5).max(init);
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: init,
            max_backoff: max,
            base: 2.0,
        },
        max_retries: env_u64("CKPT_IO_RETRIES").map_or(4, |n| n.min(100) as usize),
        retry_timeout: Duration::from_millis(env_u64("CKPT_IO_RETRY_TIMEOUT_MS").unwrap_or(60_000)),
    }
}

/// The HTTP client settings: a 60 s request timeout and a 5 s connect timeout, unless the
/// environment set its own (`AWS_TIMEOUT`, `GOOGLE_CONNECT_TIMEOUT`, …).
fn timeouts(opts: ClientOptions) -> ClientOptions {
    opts.with_timeout(Duration::from_secs(60))
        .with_connect_timeout(Duration::from_secs(5))
}

/// The store for `url`'s bucket, built once per process.
pub fn store_for(url: &RemoteUrl) -> io::Result<Arc<dyn ObjectStore>> {
    if let Some(m) = TEST_STORES.get()
        && let Ok(g) = m.lock()
        && let Some(s) = g.get(&(url.scheme, url.bucket.clone()))
    {
        return Ok(s.clone());
    }
    let cfg = config();
    let key: Key = (url.scheme, url.bucket.clone(), cfg.endpoint.clone());
    let m = STORES.get_or_init(Default::default);
    if let Ok(g) = m.lock()
        && let Some(s) = g.get(&key)
    {
        return Ok(s.clone());
    }
    let built: Arc<dyn ObjectStore> = match url.scheme {
        Scheme::S3 => Arc::new(build_s3(&url.bucket, &cfg)?),
        Scheme::Gs => Arc::new(build_gcs(&url.bucket)?),
        Scheme::Az => Arc::new(build_azure(&url.bucket)?),
    };
    if let Ok(mut g) = m.lock() {
        g.entry(key).or_insert_with(|| built.clone());
    }
    Ok(built)
}

fn build_error(url: String, e: impl std::fmt::Display) -> io::Error {
    super::RemoteError {
        url,
        request: "connect".into(),
        kind: super::RemoteErrorKind::Other,
        status: None,
        code: None,
        request_id: None,
        retries: 0,
        detail: Some(e.to_string()),
    }
    .into_io()
}

/// Where S3 credentials are looked for, in order, for "access denied" messages.
pub const S3_CHAIN: &str = "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN), \
    AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN, the ECS/EKS container credentials, \
    the shared files ~/.aws/credentials and ~/.aws/config (AWS_PROFILE), \
    the EC2 instance metadata service; AWS_SKIP_SIGNATURE=true for public buckets";
/// Where GCS credentials are looked for.
pub const GCS_CHAIN: &str = "GOOGLE_SERVICE_ACCOUNT / GOOGLE_SERVICE_ACCOUNT_PATH / \
    GOOGLE_SERVICE_ACCOUNT_KEY, the application default credentials \
    (~/.config/gcloud/application_default_credentials.json), the GCE metadata server";
/// Where Azure credentials are looked for.
pub const AZURE_CHAIN: &str = "AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY or \
    AZURE_STORAGE_SAS_KEY, AZURE_CLIENT_ID/AZURE_CLIENT_SECRET/AZURE_TENANT_ID, \
    AZURE_FEDERATED_TOKEN_FILE, the Azure CLI, the instance metadata service";

/// The credential chain of `scheme`, for messages.
pub fn chain(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::S3 => S3_CHAIN,
        Scheme::Gs => GCS_CHAIN,
        Scheme::Az => AZURE_CHAIN,
    }
}

fn build_s3(bucket: &str, cfg: &super::Config) -> io::Result<object_store::aws::AmazonS3> {
    let url = format!("s3://{bucket}");
    let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Some(ep) = &cfg.endpoint {
        b = b.with_endpoint(ep.clone());
        if ep.starts_with("http://") {
            b = b.with_allow_http(true);
        }
    }
    let has_keys = b
        .get_config_value(&AmazonS3ConfigKey::AccessKeyId)
        .is_some();
    let other_source = [
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ]
    .iter()
    .any(|k| env(k).is_some())
        || b.get_config_value(&AmazonS3ConfigKey::SkipSignature)
            .is_some_and(|v| v == "true");
    let need_profile = !has_keys && !other_source;
    let need_region = b.get_config_value(&AmazonS3ConfigKey::Region).is_none();
    let has_endpoint = b.get_config_value(&AmazonS3ConfigKey::Endpoint).is_some();
    let mut endpoint_set = has_endpoint;
    if need_profile || need_region || !has_endpoint {
        let profile = aws_profile::load(&env)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{url}: {e}")))?;
        if let Some(p) = profile {
            if need_profile && let (Some(k), Some(s)) = (&p.access_key_id, &p.secret_access_key) {
                b = b
                    .with_access_key_id(k.clone())
                    .with_secret_access_key(s.clone());
                if let Some(t) = &p.session_token {
                    b = b.with_token(t.clone());
                }
            }
            if need_region && let Some(r) = &p.region {
                b = b.with_region(r.clone());
            }
            if !has_endpoint && let Some(e) = &p.endpoint_url {
                b = b.with_endpoint(e.clone());
                endpoint_set = true;
            }
        }
    }
    if b.get_config_value(&AmazonS3ConfigKey::Region).is_none()
        && !endpoint_set
        && let Some(r) = bucket_region(bucket)?
    {
        b = b.with_region(r);
    }
    // object_store panics on an endpoint it cannot parse (inside the request, where ckpt can
    // only say "a request panicked"): whatever gave it (--endpoint, AWS_ENDPOINT_URL, a
    // profile), a bad one is refused here, named.
    if let Some(ep) = b.get_config_value(&AmazonS3ConfigKey::Endpoint)
        && !valid_endpoint(&ep)
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{url}: endpoint {ep:?} is not an http:// or https:// URL with a host"),
        ));
    }
    for (k, v) in [
        (ClientConfigKey::Timeout, "60s"),
        (ClientConfigKey::ConnectTimeout, "5s"),
    ] {
        if b.get_config_value(&AmazonS3ConfigKey::Client(k)).is_none() {
            b = b.with_config(AmazonS3ConfigKey::Client(k), v);
        }
    }
    b.with_retry(retry_config())
        .with_http_connector(CountingConnector(ReqwestConnector::default()))
        .build()
        .map_err(|e| build_error(url, e))
}

/// `http://host[:port][/path]` or `https://…`, with a non-empty host.
fn valid_endpoint(ep: &str) -> bool {
    let rest = ep
        .strip_prefix("http://")
        .or_else(|| ep.strip_prefix("https://"));
    rest.and_then(|r| r.split(['/', ':']).next())
        .is_some_and(|host| !host.is_empty() && !host.contains(char::is_whitespace))
}

/// The region of an AWS bucket, asked once per process (`x-amz-bucket-region` of a HEAD on
/// the bucket). `None` when it cannot be asked (no network): the request that follows then
/// fails with its own message. A bucket AWS says does not exist is `NotFound`.
fn bucket_region(bucket: &str) -> io::Result<Option<String>> {
    let m = REGIONS.get_or_init(Default::default);
    if let Ok(g) = m.lock()
        && let Some(r) = g.get(bucket)
    {
        return Ok(Some(r.clone()));
    }
    let b = bucket.to_owned();
    let opts = timeouts(ClientOptions::new());
    let r = rt::run(async move { Ok(object_store::aws::resolve_bucket_region(&b, &opts).await) })?;
    match r {
        Ok(region) => {
            if let Ok(mut g) = m.lock() {
                g.insert(bucket.to_owned(), region.clone());
            }
            Ok(Some(region))
        }
        Err(object_store::Error::NotFound { .. }) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("s3://{bucket}: no such bucket"),
        )),
        Err(e) if e.to_string().contains("not found") || e.to_string().contains("Bucket") => Err(
            io::Error::new(io::ErrorKind::NotFound, format!("s3://{bucket}: {e}")),
        ),
        Err(_) => Ok(None),
    }
}

fn build_gcs(bucket: &str) -> io::Result<object_store::gcp::GoogleCloudStorage> {
    let mut b = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
    for (k, v) in [
        (ClientConfigKey::Timeout, "60s"),
        (ClientConfigKey::ConnectTimeout, "5s"),
    ] {
        if b.get_config_value(&GoogleConfigKey::Client(k)).is_none() {
            b = b.with_config(GoogleConfigKey::Client(k), v);
        }
    }
    b.with_retry(retry_config())
        .with_http_connector(CountingConnector(ReqwestConnector::default()))
        .build()
        .map_err(|e| build_error(format!("gs://{bucket}"), e))
}

fn build_azure(container: &str) -> io::Result<object_store::azure::MicrosoftAzure> {
    let mut b = MicrosoftAzureBuilder::from_env().with_container_name(container);
    for (k, v) in [
        (ClientConfigKey::Timeout, "60s"),
        (ClientConfigKey::ConnectTimeout, "5s"),
    ] {
        if b.get_config_value(&AzureConfigKey::Client(k)).is_none() {
            b = b.with_config(AzureConfigKey::Client(k), v);
        }
    }
    b.with_retry(retry_config())
        .with_http_connector(CountingConnector(ReqwestConnector::default()))
        .build()
        .map_err(|e| build_error(format!("az://{container}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_policy_defaults() {
        // The variables are not set in the test environment (the S3 tests of slice D set them
        // for the binary they run, not for this process).
        if env("CKPT_IO_RETRIES").is_none() && env("CKPT_IO_BACKOFF_MS").is_none() {
            let r = retry_config();
            assert_eq!(r.max_retries, 4);
            assert_eq!(r.retry_timeout, Duration::from_secs(60));
            assert_eq!(r.backoff.init_backoff, Duration::from_millis(100));
            assert_eq!(r.backoff.max_backoff, Duration::from_secs(5));
        }
    }

    #[test]
    fn endpoints_that_are_not_http_urls_are_refused() {
        assert!(valid_endpoint("http://127.0.0.1:9000"));
        assert!(valid_endpoint("https://s3.example.com/base"));
        for bad in [
            "notaurl",
            "127.0.0.1:9000",
            "http://",
            "ftp://h",
            "http://:9000",
        ] {
            assert!(!valid_endpoint(bad), "{bad}");
        }
    }

    #[test]
    fn an_explicit_endpoint_builds_an_s3_store_without_any_request() {
        let cfg = super::super::Config {
            endpoint: Some("http://127.0.0.1:1".into()),
        };
        // Static keys so no credential provider is probed; no request is made at build time.
        let s = build_s3("ckpt-test-bucket", &cfg);
        assert!(s.is_ok(), "{:?}", s.err());
    }

    #[test]
    fn gcs_and_azure_build_or_say_why_not() {
        // Without credentials in the environment GCS falls back to the metadata server at
        // request time (the build succeeds); Azure needs an account name and says so.
        match build_gcs("ckpt-test-bucket") {
            Ok(s) => assert!(s.to_string().contains("ckpt-test-bucket"), "{s}"),
            Err(e) => assert!(
                e.to_string()
                    .starts_with("gs://ckpt-test-bucket: connect: "),
                "{e}"
            ),
        }
        match build_azure("ckpt-test-container") {
            Ok(s) => assert!(s.to_string().contains("ckpt-test-container"), "{s}"),
            Err(e) => {
                assert!(
                    e.to_string()
                        .starts_with("az://ckpt-test-container: connect: "),
                    "{e}"
                );
            }
        }
    }
}

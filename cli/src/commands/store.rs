//! The repository's storage, from `--repo` / `EXARCH_REPOSITORY`: a local directory, or an object
//! store (S3-compatible, Azure Blob) signed in with what the environment or the `--s3-*` flags give.

use crate::args::Global;
use anyhow::{Context as _, Result};
use exarch_archive::storage::{AzblobConfig, Location, ObjectStorage, S3Config};
use exarch_archive::{LocalStorage, Storage};
use secrecy::SecretString;
use std::sync::Arc;

fn env_secret(name: &str) -> Option<SecretString> {
    std::env::var(name).ok().filter(|v| !v.is_empty()).map(SecretString::from)
}

/// Where the repository is, parsed (a usage error for a malformed URL).
pub fn location(g: &Global) -> Result<Location> {
    let repo =
        g.repo.as_ref().ok_or_else(|| crate::usage("no repository: pass --repo DIR|URL or set EXARCH_REPOSITORY"))?;
    Ok(Location::parse(repo.as_os_str())?)
}

pub fn storage(g: &Global) -> Result<Arc<dyn Storage>> {
    let s = &g.store;
    Ok(match location(g)? {
        Location::Local(path) => Arc::new(LocalStorage::new(path)),
        Location::S3 { endpoint, bucket, prefix } => {
            let endpoint = endpoint.or_else(|| s.s3_endpoint.clone()).ok_or_else(|| {
                crate::usage("s3:BUCKET needs an endpoint: write s3:https://HOST/BUCKET, or set AWS_ENDPOINT_URL")
            })?;
            let secret = match &s.s3_secret_key_file {
                Some(f) => Some(crate::secrets::read_file(f)?),
                None => env_secret("AWS_SECRET_ACCESS_KEY"),
            };
            let c = S3Config {
                endpoint,
                bucket,
                prefix,
                region: s.s3_region.clone(),
                access_key_id: s.s3_access_key_id.clone().map(SecretString::from),
                secret_access_key: secret,
                session_token: env_secret("AWS_SESSION_TOKEN"),
            };
            Arc::new(ObjectStorage::s3(&c).context("setting up the S3 repository")?)
        }
        Location::Azblob { endpoint, container, prefix } => {
            let c = AzblobConfig {
                endpoint,
                container,
                prefix,
                account_name: s.azure_account.clone(),
                account_key: env_secret("AZURE_STORAGE_KEY"),
            };
            Arc::new(ObjectStorage::azblob(&c).context("setting up the Azure Blob repository")?)
        }
    })
}

//! Repository locations as users write them (`--repo`, `EXARCH_REPOSITORY`): a plain path is a local
//! directory; `s3:https://HOST[:PORT]/BUCKET[/PREFIX]` an S3-compatible store (also
//! `s3:BUCKET[/PREFIX]` with the endpoint from elsewhere, e.g. `AWS_ENDPOINT_URL`);
//! `azblob:https://ACCOUNT.blob.core.windows.net/CONTAINER[/PREFIX]` Azure Blob Storage.

use crate::error::{Error, Result};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3 { endpoint: Option<String>, bucket: String, prefix: String },
    Azblob { endpoint: String, container: String, prefix: String },
}

/// Splits `https://host/first/rest…` into (`https://host`, `first`, `rest…`).
fn split_url(url: &str) -> Option<(String, String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    if !(scheme == "https" || scheme == "http") {
        return None;
    }
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() || host.contains('@') {
        return None; // no credentials in URLs: they would show in messages and process lists
    }
    let path = path.trim_matches('/');
    let (first, prefix) = path.split_once('/').unwrap_or((path, ""));
    Some((format!("{scheme}://{host}"), first.to_string(), prefix.trim_matches('/').to_string()))
}

fn valid_bucket(b: &str) -> bool {
    !b.is_empty()
        && b.len() <= 63
        && b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_')
}

impl Location {
    pub fn parse(s: &std::ffi::OsStr) -> Result<Location> {
        let Some(text) = s.to_str() else { return Ok(Location::Local(PathBuf::from(s))) };
        let usage = |what: &str| Error::Usage(format!("repository {text}: {what}"));
        if let Some(rest) = text.strip_prefix("s3:") {
            if rest.starts_with("http://") || rest.starts_with("https://") {
                let (endpoint, bucket, prefix) = split_url(rest).ok_or_else(|| {
                    usage("expected s3:https://HOST[:PORT]/BUCKET[/PREFIX] (no user or password in it)")
                })?;
                if !valid_bucket(&bucket) {
                    return Err(usage("the bucket name is missing or not valid"));
                }
                return Ok(Location::S3 { endpoint: Some(endpoint), bucket, prefix });
            }
            let rest = rest.trim_matches('/');
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if !valid_bucket(bucket) {
                return Err(usage("expected s3:https://HOST[:PORT]/BUCKET[/PREFIX] or s3:BUCKET[/PREFIX]"));
            }
            return Ok(Location::S3 { endpoint: None, bucket: bucket.into(), prefix: prefix.trim_matches('/').into() });
        }
        if let Some(rest) = text.strip_prefix("azblob:") {
            let (endpoint, container, prefix) = split_url(rest)
                .filter(|(_, c, _)| valid_bucket(c))
                .ok_or_else(|| usage("expected azblob:https://ACCOUNT.blob.core.windows.net/CONTAINER[/PREFIX]"))?;
            return Ok(Location::Azblob { endpoint, container, prefix });
        }
        Ok(Location::Local(PathBuf::from(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn p(s: &str) -> Result<Location> {
        Location::parse(OsStr::new(s))
    }

    #[test]
    fn locations_as_users_write_them() {
        assert_eq!(p("/mnt/nas/exarch").unwrap(), Location::Local("/mnt/nas/exarch".into()));
        assert_eq!(p("relative/dir").unwrap(), Location::Local("relative/dir".into()));
        assert_eq!(
            p("s3:http://127.0.0.1:3900/backups/site-a/exarch/").unwrap(),
            Location::S3 {
                endpoint: Some("http://127.0.0.1:3900".into()),
                bucket: "backups".into(),
                prefix: "site-a/exarch".into()
            }
        );
        assert_eq!(
            p("s3:https://s3.example.com/b").unwrap(),
            Location::S3 { endpoint: Some("https://s3.example.com".into()), bucket: "b".into(), prefix: "".into() }
        );
        assert_eq!(
            p("s3:bucket/x").unwrap(),
            Location::S3 { endpoint: None, bucket: "bucket".into(), prefix: "x".into() }
        );
        assert_eq!(
            p("azblob:https://acct.blob.core.windows.net/c/p").unwrap(),
            Location::Azblob {
                endpoint: "https://acct.blob.core.windows.net".into(),
                container: "c".into(),
                prefix: "p".into()
            }
        );
        for bad in
            ["s3:", "s3:https://", "s3:https://host", "s3:https://key:secret@host/b", "s3:ftp://h/b", "azblob:c/p"]
        {
            let e = p(bad).unwrap_err();
            assert_eq!(e.class(), crate::ErrorClass::Usage, "{bad}: {e}");
        }
    }
}

//! A repository on an object store, through Apache OpenDAL: S3 and S3-compatible stores (Garage,
//! Ceph RGW, MinIO; path-style addressing) and Azure Blob Storage. Objects are named by the same
//! layout as the local directory (`storage::relative_path`) under a prefix, so a repository copied
//! between a disk and a bucket with any tool opens unchanged.
//!
//! OpenDAL's blocking operator runs its requests on a small Tokio runtime this storage owns; callers
//! stay synchronous. A PUT of a whole object is atomic on these stores, and they give
//! read-after-write and list-after-write consistency, which is all the contract asks. Requests are
//! counted for the `--json` summaries.

use super::window_cache::WindowCache;
use super::{listed_name, relative_path, FileKind, Storage, Upload};
use crate::error::{Error, Result};
use opendal::{blocking, options, ErrorKind, Operator};
use secrecy::{ExposeSecret as _, SecretString};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where an S3 repository is and how to sign in.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// `https://host[:port]` (or `http://` for a store on loopback).
    pub endpoint: String,
    pub bucket: String,
    /// Path inside the bucket, without leading or trailing `/` (may be empty).
    pub prefix: String,
    pub region: String,
    pub access_key_id: Option<SecretString>,
    pub secret_access_key: Option<SecretString>,
    pub session_token: Option<SecretString>,
}

/// Where an Azure Blob repository is and how to sign in (shared key).
#[derive(Debug, Clone)]
pub struct AzblobConfig {
    /// `https://<account>.blob.core.windows.net`
    pub endpoint: String,
    pub container: String,
    pub prefix: String,
    pub account_name: Option<String>,
    pub account_key: Option<SecretString>,
}

/// Requests sent to object stores by this process, by kind (for `--json` summaries and the log).
#[derive(Debug, Default)]
struct Requests {
    get: AtomicU64,
    put: AtomicU64,
    list: AtomicU64,
    stat: AtomicU64,
    delete: AtomicU64,
}

static REQUESTS: Requests = Requests {
    get: AtomicU64::new(0),
    put: AtomicU64::new(0),
    list: AtomicU64::new(0),
    stat: AtomicU64::new(0),
    delete: AtomicU64::new(0),
};

/// What [`request_counts`] returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestCounts {
    pub get: u64,
    pub put: u64,
    pub list: u64,
    pub stat: u64,
    pub delete: u64,
}

impl RequestCounts {
    pub fn total(&self) -> u64 {
        self.get + self.put + self.list + self.stat + self.delete
    }
}

/// Requests this process has sent to object stores so far (all zero for local repositories).
pub fn request_counts() -> RequestCounts {
    let r = &REQUESTS;
    RequestCounts {
        get: r.get.load(Ordering::Relaxed),
        put: r.put.load(Ordering::Relaxed),
        list: r.list.load(Ordering::Relaxed),
        stat: r.stat.load(Ordering::Relaxed),
        delete: r.delete.load(Ordering::Relaxed),
    }
}

pub struct ObjectStorage {
    op: blocking::Operator,
    /// Runs the operator's requests; kept alive as long as the operator.
    _runtime: tokio::runtime::Runtime,
    url: String,
    windows: WindowCache,
}

impl std::fmt::Debug for ObjectStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectStorage({})", self.url)
    }
}

fn root(prefix: &str) -> String {
    let p = prefix.trim_matches('/');
    if p.is_empty() {
        "/".into()
    } else {
        format!("/{p}/")
    }
}

impl ObjectStorage {
    /// An S3 (or S3-compatible) store. Nothing is read from `~/.aws`: the caller passes what the
    /// environment or the command line gave.
    pub fn s3(c: &S3Config) -> Result<ObjectStorage> {
        // The process-wide HTTP transport (reqwest with rustls); installing it twice is harmless.
        opendal::install_default();
        let mut b = opendal::services::S3::default()
            .endpoint(&c.endpoint)
            .bucket(&c.bucket)
            .root(&root(&c.prefix))
            .region(&c.region)
            .disable_config_load();
        if let Some(k) = &c.access_key_id {
            b = b.access_key_id(k.expose_secret());
        }
        if let Some(k) = &c.secret_access_key {
            b = b.secret_access_key(k.expose_secret());
        }
        if let Some(t) = &c.session_token {
            b = b.session_token(t.expose_secret());
        }
        let url = format!("s3:{}/{}{}", c.endpoint.trim_end_matches('/'), c.bucket, prefix_part(&c.prefix));
        Self::build(Operator::new(b), url)
    }

    /// An Azure Blob Storage container.
    pub fn azblob(c: &AzblobConfig) -> Result<ObjectStorage> {
        opendal::install_default();
        let mut b =
            opendal::services::Azblob::default().endpoint(&c.endpoint).container(&c.container).root(&root(&c.prefix));
        if let Some(a) = &c.account_name {
            b = b.account_name(a);
        }
        if let Some(k) = &c.account_key {
            b = b.account_key(k.expose_secret());
        }
        let url = format!("azblob:{}/{}{}", c.endpoint.trim_end_matches('/'), c.container, prefix_part(&c.prefix));
        Self::build(Operator::new(b), url)
    }

    fn build(op: opendal::Result<Operator>, url: String) -> Result<ObjectStorage> {
        let config = |e: opendal::Error| Error::Usage(format!("{url}: {}", e.message()));
        let op = op.map_err(config)?.layer(opendal::layers::RetryLayer::new().with_max_times(4).with_jitter()).layer(
            opendal::layers::TimeoutLayer::new()
                .with_timeout(std::time::Duration::from_secs(120))
                .with_io_timeout(std::time::Duration::from_secs(60)),
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("exarch-store")
            .enable_all()
            .build()
            .map_err(|e| Error::Store {
                location: url.clone(),
                detail: format!("cannot start its I/O threads: {e}"),
            })?;
        let op = {
            let _in = runtime.enter();
            blocking::Operator::new(op).map_err(config)?
        };
        Ok(ObjectStorage { op, _runtime: runtime, url, windows: WindowCache::default() })
    }

    fn err(&self, path: &str, e: opendal::Error) -> Error {
        let location = format!("{}/{path}", self.url);
        Error::Store { location, detail: describe_error(&e) }
    }

    fn count(&self, c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A file read by range that is not there: damage (something names it), not "not found".
    fn missing(&self, kind: FileKind, name: &str) -> Error {
        Error::damaged(format!("{} {name}", kind.dir()), format!("missing object {}", self.location(kind, name)))
    }

    /// One ranged GET; a short object is damage.
    fn raw_range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let path = relative_path(kind, name);
        self.count(&REQUESTS.get);
        let range = opendal::BytesRange::new(offset, Some(len as u64));
        let short = |got: usize| {
            Error::damaged(
                format!("{} {name}", kind.dir()),
                format!("truncated: wanted {len} bytes at offset {offset}, the object ends after {got}"),
            )
        };
        match self.op.read_options(&path, options::ReadOptions { range, ..Default::default() }) {
            Ok(b) if b.len() == len => Ok(b.to_vec()),
            Ok(b) => Err(short(b.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(self.missing(kind, name)),
            // The range runs past the end (416, or a reply shorter than asked, which OpenDAL
            // reports as its own error): the object's size tells which.
            Err(e) => match self.size(kind, name) {
                Ok(size) if offset + len as u64 > size => Err(short(size.saturating_sub(offset) as usize)),
                _ => Err(self.err(&path, e)),
            },
        }
    }

    /// Every object under `dir/` with its size (one LIST, paged by the store).
    fn list_dir(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        let dir = if kind == FileKind::Config { String::new() } else { format!("{}/", kind.dir()) };
        let recursive = kind == FileKind::Pack;
        self.count(&REQUESTS.list);
        let entries = match self.op.list_options(&dir, options::ListOptions { recursive, ..Default::default() }) {
            Ok(v) => v,
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(self.err(&dir, e)),
        };
        let mut out: Vec<(String, u64)> = entries
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .filter(|e| listed_name(kind, e.name()))
            .filter(|e| relative_path(kind, e.name()) == e.path())
            .map(|e| (e.name().to_string(), e.metadata().content_length()))
            .collect();
        out.sort();
        Ok(out)
    }
}

/// What the store said, in its own words (S3's `code` and `message`), the cause below it (a refused
/// connection, a TLS failure) and what to do — never the request's context, which can hold signed
/// URLs.
fn describe_error(e: &opendal::Error) -> String {
    let msg = e.message();
    let field = |name: &str| {
        let key = format!("{name}: \"");
        msg.find(&key).map(|i| &msg[i + key.len()..]).and_then(|r| r.split('"').next()).map(str::to_string)
    };
    let said = match (field("code"), field("message")) {
        (Some(c), Some(m)) if !m.is_empty() => format!("{c}: {m}"),
        (Some(c), _) => c,
        _ => msg.to_string(),
    };
    // (A HEAD reply has no body to say why: the kind of failure is all there is.)
    let said = if said.trim().is_empty() { e.kind().to_string() } else { said };
    let mut causes = String::new();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        causes.push_str(": ");
        causes.push_str(&c.to_string());
        src = c.source();
    }
    let hint = match (e.kind(), field("code").as_deref()) {
        (_, Some("NoSuchBucket")) => "; create the bucket first, or check the bucket in the URL",
        (ErrorKind::PermissionDenied, _)
        | (_, Some("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch")) => {
            "; check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or --s3-access-key-id, --s3-secret-key-file), \
             the region (--s3-region) and the key's rights on the bucket"
        }
        _ if msg.contains("credential") || causes.contains("credential") => {
            "; no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or --s3-access-key-id and \
             --s3-secret-key-file)"
        }
        (ErrorKind::Unexpected, _) if !causes.is_empty() => "; check the endpoint in the URL and that the store is up",
        _ => "",
    };
    let text = format!("{said}{causes}{hint}");
    text.chars().take(800).collect()
}

fn prefix_part(prefix: &str) -> String {
    let p = prefix.trim_matches('/');
    if p.is_empty() {
        String::new()
    } else {
        format!("/{p}")
    }
}

impl Storage for ObjectStorage {
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        let path = relative_path(kind, name);
        self.count(&REQUESTS.put);
        self.op.write(&path, data.to_vec()).map(|_| ()).map_err(|e| self.err(&path, e))
    }

    /// Gathered in memory and stored with one PUT, without a copy of the gathered bytes.
    fn finish_upload(&self, upload: Upload, name: &str) -> Result<()> {
        let path = relative_path(upload.kind(), name);
        let bytes = upload.into_bytes()?;
        self.count(&REQUESTS.put);
        self.op.write(&path, bytes).map(|_| ()).map_err(|e| self.err(&path, e))
    }

    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let path = relative_path(kind, name);
        self.count(&REQUESTS.get);
        match self.op.read(&path) {
            Ok(b) => Ok(b.to_vec()),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(Error::NotFound(format!("{} {name}", kind.dir()))),
            Err(e) => Err(self.err(&path, e)),
        }
    }

    fn get_range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.read_into(kind, name, offset, &mut buf)?;
        Ok(buf)
    }

    fn read_into(&self, kind: FileKind, name: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        if kind == FileKind::Pack && WindowCache::wants(buf.len()) {
            let size = match self.windows.size_of(name) {
                Some(s) => s,
                None => {
                    let s = self.size(kind, name).map_err(|e| match e {
                        Error::NotFound(_) => self.missing(kind, name),
                        e => e,
                    })?;
                    self.windows.note_size(name, s);
                    s
                }
            };
            // (A read that ends at the pack's end is its header: read alone.)
            let tail = offset + buf.len() as u64 == size;
            if !tail
                && self.windows.read(name, size, offset, buf, |start, len| self.raw_range(kind, name, start, len))?
            {
                return Ok(());
            }
        }
        let v = self.raw_range(kind, name, offset, buf.len())?;
        buf.copy_from_slice(&v);
        Ok(())
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        let path = relative_path(kind, name);
        self.count(&REQUESTS.stat);
        match self.op.stat(&path) {
            Ok(m) => Ok(m.content_length()),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(Error::NotFound(format!("{} {name}", kind.dir()))),
            Err(e) => Err(self.err(&path, e)),
        }
    }

    fn list(&self, kind: FileKind) -> Result<Vec<String>> {
        Ok(self.list_dir(kind)?.into_iter().map(|(n, _)| n).collect())
    }

    fn list_sized(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        self.list_dir(kind)
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
        let path = relative_path(kind, name);
        self.count(&REQUESTS.delete);
        match self.op.delete(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(&path, e)),
        }
    }

    fn exists(&self, kind: FileKind, name: &str) -> Result<bool> {
        match self.size(kind, name) {
            Ok(_) => Ok(true),
            Err(Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn prepare_new(&self) -> Result<()> {
        // One LIST of the whole prefix, at most one entry: anything there refuses it. (Also proves
        // the bucket exists and the credentials work, before a passphrase is asked for twice.)
        self.count(&REQUESTS.list);
        let found = match self
            .op
            .list_options("", options::ListOptions { recursive: true, limit: Some(1), ..Default::default() })
        {
            Ok(v) => v.into_iter().any(|e| e.metadata().is_file()),
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(self.err("", e)),
        };
        if found {
            return Err(Error::AlreadyExists(self.url.clone()));
        }
        Ok(())
    }

    fn location(&self, kind: FileKind, name: &str) -> String {
        format!("{}/{}", self.url, relative_path(kind, name))
    }

    fn describe(&self) -> String {
        self.url.clone()
    }

    fn is_remote(&self) -> bool {
        true
    }
}

//! How the CLI reaches an EWS endpoint (`pack --ews`, `replay`): the URL without credentials, the
//! logon from flags, files or the environment (never from argv), and the client built from them.

use crate::args::{EwsConnArgs, LogonAuth};
use crate::usage;
use anyhow::Result;
use exarch_ews_source::client::{Auth, Client, ClientConfig};
use exarch_ews_source::export_stream::Limits;

/// The EWS endpoint without any credentials written into it, and the credentials to use. A user or
/// password in the URL is taken out (it would otherwise be stored in snapshots and printed) and
/// used only where no flag, file or environment variable gives one.
pub(super) fn endpoint(url: &str, a: &EwsConnArgs) -> Result<(String, Auth)> {
    let mut u = reqwest::Url::parse(url).map_err(|e| usage(format!("--ews {url:?}: not a URL ({e})")))?;
    if !matches!(u.scheme(), "https" | "http") {
        return Err(usage(format!(
            "--ews: the URL must start with https:// (or http:// for tests), not {}:",
            u.scheme()
        )));
    }
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    let (url_user, url_pass) = (decode(u.username()), u.password().map(decode));
    if !url_user.is_empty() || url_pass.is_some() {
        let _ = u.set_username("");
        let _ = u.set_password(None);
        crate::logging::warn(
            true,
            "warning: the --ews URL holds credentials; they are not stored or shown. A password on the command line \
             is visible to other users of this machine: prefer EXARCH_EWS_PASSWORD or --ews-password-file",
        );
    }
    let auth = auth_with(a, (!url_user.is_empty()).then_some(url_user), url_pass)?;
    Ok((u.to_string(), auth))
}

fn auth_with(a: &EwsConnArgs, url_user: Option<String>, url_pass: Option<String>) -> Result<Auth> {
    if let Some(t) = &a.token_file {
        return Ok(Auth::Bearer(crate::secrets::read_file(t)?));
    }
    let user = a.user.clone().or(url_user).ok_or_else(|| usage("--ews needs --user NAME (or --token-file FILE)"))?;
    let password = match (&a.ews_password_file, std::env::var("EXARCH_EWS_PASSWORD"), url_pass) {
        (Some(f), _, _) => crate::secrets::read_file(f)?,
        (None, Ok(p), _) if !p.is_empty() => p.into(),
        (None, _, Some(p)) => p.into(),
        _ => match &a.ews_password_command {
            Some(c) => crate::secrets::from_command("EWS password", c)?,
            None => {
                return Err(usage(
                    "no EWS password: set EXARCH_EWS_PASSWORD or pass --ews-password-file FILE or \
                     --ews-password-command CMD",
                ))
            }
        },
    };
    Ok(match a.auth {
        LogonAuth::Basic => Auth::Basic { user, password },
        LogonAuth::Ntlm => Auth::Ntlm { user, password },
        LogonAuth::Auto => Auth::Auto { user, password },
    })
}

/// How many requests a client keeps in flight, and how long one may take.
pub(super) struct Load {
    pub concurrency: usize,
    pub per_mailbox: usize,
    pub sync_concurrency: usize,
    pub timeout_secs: u64,
}

/// The EWS client for `url`, logging on as `auth`, with the TLS settings of `conn`.
pub(super) fn client(
    url: &str,
    auth: Auth,
    conn: &EwsConnArgs,
    load: Load,
    deadline: Option<std::time::Instant>,
    limits: Limits,
) -> Result<Client> {
    Ok(Client::new(ClientConfig {
        url: url.to_string(),
        auth,
        ca_cert: conn.ca_cert.clone(),
        channel_binding: conn.channel_binding(),
        concurrency: load.concurrency,
        per_mailbox: load.per_mailbox,
        sync_concurrency: load.sync_concurrency,
        timeout: std::time::Duration::from_secs(load.timeout_secs),
        deadline,
        limits,
    })?)
}

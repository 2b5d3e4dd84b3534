//! How the CLI reaches Microsoft Graph (`pack --graph`, `replay --graph`): the app registration
//! from flags, its secret from a file or `EXARCH_GRAPH_CLIENT_SECRET` (never argv) or its
//! certificate, and the client built from them. A wrong credential shows at once (exit 3).

use crate::args::{EwsConnArgs, GraphConnArgs};
use crate::usage;
use anyhow::{Context as _, Result};
use exarch_graph_source::{Credential, GraphClient, GraphConfig, GraphError, Limits};

/// The longest `Retry-After` waited out before a mailbox stops for the run.
const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

fn credential(a: &GraphConnArgs) -> Result<Credential> {
    if let Some(cert) = &a.client_cert {
        let mut pem = std::fs::read(cert).with_context(|| format!("reading --client-cert {}", cert.display()))?;
        if let Some(key) = &a.client_key {
            pem.push(b'\n');
            pem.extend(std::fs::read(key).with_context(|| format!("reading --client-key {}", key.display()))?);
        }
        let name = cert.display().to_string();
        return exarch_graph_source::assertion::CertificateKey::from_pem(&pem, &name)
            .map(|k| Credential::Certificate(Box::new(k)))
            .map_err(|e| usage(e.to_string()));
    }
    let secret = match (&a.client_secret_file, std::env::var("EXARCH_GRAPH_CLIENT_SECRET")) {
        (Some(f), _) => crate::secrets::read_file(f)?,
        (None, Ok(s)) if !s.is_empty() => s.into(),
        _ => match &a.client_secret_command {
            Some(c) => crate::secrets::from_command("client secret", c)?,
            None => {
                return Err(usage(
                    "--graph needs the app's credential: EXARCH_GRAPH_CLIENT_SECRET, --client-secret-file FILE, \
                     --client-secret-command CMD or --client-cert PEM",
                ))
            }
        },
    };
    Ok(Credential::Secret(secret))
}

/// The Graph client for `a`, signed in (so a refused credential ends the run before any work).
pub(super) fn client(
    a: &GraphConnArgs,
    tls: &EwsConnArgs,
    concurrency: usize,
    per_mailbox: usize,
    deadline: Option<std::time::Instant>,
    limits: Limits,
) -> Result<GraphClient> {
    let tenant =
        a.tenant.clone().ok_or_else(|| usage("--graph needs --tenant ID (the directory id or a verified domain)"))?;
    let client_id =
        a.client_id.clone().ok_or_else(|| usage("--graph needs --client-id ID (the app registration's)"))?;
    let c = GraphClient::new(GraphConfig {
        graph_url: a.graph_url.clone(),
        login_url: a.login_url.clone(),
        tenant,
        client_id,
        credential: credential(a)?,
        ca_cert: tls.ca_cert.clone(),
        concurrency,
        per_mailbox,
        timeout: std::time::Duration::from_secs(300),
        deadline,
        max_wait: MAX_WAIT,
        limits,
    })
    .map_err(|e| usage(e.to_string()))?;
    c.sign_in().map_err(auth_exit)?;
    Ok(c)
}

/// A refused sign-in is exit 3 (as a wrong passphrase is), with the identity platform's words.
pub(super) fn auth_exit(e: GraphError) -> anyhow::Error {
    match e {
        GraphError::Auth(why) => crate::Exit(
            crate::EXIT_KEY,
            format!("Microsoft identity platform: {why}. Check --tenant, --client-id and the secret or certificate"),
        )
        .into(),
        other => anyhow::Error::new(other),
    }
}

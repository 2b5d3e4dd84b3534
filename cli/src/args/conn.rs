//! How to reach and sign in to an EWS endpoint or Microsoft Graph: flags `pack` and `replay` share.

use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// How to reach and sign in to Microsoft Graph (`pack --graph`, `replay --graph`): an app
/// registration's tenant, client id and secret (from a file or the environment, never argv) or
/// certificate.
#[derive(Args, Debug, Clone)]
pub struct GraphConnArgs {
    /// Use Exchange Online through Microsoft Graph's mailbox import/export API (app-only sign-in
    /// with --tenant, --client-id and a secret or certificate; see README)
    #[arg(long)]
    pub graph: bool,
    /// With --graph: the tenant (directory) id or a verified domain
    #[arg(long, value_name = "ID", requires = "graph")]
    pub tenant: Option<String>,
    /// With --graph: the application (client) id of the app registration
    #[arg(long, value_name = "ID", requires = "graph")]
    pub client_id: Option<String>,
    /// With --graph: file holding the client secret (or set EXARCH_GRAPH_CLIENT_SECRET)
    #[arg(long, value_name = "FILE", requires = "graph", conflicts_with = "client_cert")]
    pub client_secret_file: Option<PathBuf>,
    /// With --graph: get the client secret from this command's first output line
    #[arg(long, env = "EXARCH_GRAPH_CLIENT_SECRET_COMMAND", value_name = "CMD", conflicts_with = "client_cert")]
    pub client_secret_command: Option<String>,
    /// With --graph: PEM file with the app's certificate and, unless --client-key names another
    /// file, its RSA private key (a signed assertion is sent; Microsoft recommends this over secrets)
    #[arg(long, value_name = "PEM", requires = "graph")]
    pub client_cert: Option<PathBuf>,
    /// With --client-cert: PEM file with the private key, when it is not in the certificate's file
    #[arg(long, value_name = "PEM", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// With --graph: the identity platform's authority host (token endpoint
    /// URL/{tenant}/oauth2/v2.0/token)
    #[arg(long, value_name = "URL", default_value = exarch_graph_source::DEFAULT_LOGIN_URL, requires = "graph")]
    pub login_url: String,
    /// With --graph: the Graph API base, with its version
    #[arg(long, value_name = "URL", default_value = exarch_graph_source::DEFAULT_GRAPH_URL, requires = "graph")]
    pub graph_url: String,
}

/// How to reach and log on to an EWS endpoint (shared by `pack --ews` and `replay`).
#[derive(Args, Debug, Clone)]
pub struct EwsConnArgs {
    /// EWS account (service account with impersonation rights); its password comes from
    /// EXARCH_EWS_PASSWORD or --ews-password-file
    #[arg(long)]
    pub user: Option<String>,
    /// File holding the EWS account's password
    #[arg(long, value_name = "FILE")]
    pub ews_password_file: Option<PathBuf>,
    /// Get the EWS account's password from this command's first output line
    #[arg(long, env = "EXARCH_EWS_PASSWORD_COMMAND", value_name = "CMD")]
    pub ews_password_command: Option<String>,
    /// File holding an OAuth access token (instead of a password)
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// How to log on with --user: ntlm (Windows authentication, on-premises default), basic, or
    /// auto (NTLM when the server offers it, else Basic)
    #[arg(long, value_enum, default_value_t = LogonAuth::Auto)]
    pub auth: LogonAuth,
    /// PEM file of a CA to trust for the EWS server's certificate
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// NTLM over HTTPS binds the logon to the TLS channel, as Extended Protection wants (auto);
    /// never: behind a TLS-inspecting proxy, whose certificate the server does not know
    #[arg(long, value_enum, default_value_t = ChannelBindingArg::Auto)]
    pub channel_binding: ChannelBindingArg,
}

impl EwsConnArgs {
    pub fn channel_binding(&self) -> exarch_ews_source::transport::ChannelBinding {
        match self.channel_binding {
            ChannelBindingArg::Auto => exarch_ews_source::transport::ChannelBinding::Auto,
            ChannelBindingArg::Never => exarch_ews_source::transport::ChannelBinding::Never,
        }
    }
}

/// `--channel-binding`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelBindingArg {
    Auto,
    Never,
}

/// How the client logs on with `--user`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogonAuth {
    /// NTLM when the server offers it, else Basic
    Auto,
    /// Windows authentication (the on-premises default)
    Ntlm,
    Basic,
}

//! Where passphrases come from: `EXARCH_PASSWORD`, a password file, a command (a secret store's
//! client: `--password-command`, its first output line), or a terminal prompt. Never from a
//! command-line value (it would show in `ps` and shell history), never printed.

use anyhow::{Context, Result};
use std::io::IsTerminal;
use std::path::Path;

/// No passphrase source was available (exit code 3).
#[derive(Debug)]
pub struct NoPassphrase;

impl std::fmt::Display for NoPassphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "no repository passphrase: set EXARCH_PASSWORD or EXARCH_PASSWORD_FILE, pass --password-file FILE or \
             --password-command CMD, or run on a terminal to be asked",
        )
    }
}
impl std::error::Error for NoPassphrase {}

/// A passphrase or password: its Debug output never shows it, and it is wiped from memory when
/// dropped. `.expose_secret()` where it must be used.
pub type Secret = secrecy::SecretString;
pub use secrecy::ExposeSecret;

pub fn read_file(path: &Path) -> Result<Secret> {
    let s = std::fs::read_to_string(path).with_context(|| format!("reading password file {}", path.display()))?;
    let line = exarch_archive::passphrase::first_line(&s).to_string();
    if line.is_empty() {
        anyhow::bail!("password file {} has an empty first line", path.display());
    }
    Ok(Secret::from(line))
}

/// The first line a command prints: a secret from a secret store (`pass show …`,
/// `security find-generic-password -w …`, a vault client). Its output is never shown; a failing
/// command is an error that names the command's exit status only.
pub fn from_command(what: &str, cmd: &str) -> Result<Secret> {
    let out = shell(cmd)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running the {what} command"))?;
    if !out.status.success() {
        anyhow::bail!("the {what} command failed ({}); its output is not shown", out.status);
    }
    let text = String::from_utf8(out.stdout)
        .map_err(|_| anyhow::anyhow!("the {what} command printed bytes that are not UTF-8"))?;
    let line = exarch_archive::passphrase::first_line(&text).to_string();
    if line.is_empty() {
        anyhow::bail!("the {what} command printed nothing");
    }
    Ok(Secret::from(line))
}

/// A command line run by the platform's shell.
#[cfg(not(windows))]
fn shell(cmd: &str) -> std::process::Command {
    let mut c = std::process::Command::new("sh");
    c.arg("-c").arg(cmd);
    c
}

#[cfg(windows)]
fn shell(cmd: &str) -> std::process::Command {
    let mut c = std::process::Command::new("cmd");
    c.arg("/C").arg(cmd);
    c
}

/// The repository passphrase: `EXARCH_PASSWORD`, a file, a command, or (asked twice with
/// `confirm`, for a new repository) a terminal prompt.
pub fn repository_passphrase(file: Option<&Path>, command: Option<&str>, confirm: bool) -> Result<Secret> {
    if let Ok(p) = std::env::var("EXARCH_PASSWORD") {
        if !p.is_empty() {
            return Ok(Secret::from(p));
        }
    }
    if let Some(f) = file {
        return read_file(f);
    }
    if let Some(c) = command.filter(|c| !c.trim().is_empty()) {
        return from_command("password", c);
    }
    prompt("Repository passphrase: ", confirm)
}

/// A new passphrase for `key add` / `key passwd`.
pub fn new_passphrase(file: Option<&Path>) -> Result<Secret> {
    match file {
        Some(f) => read_file(f),
        None => prompt("New passphrase: ", true),
    }
}

fn prompt(what: &str, confirm: bool) -> Result<Secret> {
    if !std::io::stdin().is_terminal() {
        return Err(NoPassphrase.into());
    }
    let p = rpassword::prompt_password(what).context("reading passphrase")?;
    if p.is_empty() {
        anyhow::bail!("empty passphrase");
    }
    if confirm {
        let again = rpassword::prompt_password("Repeat it: ").context("reading passphrase")?;
        if again != p {
            anyhow::bail!("the two passphrases differ");
        }
    }
    Ok(Secret::from(p))
}

//! Where passphrases come from: `EXARCH_PASSWORD`, a password file, or a terminal prompt. Never
//! from a command-line value (it would show in `ps` and shell history), never printed.

use anyhow::{Context, Result};
use std::io::IsTerminal;
use std::path::Path;

/// No passphrase source was available (exit code 3).
#[derive(Debug)]
pub struct NoPassphrase;

impl std::fmt::Display for NoPassphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "no repository passphrase: set EXARCH_PASSWORD or EXARCH_PASSWORD_FILE, pass --password-file FILE, or run on a terminal to be asked",
        )
    }
}
impl std::error::Error for NoPassphrase {}

/// A passphrase; its Debug output never shows the value.
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

pub fn read_file(path: &Path) -> Result<Secret> {
    let s = std::fs::read_to_string(path).with_context(|| format!("reading password file {}", path.display()))?;
    let line = s.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        anyhow::bail!("password file {} is empty", path.display());
    }
    Ok(Secret(line))
}

/// The repository passphrase. `confirm` asks twice on a terminal (for a new repository).
pub fn repository_passphrase(file: Option<&Path>, confirm: bool) -> Result<Secret> {
    if let Ok(p) = std::env::var("EXARCH_PASSWORD") {
        if !p.is_empty() {
            return Ok(Secret(p));
        }
    }
    if let Some(f) = file {
        return read_file(f);
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
    Ok(Secret(p))
}

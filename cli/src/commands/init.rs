//! `exarch init`: create a repository.

use crate::args::{Global, InitArgs};
use crate::secrets;
use crate::secrets::ExposeSecret as _;
use anyhow::{Context as _, Result};
use exarch_archive::{Context, InitOptions, LocalStorage, Repository};
use std::sync::Arc;

pub fn run(g: &Global, a: InitArgs) -> Result<()> {
    let path = super::repo_path(g)?;
    if path.exists() && std::fs::read_dir(&path).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(exarch_archive::Error::AlreadyExists(path).into());
    }
    let pass = secrets::repository_passphrase(g.password_file.as_deref(), g.password_command.as_deref(), true)?;
    let storage = LocalStorage::new(&path);
    storage.create_layout().with_context(|| format!("creating {}", path.display()))?;
    let opts = InitOptions { label: a.label, ..InitOptions::default() };
    let repo =
        Repository::init(Arc::new(storage), pass.expose_secret().as_bytes(), opts, Context::new(super::cache_root(g)))?;
    if g.json {
        super::print_json(&serde_json::json!({
            "repository": path.display().to_string(),
            "id": repo.config().id,
            "key": repo.current_slot(),
        }))?;
    } else if !g.quiet {
        println!("created exarch repository {} at {}", repo.config().id, path.display());
        println!("Keep the passphrase safe: without it (or another key slot) the data cannot be read.");
    }
    Ok(())
}

//! `exarch init`: create a repository.

use crate::args::{Global, InitArgs};
use crate::secrets;
use crate::secrets::ExposeSecret as _;
use anyhow::{Context as _, Result};
use exarch_archive::{Context, InitOptions, Repository};

pub fn run(g: &Global, a: InitArgs) -> Result<()> {
    let storage = super::storage(g)?;
    // Refuses a place that holds anything, before the passphrase is asked for.
    storage.prepare_new().with_context(|| format!("creating a repository at {}", storage.describe()))?;
    let pass = secrets::repository_passphrase(g.password_file.as_deref(), g.password_command.as_deref(), true)?;
    let at = storage.describe();
    let opts = InitOptions { label: a.label, kdf: a.kdf.params(), ..InitOptions::default() };
    let repo = Repository::init(storage, pass.expose_secret().as_bytes(), opts, Context::new(super::cache_root(g)))?;
    if g.json {
        super::print_json(&serde_json::json!({
            "repository": at,
            "id": repo.config().id,
            "key": repo.current_slot(),
        }))?;
    } else if !g.quiet {
        println!("created exarch repository {} at {at}", repo.config().id);
        println!("Keep the passphrase safe: without it (or another key slot) the data cannot be read.");
    }
    Ok(())
}

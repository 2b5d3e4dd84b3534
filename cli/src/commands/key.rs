//! `exarch key list|add|remove|passwd`: key slots.

use crate::args::{Global, KeyCommand};
use crate::secrets;
use crate::secrets::ExposeSecret as _;
use anyhow::Result;
use exarch_archive::time::format_unix;
use serde_json::json;

pub fn run(g: &Global, k: KeyCommand) -> Result<()> {
    let repo = super::open(g)?;
    match k {
        KeyCommand::List => {
            let slots = repo.key_slots()?;
            if g.json {
                let v: Vec<_> = slots
                    .iter()
                    .map(|(n, s)| match s {
                        Ok(s) => json!({"id": n, "current": n == repo.current_slot(), "label": s.label, "created": format_unix(s.created),
                            "kdf": {"algorithm": "argon2id", "m_cost_kib": s.params.m_cost, "t_cost": s.params.t_cost, "p_cost": s.params.p_cost}}),
                        Err(e) => json!({"id": n, "damaged": e}),
                    })
                    .collect();
                return super::print_json(&v);
            }
            for (n, s) in &slots {
                let mark = if n == repo.current_slot() { "*" } else { " " };
                match s {
                    Ok(s) => println!(
                        "{mark} {}  {}  argon2id m={}KiB t={} p={}  {}",
                        &n[..8],
                        format_unix(s.created),
                        s.params.m_cost,
                        s.params.t_cost,
                        s.params.p_cost,
                        s.label
                    ),
                    Err(e) => println!("{mark} {}  DAMAGED: {e}", &n[..8]),
                }
            }
        }
        KeyCommand::Add { label, new_password_file, kdf } => {
            let p = secrets::new_passphrase(new_password_file.as_deref())?;
            let name = repo.add_key(p.expose_secret().as_bytes(), &label, kdf.params())?;
            println!("added key slot {}", &name[..8]);
        }
        KeyCommand::Remove { id } => {
            let name = repo.remove_key(&id)?;
            println!("removed key slot {}", &name[..8]);
        }
        KeyCommand::Passwd { new_password_file, kdf } => {
            let p = secrets::new_passphrase(new_password_file.as_deref())?;
            let old = repo.current_slot().to_string();
            let label = repo
                .key_slots()?
                .into_iter()
                .find(|(n, _)| *n == old)
                .and_then(|(_, s)| s.ok())
                .map(|s| s.label)
                .unwrap_or_default();
            let name = repo.add_key(p.expose_secret().as_bytes(), &label, kdf.params())?;
            repo.remove_key(&old)?;
            println!("passphrase changed: key slot {} replaced by {}", &old[..8], &name[..8]);
        }
    }
    Ok(())
}

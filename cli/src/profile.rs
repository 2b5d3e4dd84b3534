//! Configuration profiles: a TOML file of named profiles (`[profiles.NAME]`), each holding flags by
//! their long names. Keys at a profile's top level apply to every command that has that flag (the
//! repository, the passphrase command, the EWS connection, …); a table named after a command
//! (`[profiles.NAME.prune]`) applies to that command only and wins over the top level. `-P NAME`
//! (`--use-profile`) chooses one; without it no file is read.
//!
//! A profile's settings are turned into flags and parsed by clap like typed ones, so they are
//! checked the same way. What the command line or the environment gives wins: a flag the user gave,
//! or one that conflicts with a flag the user gave, is not taken from the profile.

use crate::args::Cli;
use anyhow::{bail, Context as _, Result};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory as _, FromArgMatches as _};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The file `-P` reads when neither `--config` nor `EXARCH_CONFIG` names one.
pub fn default_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "exarch").map(|d| d.config_dir().join("config.toml"))
}

/// Parses the command line, with the chosen profile's settings added. Help, version and clap's
/// own errors exit here, as `Cli::parse` would.
pub fn parse() -> Result<(Cli, Vec<String>)> {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let first = match Cli::command().ignore_errors(true).try_get_matches_from(&argv) {
        Ok(m) => m,
        Err(e) => e.exit(),
    };
    let profile = first.get_one::<String>("use_profile").cloned();
    let Some(name) = profile else {
        return Ok((Cli::from_arg_matches(&final_matches(argv, &[])).unwrap_or_else(|e| e.exit()), Vec::new()));
    };
    let path = match first.get_one::<PathBuf>("config") {
        Some(p) => p.clone(),
        None => default_path().ok_or_else(|| {
            crate::usage("-P: no home directory to find config.toml in; name the file with --config or EXARCH_CONFIG")
        })?,
    };
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("-P {name}: reading the configuration file {} (give another with --config)", path.display())
    })?;
    let added = settings(&text, &path, &name, &first)?;
    let mut full = argv.clone();
    // Before a `--`, so that they stay flags.
    let at = full.iter().position(|a| a == "--").unwrap_or(full.len());
    let tokens: Vec<OsString> = added.iter().flat_map(|s| s.tokens.iter().map(OsString::from)).collect();
    full.splice(at..at, tokens);
    let keys: Vec<String> = added.iter().map(|s| s.key.clone()).collect();
    let m = final_matches(full, &keys);
    Ok((Cli::from_arg_matches(&m).unwrap_or_else(|e| e.exit()), keys))
}

/// The real parse; when it fails, says which flags came from the profile before clap's message.
fn final_matches(argv: Vec<OsString>, from_profile: &[String]) -> ArgMatches {
    match Cli::command().try_get_matches_from(argv) {
        Ok(m) => m,
        Err(e) => {
            if !from_profile.is_empty() && e.use_stderr() {
                eprintln!("exarch: with settings from the profile: --{}", from_profile.join(", --"));
            }
            e.exit()
        }
    }
}

/// One setting taken from the profile, as flags.
#[derive(Debug, PartialEq)]
struct Added {
    key: String,
    tokens: Vec<String>,
}

/// The settings of profile `name` that apply to the command `user` chose and that the user did not
/// give; every key of the profile is checked, whichever command runs.
fn settings(text: &str, path: &Path, name: &str, user: &ArgMatches) -> Result<Vec<Added>> {
    let where_ = |what: &str| format!("{} (profile {name}){what}", path.display());
    let doc: toml::Table =
        toml::from_str(text).map_err(|e| crate::usage(format!("{}: not valid TOML: {e}", path.display())))?;
    let Some(profiles) = doc.get("profiles").and_then(|p| p.as_table()) else {
        bail!(crate::usage(format!("{}: no [profiles.NAME] table", path.display())));
    };
    let Some(profile) = profiles.get(name).and_then(|p| p.as_table()) else {
        let names: Vec<&str> = profiles.keys().map(String::as_str).collect();
        bail!(crate::usage(format!(
            "{}: no profile `{name}`; it has: {}",
            path.display(),
            if names.is_empty() { "none".to_string() } else { names.join(", ") }
        )));
    };
    let mut root = Cli::command();
    root.build();
    // The command path the user chose (`pack`, `repair index`, …) and its matches.
    let mut cmd = &root;
    let mut m = user;
    let mut verb: Option<String> = None;
    while let Some((sub, sm)) = m.subcommand() {
        let Some(c) = cmd.find_subcommand(sub) else { break };
        verb.get_or_insert_with(|| sub.to_string());
        cmd = c;
        m = sm;
    }
    // Check every key first: a typo is an error whichever command runs.
    let mut wanted: Vec<(String, &toml::Value)> = Vec::new();
    let mut section: Vec<(String, &toml::Value)> = Vec::new();
    for (key, value) in profile {
        if let (Some(table), Some(sub)) = (value.as_table(), root.find_subcommand(key)) {
            for (k, v) in table {
                let k = norm(k);
                if !has_flag(sub, &k) && !sub.get_subcommands().any(|s| has_flag(s, &k)) {
                    bail!(crate::usage(format!(
                        "{}: `exarch {key}` has no flag --{k} (settings are long flags without the dashes)",
                        where_(&format!(" [{key}]"))
                    )));
                }
                if Some(key.as_str()) == verb.as_deref() {
                    section.push((k, v));
                }
            }
            continue;
        }
        let k = norm(key);
        if !has_flag(&root, &k) && !root.get_subcommands().any(|s| has_flag(s, &k)) {
            bail!(crate::usage(format!(
                "{}: no command has a flag --{k} (settings are long flags without the dashes; a table names a \
                 command)",
                where_("")
            )));
        }
        wanted.push((k, value));
    }
    // The command's own table wins over the profile's top level.
    wanted.retain(|(k, _)| !section.iter().any(|(s, _)| s == k));
    wanted.extend(section);
    let mut added = Vec::new();
    for (key, value) in wanted {
        if key == "use-profile" || key == "config" {
            bail!(crate::usage(format!("{}: --{key} cannot come from a profile", where_(""))));
        }
        let Some(arg) = cmd.get_arguments().find(|a| a.get_long() == Some(key.as_str())) else {
            continue; // a top-level setting for other commands
        };
        let id = arg.get_id().as_str();
        if matches!(m.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable)) {
            continue; // the user's own
        }
        let conflicts = cmd.get_arg_conflicts_with(arg).iter().any(|c| {
            matches!(m.value_source(c.get_id().as_str()), Some(ValueSource::CommandLine | ValueSource::EnvVariable))
        });
        if conflicts {
            continue; // e.g. the profile's --ews when the user asked for --graph
        }
        let tokens = tokens(&key, value, arg.get_action())
            .map_err(|why| crate::usage(format!("{}: {key}: {why}", where_(""))))?;
        if !tokens.is_empty() {
            added.push(Added { key, tokens });
        }
    }
    Ok(added)
}

fn norm(k: &str) -> String {
    k.replace('_', "-")
}

fn has_flag(cmd: &clap::Command, long: &str) -> bool {
    cmd.get_arguments().any(|a| a.get_long() == Some(long))
}

/// A setting as flags: `key = "v"` → `--key v`; `key = true` → `--key` (false: nothing); numbers as
/// written; a list → the flag once per element; `verbose = 2` → `--verbose --verbose`.
fn tokens(key: &str, value: &toml::Value, action: &ArgAction) -> std::result::Result<Vec<String>, String> {
    let flag = format!("--{key}");
    let scalar = |v: &toml::Value| -> std::result::Result<String, String> {
        match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            toml::Value::Boolean(b) => Ok(b.to_string()),
            toml::Value::Datetime(d) => Ok(d.to_string()),
            _ => Err("expected a string, number or true/false".into()),
        }
    };
    match (action, value) {
        (ArgAction::SetTrue, toml::Value::Boolean(true)) => Ok(vec![flag]),
        (ArgAction::SetTrue, toml::Value::Boolean(false)) => Ok(vec![]),
        (ArgAction::SetTrue, _) => Err("is a switch: true or false".into()),
        (ArgAction::Count, toml::Value::Integer(n)) if (0..=8).contains(n) => Ok(vec![flag; *n as usize]),
        (ArgAction::Count, _) => Err("a count from 0 to 8".into()),
        (ArgAction::Append, toml::Value::Array(list)) => {
            list.iter().map(|v| scalar(v).map(|s| format!("{flag}={s}"))).collect()
        }
        (_, toml::Value::Array(_)) => Err("takes one value, not a list".into()),
        (_, v) => Ok(vec![format!("{flag}={}", scalar(v)?)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(args: &[&str]) -> ArgMatches {
        Cli::command()
            .ignore_errors(true)
            .try_get_matches_from(std::iter::once("exarch").chain(args.iter().copied()))
            .unwrap()
    }

    fn added(toml: &str, args: &[&str]) -> Result<Vec<String>> {
        let a = settings(toml, Path::new("config.toml"), "nightly", &user(args))?;
        Ok(a.into_iter().flat_map(|a| a.tokens).collect())
    }

    const FILE: &str = r#"
[profiles.nightly]
repo = "/srv/exarch"
password-command = "pass show exarch"
ews = "https://mail.example.com/EWS/Exchange.asmx"
user = "svc-backup@example.com"
verbose = 1

[profiles.nightly.pack]
all-mailboxes = true
max-duration = "6h"
mailbox = ["a@example.com", "b@example.com"]

[profiles.nightly.prune]
keep-daily = 14
repack_threshold = 12.5
dry-run = false

[profiles.other]
repo = "/elsewhere"
"#;

    #[test]
    fn a_profile_gives_the_flags_its_command_has() {
        let pack = added(FILE, &["-P", "nightly", "pack"]).unwrap();
        for t in [
            "--repo=/srv/exarch",
            "--password-command=pass show exarch",
            "--ews=https://mail.example.com/EWS/Exchange.asmx",
            "--all-mailboxes",
            "--max-duration=6h",
            "--mailbox=a@example.com",
            "--mailbox=b@example.com",
            "--verbose",
        ] {
            assert!(pack.contains(&t.to_string()), "{t} missing from {pack:?}");
        }
        let prune = added(FILE, &["-P", "nightly", "prune"]).unwrap();
        assert!(prune.contains(&"--keep-daily=14".to_string()) && prune.contains(&"--repack-threshold=12.5".into()));
        assert!(!prune.iter().any(|t| t.starts_with("--ews") || t.starts_with("--dry-run") || t.contains("6h")));
    }

    #[test]
    fn what_the_user_gives_wins() {
        let pack = added(FILE, &["pack", "--repo", "/mine", "--mailbox", "c@example.com", "--graph"]).unwrap();
        assert!(!pack.iter().any(|t| t.starts_with("--repo") || t.starts_with("--mailbox")), "{pack:?}");
        // What conflicts with the user's flags is left out: --ews (the user chose --graph) and
        // --all-mailboxes (the user named a mailbox).
        assert!(!pack.iter().any(|t| t.starts_with("--ews") || t.starts_with("--all-mailboxes")), "{pack:?}");
        assert!(pack.contains(&"--user=svc-backup@example.com".to_string()), "{pack:?}");
    }

    #[test]
    fn typos_and_wrong_types_are_refused_with_where() {
        let e = added("[profiles.nightly]\nrepoo = \"/x\"\n", &["snapshots"]).unwrap_err().to_string();
        assert!(e.contains("repoo") && e.contains("config.toml"), "{e}");
        let e = added("[profiles.nightly.prune]\nkeep-dayly = 3\n", &["pack", "--from-dir", "."]).unwrap_err();
        assert!(e.to_string().contains("keep-dayly"), "{e}");
        let e = added("[profiles.nightly.pack]\nall-mailboxes = \"yes\"\n", &["pack"]).unwrap_err();
        assert!(e.to_string().contains("true or false"), "{e}");
        let e = added("[profiles.nightly]\nrepo = [\"/a\"]\n", &["snapshots"]).unwrap_err();
        assert!(e.to_string().contains("not a list"), "{e}");
        let e = added("[profiles.day]\nrepo = \"/a\"\n", &["snapshots"]).unwrap_err();
        assert!(e.to_string().contains("no profile `nightly`") && e.to_string().contains("day"), "{e}");
        let e = added("[profiles.nightly]\nuse-profile = \"x\"\n", &["snapshots"]).unwrap_err();
        assert!(e.to_string().contains("cannot come from a profile"), "{e}");
        assert!(added("not toml [", &["snapshots"]).unwrap_err().to_string().contains("not valid TOML"));
    }

    /// The examples users copy (README, contrib) hold only settings that exist, with the right kinds.
    #[test]
    fn the_published_examples_are_valid() {
        let readme = include_str!("../../README.md");
        let block = readme.split("```toml\n").nth(1).and_then(|b| b.split("```").next()).unwrap();
        let files = [
            ("README.md", block),
            ("config.toml.example", include_str!("../../contrib/config.toml.example")),
            ("windows/config.toml.example", include_str!("../../contrib/windows/config.toml.example")),
        ];
        for (name, text) in files {
            let doc: toml::Table = toml::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            for profile in doc["profiles"].as_table().unwrap().keys() {
                for verb in ["pack", "prune", "verify", "replay"] {
                    let m = user(&["-P", profile, verb]);
                    let a = settings(text, Path::new(name), profile, &m).unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert!(a.iter().any(|a| a.key == "repo"), "{name} {profile} {verb}");
                    if verb == "prune" && profile == "nightly" {
                        assert!(a.iter().any(|a| a.key == "keep-daily"), "{name}");
                    }
                    if verb == "verify" && profile == "nightly" {
                        assert!(a.iter().any(|a| a.tokens == ["--read-data-subset=week/7"]), "{name}");
                    }
                }
            }
        }
    }
}

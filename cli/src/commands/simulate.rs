//! `exarch simulate`: the simulated Exchange server (EWS and Microsoft Graph on loopback) used by
//! tests and the demo.

use crate::args::{ExtendedProtectionArg, Global, ServerAuth, SimulateArgs, TimeoutStyleArg};
use crate::secrets::ExposeSecret as _;
use crate::usage;
use anyhow::{Context as _, Result};
use exarch_archive::extract_names::safe_component;
use exarch_ews_source::ntlm::Protection;
use exarch_exchange_sim::model::State;
use exarch_exchange_sim::slow::{SlowSettings, TimeoutStyle};
use exarch_exchange_sim::tls::{ExtendedProtection, Tls};
use exarch_exchange_sim::{serve, GraphSettings, Profile, Simulator};
use std::path::Path;
use std::sync::Arc;

/// Loads the state in `dir`, or makes it from the seed when the directory holds none.
/// What a new simulated organisation holds (used when its state directory is empty).
pub struct Organisation<'a> {
    pub seed: u64,
    pub domain: &'a str,
    pub mailboxes: usize,
    pub items: usize,
    pub dirty_rate: f64,
    pub public_items: usize,
    pub archive_items: usize,
    pub recoverable_items: usize,
    pub calendar_items: usize,
    pub locale: &'a str,
}

pub fn load_or_generate(dir: &Path, o: &Organisation) -> Result<State> {
    if let Some(s) = State::load(dir).with_context(|| format!("reading simulator state in {}", dir.display()))? {
        return Ok(s);
    }
    let mut s = State::generate(o.seed, o.domain, o.mailboxes, o.items, o.dirty_rate);
    if o.public_items > 0 {
        s.add_public_folders(o.public_items);
    }
    if o.archive_items > 0 {
        s.add_archives(o.archive_items);
    }
    if o.recoverable_items > 0 {
        s.add_recoverable_items(o.recoverable_items);
    }
    if o.calendar_items > 0 {
        s.add_calendar_items(o.calendar_items);
    }
    s.localize(o.locale).map_err(|e| usage(format!("--locale: {e}")))?;
    s.save(dir).with_context(|| format!("writing simulator state to {}", dir.display()))?;
    Ok(s)
}

/// Writes every item as `out/<store>/<folder path>/<item file name>`, the layout of `extract`
/// (a store is named as exarch names its snapshots: `user1@example.com`, `…#archive`, …).
pub fn dump(state: &State, dir: &Path, out: &Path) -> Result<usize> {
    let mut n = 0;
    for (m, mb) in state.mailboxes.iter().enumerate() {
        for it in &mb.items {
            let blob = state.blob(dir, it).with_context(|| format!("reading item {}", it.id))?;
            let path = state
                .folder_path(m, &it.folder_id)
                .iter()
                .fold(out.join(safe_component(&state.store_name(m))), |p, c| p.join(safe_component(c)));
            std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
            std::fs::write(path.join(exarch_ews_source::item_file_name(&blob)), &blob)?;
            n += 1;
        }
    }
    Ok(n)
}

/// The simulated tenant's Graph settings from the flags.
fn graph_settings(a: &SimulateArgs) -> Result<GraphSettings> {
    let mut certs = Vec::new();
    for p in &a.graph_client_cert {
        let pem = std::fs::read(p).with_context(|| format!("reading --graph-client-cert {}", p.display()))?;
        let blocks = pem::parse_many(&pem).map_err(|e| usage(format!("--graph-client-cert {}: {e}", p.display())))?;
        let cert = blocks
            .into_iter()
            .find(|b| b.tag() == "CERTIFICATE")
            .ok_or_else(|| usage(format!("--graph-client-cert {}: no CERTIFICATE block", p.display())))?;
        certs.push(cert.into_contents());
    }
    let secret = match &a.graph_client_secret_file {
        Some(f) => Some(crate::secrets::read_file(f)?.expose_secret().to_string()),
        None => None,
    };
    Ok(GraphSettings {
        client_id: a.graph_client_id.clone(),
        client_secret: secret,
        client_certs: certs,
        token_lifetime: std::time::Duration::from_secs(a.token_lifetime),
        denied: a.deny_permission.clone(),
        budget: a.graph_budget,
        window: std::time::Duration::from_secs(a.graph_window),
        session_lifetime: std::time::Duration::from_secs(a.import_session_lifetime),
        ..GraphSettings::default()
    })
}

pub fn run(g: &Global, a: SimulateArgs) -> Result<()> {
    let mut profile = Profile::named(a.profile.name()).expect("every profile the flag offers exists");
    if let Some(b) = a.budget_burst {
        if !(b.is_finite() && b > 0.0 && b <= 1e9) {
            return Err(usage("--budget-burst is a number of units above 0 (at most 1e9)"));
        }
        profile.burst = b;
    }
    if let Some(r) = a.budget_recharge {
        if !(r.is_finite() && r > 0.0 && r <= 1e9) {
            return Err(usage("--budget-recharge is units per second above 0 (at most 1e9)"));
        }
        profile.recharge_per_sec = r;
    }
    if !(0.0..=1.0).contains(&a.fault_rate) {
        return Err(usage("--fault-rate is a fraction between 0 and 1 (0.05 = 5%)"));
    }
    if a.churn.is_some_and(|c| !(0.0..=100.0).contains(&c)) {
        return Err(usage("--churn is a percentage between 0 and 100"));
    }
    if (a.mailboxes as u64).saturating_mul(a.items as u64) > 10_000_000 {
        return Err(usage("--mailboxes × --items is at most 10,000,000 items"));
    }
    if !(0.0..=1.0).contains(&a.dirty_rate) {
        return Err(usage("--dirty-rate is a fraction between 0 and 1 (0.01 = 1%)"));
    }
    let mut state = load_or_generate(
        &a.state,
        &Organisation {
            seed: a.seed,
            domain: &a.domain,
            mailboxes: a.mailboxes,
            items: a.items,
            dirty_rate: a.dirty_rate,
            public_items: a.public_items,
            archive_items: a.archive_items,
            recoverable_items: a.recoverable_items,
            calendar_items: a.calendar_items,
            locale: a.locale.code(),
        },
    )?;
    if let Some(pct) = a.churn {
        let (n, c, d) = state.churn(pct);
        state.save(&a.state)?;
        println!("churned {pct}%: {n} new, {c} changed, {d} deleted item(s)");
        return Ok(());
    }
    if let Some(mb) = &a.wipe {
        let found = if mb == exarch_ews_source::PUBLIC_FOLDERS { state.public_store() } else { state.mailbox(mb) };
        let m = found.ok_or_else(|| {
            usage(format!(
                "--wipe {mb}: no such mailbox (they are user1@{} … user{}@{}, and {} when made with --public-items)",
                state.domain,
                state.mailboxes.iter().filter(|m| !m.public).count(),
                state.domain,
                exarch_ews_source::PUBLIC_FOLDERS
            ))
        })?;
        let (mut items, mut folders) = state.wipe(m);
        if let Some(archive) = state.part_of(m, exarch_exchange_sim::stores::Part::Archive).filter(|&p| p != m) {
            let (i, f) = state.wipe(archive);
            (items, folders) = (items + i, folders + f);
        }
        state.save(&a.state)?;
        println!("wiped {}: {items} item(s) and {folders} folder(s) deleted", state.mailboxes[m].address);
        return Ok(());
    }
    if !(0.0..=1.0).contains(&a.refuse_rate) {
        return Err(usage("--refuse-rate is a fraction between 0 and 1 (0.02 = 2%)"));
    }
    if let Some(out) = &a.dump {
        let n = dump(&state, &a.state, out)?;
        println!("wrote {n} item(s) of {} mailbox(es) to {}", state.mailboxes.len(), out.display());
        return Ok(());
    }
    let listen = a.listen.clone().ok_or_else(|| usage("give --listen ADDR to serve, --churn PCT or --dump OUT"))?;
    let credentials = match &a.user {
        Some(u) => {
            let pass = match (&g.password_file, std::env::var("EXARCH_EWS_PASSWORD")) {
                (Some(f), _) => crate::secrets::read_file(f)?.expose_secret().to_string(),
                (None, Ok(p)) if !p.is_empty() => p,
                _ => return Err(usage("--user needs a password: --password-file FILE or EXARCH_EWS_PASSWORD")),
            };
            Some((u.clone(), pass))
        }
        None => None,
    };
    let mailboxes = state.mailboxes.len();
    if a.auth == ServerAuth::Ntlm && credentials.is_none() {
        return Err(usage("--auth ntlm needs --user NAME and a password (--password-file or EXARCH_EWS_PASSWORD)"));
    }
    if a.extended_protection != ExtendedProtectionArg::Off && (a.tls_cert.is_none() || a.auth != ServerAuth::Ntlm) {
        return Err(usage(
            "--extended-protection needs HTTPS (--tls-cert FILE) and --auth ntlm: it binds NTLM logons to TLS",
        ));
    }
    let tls = match &a.tls_cert {
        Some(path) => {
            let tls = Tls::self_signed(&["127.0.0.1", "localhost"]).map_err(anyhow::Error::msg)?;
            // (a certificate is public; its key never leaves memory)
            std::fs::write(path, tls.cert_pem.as_bytes())
                .with_context(|| format!("writing the certificate to {}", path.display()))?;
            Some(tls)
        }
        None => None,
    };
    let mut sim = Simulator::new(a.state.clone(), state, profile, credentials);
    if a.auth == ServerAuth::Ntlm {
        sim = sim.with_ntlm();
    }
    sim = sim.with_extended_protection(ExtendedProtection {
        protection: match a.extended_protection {
            ExtendedProtectionArg::Off => Protection::Off,
            ExtendedProtectionArg::Allow => Protection::Allow,
            ExtendedProtectionArg::Require => Protection::Require,
        },
        channel_bindings: tls.as_ref().map(|t| exarch_ews_source::channel_binding::for_certificate(&t.cert_der)),
    });
    sim = sim.with_graph(graph_settings(&a)?).with_slow(SlowSettings {
        calendar_export_ms: a.calendar_export_ms,
        request_limit_ms: a.request_limit_ms,
        timeout_style: match a.timeout_style {
            TimeoutStyleArg::Fault => TimeoutStyle::Fault,
            TimeoutStyleArg::Messages => TimeoutStyle::Messages,
        },
    });
    let sim = Arc::new(
        sim.with_fault_rate(a.fault_rate)
            .with_refuse_rate(a.refuse_rate)
            .with_max_request_bytes(a.max_request_bytes)
            .with_hostile(a.hostile.clone()),
    );
    let running = serve(&listen, sim, 64, tls.as_ref()).with_context(|| format!("listening on {listen}"))?;
    // (one line: scripts and tests read it, then may close the pipe)
    println!(
        "serving EWS at {} ({mailboxes} mailboxes, profile {}); statistics at {}/stats; Graph at {} (--login-url {}, \
         import URLs on port {})",
        running.url(),
        a.profile.name(),
        running.base(),
        running.graph_url(),
        running.base(),
        running.import_addr.port()
    );
    running.wait();
    Ok(())
}

//! exarch's NTLM client against an independent acceptor (pyspnego, which exchangelib's NTLM
//! uses): the NTLMv2 proof, the MIC over the three messages and the TLS channel binding must
//! satisfy a server that is not ours. Skipped, with a message, when python3 or pyspnego is missing.

use exarch_ews_source::channel_binding;
use exarch_ews_source::ntlm;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

fn b64(b: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b)
}

fn have_pyspnego() -> bool {
    Command::new("python3").args(["-c", "import spnego"]).output().is_ok_and(|o| o.status.success())
}

/// Runs one logon: the server expects `server_cb` (application data), the client binds `client_cb`.
fn logon(server_cb: Option<&[u8]>, client_cb: Option<[u8; 16]>, password: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/scripts/ntlm_server.py");
    let hex: String = server_cb.map_or("-".into(), |d| d.iter().map(|b| format!("{b:02x}")).collect());
    let mut child = Command::new("python3")
        .args([script, "CORP\\svc-backup", "s3cret", &hex])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let negotiate = ntlm::negotiate();
    writeln!(stdin, "{}", b64(&negotiate)).unwrap();
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let challenge = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, line.trim()).unwrap();
    let binding = ntlm::Binding { target_name: "HTTP/mail.example.com".into(), channel_bindings: client_cb };
    let auth = ntlm::authenticate(
        "CORP\\svc-backup",
        password,
        &negotiate,
        &challenge,
        &binding,
        [3; 8],
        133_500_000_000_000_000,
    )
    .unwrap();
    writeln!(stdin, "{}", b64(&auth)).unwrap();
    let mut verdict = String::new();
    out.read_line(&mut verdict).unwrap();
    child.wait().unwrap();
    verdict.trim().to_string()
}

#[test]
fn an_independent_ntlm_server_accepts_our_logon_and_binding() {
    if !have_pyspnego() {
        eprintln!("SKIPPED: python3 with pyspnego is needed (pip install pyspnego; exchangelib brings it)");
        return;
    }
    let cert = b"a certificate, as the TLS handshake carried it";
    let mut data = b"tls-server-end-point:".to_vec();
    data.extend_from_slice(&channel_binding::tls_server_end_point(cert));
    let ours = channel_binding::for_certificate(cert);

    let v = logon(None, None, "s3cret");
    assert!(v.starts_with("ok"), "{v}");
    let v = logon(Some(&data), Some(ours), "s3cret");
    assert!(v.starts_with("ok"), "a matching channel binding: {v}");
    let v = logon(Some(&data), Some(channel_binding::for_certificate(b"a proxy's certificate")), "s3cret");
    assert!(v.starts_with("refused"), "a binding to another certificate: {v}");
    let v = logon(None, None, "wrong");
    assert!(v.starts_with("refused"), "a wrong password: {v}");
}

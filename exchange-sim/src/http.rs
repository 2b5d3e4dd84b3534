//! Serving the simulator over HTTP on loopback: `POST /EWS/Exchange.asmx`, the Graph API under
//! `/v1.0/` with its token endpoint, `GET /stats`, the NTLM gate per connection, injected faults
//! and hostile answers. Graph's import URLs are served by a second listener (Exchange Online's
//! import host is not Graph's).

use crate::auth::Gate;
use crate::budget::Fault;
use crate::graph::GraphRequest;
use crate::graph_gate::GraphReply;
use crate::server::Simulator;
use exarch_ews_source::dom;
use std::sync::Arc;

/// A running simulator: its address, and the threads serving it.
pub struct Running {
    pub addr: std::net::SocketAddr,
    /// Where import URLs point.
    pub import_addr: std::net::SocketAddr,
    pub https: bool,
    pub sim: Arc<Simulator>,
    servers: Vec<Arc<tiny_http::Server>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("{}/EWS/Exchange.asmx", self.base())
    }

    /// `http(s)://ADDR`: the identity platform's authority host for `--login-url`.
    pub fn base(&self) -> String {
        format!("{}://{}", if self.https { "https" } else { "http" }, self.addr)
    }

    /// The Graph API base for `--graph-url`.
    pub fn graph_url(&self) -> String {
        format!("{}/v1.0", self.base())
    }

    /// Stops serving and waits for the threads.
    pub fn stop(mut self) {
        for s in &self.servers {
            for _ in 0..=self.threads.len() {
                s.unblock();
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Serves until the process ends.
    pub fn wait(mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The misbehaving answer to a request, if a hostile rule covers its mailbox and operation.
fn hostile_answer(
    sim: &Simulator,
    req: &tiny_http::Request,
    auth: Option<&str>,
    body: &[u8],
    port: u16,
) -> Option<crate::hostile::Answer> {
    let header =
        |name: &'static str| req.headers().iter().find(|h| h.field.equiv(name)).map(|h| h.value.as_str().to_string());
    let op = header("SOAPAction").map(|a| a.trim_matches('"').rsplit('/').next().unwrap_or("").to_string())?;
    let mailbox = header("X-AnchorMailbox").unwrap_or_else(|| exarch_ews_source::PUBLIC_FOLDERS.to_string());
    let parent = (op == "FindFolder").then(|| dom::parse(body).ok()).flatten().and_then(|d| {
        d.find("ParentFolderIds").and_then(|p| p.find("FolderId")).and_then(|f| f.attr("Id").map(String::from))
    });
    let mut normal = || sim.handle(auth, body);
    sim.hostile.iter().find_map(|r| crate::hostile::answer(r, &op, &mailbox, parent.as_deref(), port, &mut normal))
}

/// Serves `sim` on `listen` (e.g. `127.0.0.1:0`; HTTPS with `tls`) with `threads` threads, and
/// Graph's import URLs on a second port of the same address.
pub fn serve(
    listen: &str,
    sim: Arc<Simulator>,
    threads: usize,
    tls: Option<&crate::tls::Tls>,
) -> std::io::Result<Running> {
    let bind = |at: &str| -> std::io::Result<Arc<tiny_http::Server>> {
        let server = match tls {
            Some(t) => tiny_http::Server::https(at, t.ssl_config()),
            None => tiny_http::Server::http(at),
        };
        Ok(Arc::new(server.map_err(std::io::Error::other)?))
    };
    let server = bind(listen)?;
    let addr = server.server_addr().to_ip().ok_or_else(|| std::io::Error::other("not an IP listener"))?;
    let import = bind(&format!("{}:0", addr.ip()))?;
    let import_addr = import.server_addr().to_ip().ok_or_else(|| std::io::Error::other("not an IP listener"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let _ = sim.graph_rt.main_base.set(format!("{scheme}://{addr}"));
    let _ = sim.graph_rt.import_base.set(format!("{scheme}://{import_addr}"));
    let mut handles = Vec::new();
    for _ in 0..threads.max(1) {
        let (server, sim) = (server.clone(), sim.clone());
        handles.push(std::thread::spawn(move || serve_loop(&server, &sim, addr.port(), false)));
    }
    for _ in 0..threads.clamp(1, 8) {
        let (server, sim) = (import.clone(), sim.clone());
        handles.push(std::thread::spawn(move || serve_loop(&server, &sim, import_addr.port(), true)));
    }
    Ok(Running { addr, import_addr, https: tls.is_some(), sim, servers: vec![server, import], threads: handles })
}

fn header(req: &tiny_http::Request, name: &'static str) -> Option<String> {
    req.headers().iter().find(|h| h.field.equiv(name)).map(|h| h.value.as_str().to_string())
}

/// Answers `status` with `body` and `headers`, or an injected fault instead (Graph side).
fn respond_graph(req: tiny_http::Request, sim: &Simulator, reply: impl FnOnce() -> GraphReply) {
    match sim.next_fault() {
        Some(Fault::Unavailable) => {
            let _ = req.respond(
                tiny_http::Response::from_string("Service Unavailable")
                    .with_status_code(503)
                    .with_header(tiny_http::Header::from_bytes("Retry-After", "1").expect("header")),
            );
        }
        Some(Fault::Drop) => {
            let mut w = req.into_writer();
            let _ = std::io::Write::write_all(&mut w, b"\x00\x00 connection reset\r\n\r\n");
            let _ = std::io::Write::flush(&mut w);
        }
        fault => {
            let r = reply();
            let mut body = r.body;
            if matches!(fault, Some(Fault::Truncate)) && r.status == 200 {
                let mut cut = body.len() / 2;
                while !body.is_char_boundary(cut) {
                    cut -= 1;
                }
                body.truncate(cut);
            }
            let mut resp = tiny_http::Response::from_string(body)
                .with_status_code(r.status)
                .with_header(tiny_http::Header::from_bytes("Content-Type", "application/json").expect("header"));
            for (k, v) in r.headers {
                resp.add_header(tiny_http::Header::from_bytes(k, v).expect("header"));
            }
            let _ = req.respond(resp);
        }
    }
}

fn serve_loop(server: &tiny_http::Server, sim: &Simulator, port: u16, import_only: bool) {
    while let Ok(mut req) = server.recv() {
        let json = |v: String| {
            tiny_http::Response::from_string(v)
                .with_header(tiny_http::Header::from_bytes("Content-Type", "application/json").expect("header"))
        };
        let graph = crate::graph::is_graph(req.url());
        if import_only && !(graph && req.url().starts_with("/api/gv1.0/")) {
            let _ = req.respond(tiny_http::Response::from_string("not found").with_status_code(404));
            continue;
        }
        if req.method() == &tiny_http::Method::Get && req.url() == "/stats" {
            let _ = req.respond(json(serde_json::to_string(&sim.stats()).expect("stats serialise")));
            continue;
        }
        if graph && !import_only && req.url().starts_with("/api/gv1.0/") {
            // Import URLs live on the import host only.
            let _ = req.respond(tiny_http::Response::from_string("not found").with_status_code(404));
            continue;
        }
        if graph {
            let mut body = Vec::new();
            if std::io::Read::read_to_end(req.as_reader(), &mut body).is_err() {
                continue;
            }
            let (method, url) = (req.method().as_str().to_string(), req.url().to_string());
            let (authorization, prefer) = (header(&req, "Authorization"), header(&req, "Prefer"));
            respond_graph(req, sim, || {
                sim.handle_graph(&GraphRequest {
                    method: &method,
                    url: &url,
                    authorization: authorization.as_deref(),
                    prefer: prefer.as_deref(),
                    body: &body,
                })
            });
            continue;
        }
        if req.method() != &tiny_http::Method::Post || !req.url().eq_ignore_ascii_case("/EWS/Exchange.asmx") {
            let _ = req.respond(tiny_http::Response::from_string("not found").with_status_code(404));
            continue;
        }
        let auth = header(&req, "Authorization");
        let mut body = Vec::new();
        if std::io::Read::read_to_end(req.as_reader(), &mut body).is_err() {
            continue;
        }
        if let Gate::Challenge(v) = sim.ntlm_gate(req.remote_addr().copied(), auth.as_deref()) {
            let _ = req.respond(
                tiny_http::Response::from_string("")
                    .with_status_code(401)
                    .with_header(tiny_http::Header::from_bytes("WWW-Authenticate", v).expect("header")),
            );
            continue;
        }
        if !sim.hostile.is_empty() {
            if let Some(a) = hostile_answer(sim, &req, auth.as_deref(), &body, port) {
                let mut resp =
                    tiny_http::Response::new(tiny_http::StatusCode(a.status), Vec::new(), a.body, a.len, None);
                for (k, v) in a.headers {
                    resp.add_header(tiny_http::Header::from_bytes(k, v).expect("header"));
                }
                let _ = req.respond(resp);
                continue;
            }
        }
        match sim.next_fault() {
            Some(Fault::Unavailable) => {
                let _ = req.respond(
                    tiny_http::Response::from_string("Service Unavailable")
                        .with_status_code(503)
                        .with_header(tiny_http::Header::from_bytes("Retry-After", "1").expect("header")),
                );
                continue;
            }
            Some(Fault::Drop) => {
                // The connection breaks before the request is handled: the client reads bytes that
                // are not HTTP, gives up on this connection, and must resend.
                let mut w = req.into_writer();
                let _ = std::io::Write::write_all(&mut w, b"\x00\x00 connection reset\r\n\r\n");
                let _ = std::io::Write::flush(&mut w);
                continue;
            }
            Some(Fault::Truncate) => {
                let (_, text) = sim.handle(auth.as_deref(), &body);
                let mut cut = text.len() / 2;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                let _ = req.respond(tiny_http::Response::from_string(&text[..cut]).with_status_code(200));
                continue;
            }
            None => {}
        }
        let (status, text) = sim.handle(auth.as_deref(), &body);
        let mut resp = tiny_http::Response::from_string(text)
            .with_status_code(status)
            .with_header(tiny_http::Header::from_bytes("Content-Type", "text/xml; charset=utf-8").expect("header"));
        if status == 401 {
            resp = resp.with_header(
                tiny_http::Header::from_bytes(
                    "WWW-Authenticate",
                    if sim.ntlm { "NTLM" } else { "Basic realm=\"exarch-simulate\"" },
                )
                .expect("header"),
            );
        }
        let _ = req.respond(resp);
    }
}

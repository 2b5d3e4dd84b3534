//! The simulated Microsoft Graph mailbox import/export API, over the same mailboxes and blobs as
//! the EWS side: users and their `settings/exchange`, folder and item delta queries with paging,
//! folder listing and creation, exportItems (at most 20 ids; a dirty item gets its own error),
//! import sessions and the import URL. `graph_gate.rs` holds sign-in, consent and throttling.
//!
//! Delta and skip tokens are the store's change sequence numbers: a page holds the changes after
//! its token, oldest first, and the last page's delta link names the newest change it saw.

use crate::graph_gate::{decode, GraphReply};
use crate::model::{Item, State};
use crate::server::Simulator;
use serde_json::{json, Value};

/// A Graph request as the HTTP layer hands it over.
pub(crate) struct GraphRequest<'a> {
    pub method: &'a str,
    /// Path and query, as sent.
    pub url: &'a str,
    pub authorization: Option<&'a str>,
    pub prefer: Option<&'a str>,
    pub body: &'a [u8],
}

/// Whether a path belongs to the Graph side (API, token endpoint, import URLs).
pub fn is_graph(url: &str) -> bool {
    let path = url.split('?').next().unwrap_or("");
    path.starts_with("/v1.0/") || path.ends_with("/oauth2/v2.0/token") || path.starts_with("/api/gv1.0/")
}

/// The mailbox id Graph gives store `m` (deterministic: it names the store).
pub fn mailbox_id(state: &State, m: usize) -> String {
    let h = blake3::hash(state.store_name(m).to_ascii_lowercase().as_bytes()).to_hex();
    let t = blake3::hash(state.domain.as_bytes()).to_hex();
    format!("MBX:{}@{}", &h[..8], &t[..8])
}

fn user_id(address: &str) -> String {
    let h = blake3::hash(address.to_ascii_lowercase().as_bytes()).to_hex();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn store_of(state: &State, id: &str) -> Option<usize> {
    (0..state.mailboxes.len()).find(|&m| !state.mailboxes[m].public && mailbox_id(state, m) == id)
}

fn primary_of(state: &State, key: &str) -> Option<usize> {
    (0..state.mailboxes.len()).find(|&m| {
        let mb = &state.mailboxes[m];
        !mb.public
            && mb.part == crate::stores::Part::Primary
            && (mb.address.eq_ignore_ascii_case(key) || user_id(&mb.address) == key)
    })
}

fn query(url: &str) -> Vec<(String, String)> {
    url.split_once('?')
        .map(|(_, q)| q.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (decode(k), decode(v))).collect())
        .unwrap_or_default()
}

fn param(url: &str, name: &str) -> Option<String> {
    query(url).into_iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

impl Simulator {
    fn page_size(&self, prefer: Option<&str>) -> usize {
        let asked = prefer
            .and_then(|p| p.split(',').find_map(|x| x.trim().strip_prefix("odata.maxpagesize=")))
            .and_then(|n| n.trim().parse::<usize>().ok());
        asked.unwrap_or(self.graph.page_size).clamp(1, self.graph.page_size.max(1))
    }

    fn item_json(&self, state: &State, it: &Item) -> Value {
        let key = (it.id.clone(), it.change_key.clone());
        let cached = self.sizes.lock().expect("sizes").get(&key).copied();
        let size = cached.unwrap_or_else(|| {
            let s = state.blob(&self.dir, it).map(|b| b.len() as u64).unwrap_or(0);
            self.sizes.lock().expect("sizes").insert(key, s);
            s
        });
        json!({"@odata.type": "#microsoft.graph.mailboxItem", "id": it.id, "changeKey": it.change_key,
            "type": it.class, "size": size, "createdDateTime": it.received, "receivedDateTime": it.received,
            "lastModifiedDateTime": it.received})
    }

    /// Handles one Graph request (the HTTP layer has applied injected faults already).
    pub(crate) fn handle_graph(&self, r: &GraphRequest) -> GraphReply {
        let path = r.url.split('?').next().unwrap_or("");
        if r.method == "POST" && path.ends_with("/oauth2/v2.0/token") {
            return self.graph_token(r.body);
        }
        if path.starts_with("/api/gv1.0/") {
            return self.graph_import(r);
        }
        if let Some(denied) = self.graph_bearer(r.authorization) {
            self.stats
                .lock()
                .expect("stats")
                .requests
                .entry("unauthorised".into())
                .and_modify(|n| *n += 1)
                .or_insert(1);
            return denied;
        }
        let segs: Vec<String> = path.trim_start_matches("/v1.0/").split('/').map(decode).collect();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        match (r.method, segs.as_slice()) {
            ("GET", ["users"]) => self.graph_users(r),
            ("GET", ["users", user, "settings", "exchange"]) => self.graph_settings(user),
            ("GET" | "POST", ["admin", "exchange", "mailboxes", mbx, rest @ ..]) => {
                let mbx = mbx.to_string();
                if let Err(throttled) = self.graph_admit(&mbx) {
                    return throttled;
                }
                let reply = self.graph_mailbox(r, &mbx, rest);
                self.graph_release(&mbx);
                reply
            }
            _ => GraphReply::error(400, "BadRequest", &format!("Resource not found for the segment '{path}'.")),
        }
    }

    fn graph_users(&self, r: &GraphRequest) -> GraphReply {
        self.count_graph("users");
        if let Some(d) = self.graph_consent("User.Read.All") {
            return d;
        }
        let state = self.state.lock().expect("state");
        let users: Vec<&crate::model::Mailbox> =
            state.mailboxes.iter().filter(|m| !m.public && m.part == crate::stores::Part::Primary).collect();
        let from: usize = param(r.url, "$skiptoken").and_then(|s| s.parse().ok()).unwrap_or(0).min(users.len());
        let n = param(r.url, "$top").and_then(|s| s.parse::<usize>().ok()).unwrap_or(100).clamp(1, 10);
        let to = (from + n).min(users.len());
        let value: Vec<Value> = users[from..to]
            .iter()
            .map(|m| json!({"id": user_id(&m.address), "userPrincipalName": m.address, "mail": m.address}))
            .collect();
        let mut v = json!({"value": value});
        if to < users.len() {
            v["@odata.nextLink"] = json!(format!("{}/v1.0/users?$top={n}&$skiptoken={to}", self.graph_base()));
        }
        GraphReply::json(200, v)
    }

    fn graph_settings(&self, user: &str) -> GraphReply {
        self.count_graph("exchangeSettings");
        if let Some(d) = self.graph_consent("User.Read.All") {
            return d;
        }
        let state = self.state.lock().expect("state");
        let Some(m) = primary_of(&state, user) else {
            return GraphReply::error(404, "Request_ResourceNotFound", &format!("Resource '{user}' does not exist."));
        };
        let mut v = json!({"primaryMailboxId": mailbox_id(&state, m)});
        if let Some(a) = state.part_of(m, crate::stores::Part::Archive).filter(|&a| a != m) {
            v["inPlaceArchiveMailboxId"] = json!(mailbox_id(&state, a));
        }
        GraphReply::json(200, v)
    }

    /// This server's own base URL (for links), from the import listener's scheme and the
    /// recorded main address.
    fn graph_base(&self) -> String {
        self.graph_rt.main_base.get().cloned().unwrap_or_default()
    }

    fn graph_mailbox(&self, r: &GraphRequest, mbx: &str, rest: &[&str]) -> GraphReply {
        let mut state = self.state.lock().expect("state");
        let Some(m) = store_of(&state, mbx) else {
            return GraphReply::error(404, "ErrorMailboxNotFound", &format!("Mailbox '{mbx}' was not found."));
        };
        let base =
            format!("{}/v1.0/admin/exchange/mailboxes/{}", self.graph_base(), exarch_graph_source::api::seg(mbx));
        match (r.method, rest) {
            ("GET", ["folders", "delta"]) => {
                self.count_graph("foldersDelta");
                if let Some(d) = self.graph_consent("MailboxFolder.Read.All") {
                    return d;
                }
                let folders: Vec<&crate::model::Folder> =
                    state.mailboxes[m].folders.iter().filter(|f| !f.parent_id.is_empty()).collect();
                let from: usize =
                    param(r.url, "$skiptoken").and_then(|s| s.parse().ok()).unwrap_or(0).min(folders.len());
                let to = (from + self.page_size(r.prefer)).min(folders.len());
                let value: Vec<Value> = folders[from..to]
                    .iter()
                    .map(|f| {
                        json!({"@odata.type": "#microsoft.graph.mailboxFolder", "id": f.id, "displayName": f.name,
                            "parentFolderId": f.parent_id, "type": f.class,
                            "wellKnownName": if f.distinguished.is_empty() { Value::Null } else { json!(f.distinguished) }})
                    })
                    .collect();
                let mut v = json!({"value": value});
                if to < folders.len() {
                    v["@odata.nextLink"] = json!(format!("{base}/folders/delta?$skiptoken={to}"));
                } else {
                    v["@odata.deltaLink"] = json!(format!("{base}/folders/delta?$deltatoken={}", state.seq));
                }
                GraphReply::json(200, v)
            }
            ("GET", ["folders", fid, "items", "delta"]) => {
                self.count_graph("itemsDelta");
                if let Some(d) = self.graph_consent("MailboxItem.Read.All") {
                    return d;
                }
                let mb = &state.mailboxes[m];
                if !mb.folders.iter().any(|f| f.id == *fid) {
                    return GraphReply::error(
                        404,
                        "ErrorItemNotFound",
                        "The specified folder could not be found in the store.",
                    );
                }
                let since: u64 = param(r.url, "$skiptoken")
                    .or_else(|| param(r.url, "$deltatoken"))
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let mut changes: Vec<(u64, Value)> = Vec::new();
                for it in mb.items.iter().filter(|i| i.folder_id == *fid && i.seq > since) {
                    changes.push((it.seq, self.item_json(&state, it)));
                }
                for t in mb.tombstones.iter().filter(|t| t.folder_id == *fid && t.seq > since) {
                    changes.push((t.seq, json!({"id": t.id, "@removed": {"reason": "deleted"}})));
                }
                changes.sort_by_key(|c| c.0);
                let n = self.page_size(r.prefer);
                let more = changes.len() > n;
                changes.truncate(n);
                let upto = changes.last().map(|c| c.0).unwrap_or(since);
                let mut v = json!({"value": changes.into_iter().map(|c| c.1).collect::<Vec<_>>()});
                let link = format!("{base}/folders/{}/items/delta", exarch_graph_source::api::seg(fid));
                if more {
                    v["@odata.nextLink"] = json!(format!("{link}?$skiptoken={upto}"));
                } else {
                    v["@odata.deltaLink"] = json!(format!("{link}?$deltatoken={upto}"));
                }
                GraphReply::json(200, v)
            }
            ("GET", ["folders", fid, "items"]) => {
                self.count_graph("listItems");
                if let Some(d) = self.graph_consent("MailboxItem.Read.All") {
                    return d;
                }
                let mb = &state.mailboxes[m];
                if !mb.folders.iter().any(|f| f.id == *fid) {
                    return GraphReply::error(
                        404,
                        "ErrorItemNotFound",
                        "The specified folder could not be found in the store.",
                    );
                }
                let items: Vec<&Item> = mb.items.iter().filter(|i| i.folder_id == *fid).collect();
                let from: usize = param(r.url, "$skiptoken").and_then(|s| s.parse().ok()).unwrap_or(0).min(items.len());
                let to = (from + self.page_size(r.prefer)).min(items.len());
                let value: Vec<Value> = items[from..to].iter().map(|it| self.item_json(&state, it)).collect();
                let mut v = json!({"value": value});
                if to < items.len() {
                    v["@odata.nextLink"] =
                        json!(format!("{base}/folders/{}/items?$skiptoken={to}", exarch_graph_source::api::seg(fid)));
                }
                GraphReply::json(200, v)
            }
            ("POST", ["folders"]) | ("POST", ["folders", _, "childFolders"]) => {
                self.count_graph("createFolder");
                if let Some(d) = self.graph_consent("MailboxFolder.ReadWrite.All") {
                    return d;
                }
                let v: Value = serde_json::from_slice(r.body).unwrap_or_default();
                let (name, class) = (v["displayName"].as_str().unwrap_or(""), v["type"].as_str().unwrap_or("IPF.Note"));
                let parent = if rest.len() == 3 { rest[1] } else { "" };
                match state.create_folder(m, parent, name, class) {
                    Ok(id) => {
                        if let Err(e) = state.save(&self.dir) {
                            return GraphReply::error(
                                500,
                                "ErrorInternalServerError",
                                &format!("saving the store: {e}"),
                            );
                        }
                        self.stats.lock().expect("stats").folders_created += 1;
                        let f = state.mailboxes[m].folders.iter().find(|f| f.id == id).cloned();
                        let parent_id = f.map(|f| f.parent_id).unwrap_or_default();
                        GraphReply::json(
                            201,
                            json!({"id": id, "displayName": name, "parentFolderId": parent_id, "type": class}),
                        )
                    }
                    Err(e) if e.code == "ErrorFolderExists" => GraphReply::error(409, e.code, &e.message),
                    Err(e) if e.code == "ErrorParentFolderNotFound" => GraphReply::error(404, e.code, &e.message),
                    Err(e) => GraphReply::error(400, e.code, &e.message),
                }
            }
            ("POST", ["exportItems"]) => self.graph_export(&state, m, r),
            ("POST", ["createImportSession"]) => {
                self.count_graph("createImportSession");
                if let Some(d) = self.graph_consent("MailboxItem.ImportExport.All") {
                    return d;
                }
                let (url, expires) = self.graph_new_session(m, mbx);
                let when = expires.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
                GraphReply::json(200, json!({"importUrl": url, "expirationDateTime": when}))
            }
            _ => GraphReply::error(400, "BadRequest", "Unsupported segment or method."),
        }
    }

    fn graph_export(&self, state: &State, m: usize, r: &GraphRequest) -> GraphReply {
        self.count_graph("exportItems");
        if let Some(d) = self.graph_consent("MailboxItem.ImportExport.All") {
            return d;
        }
        let v: Value = serde_json::from_slice(r.body).unwrap_or_default();
        // The documented spelling is itemIds; Microsoft's own SDK sends ItemIds.
        let ids: Vec<&str> = v["itemIds"]
            .as_array()
            .or(v["ItemIds"].as_array())
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if ids.is_empty() || ids.len() > 20 {
            return GraphReply::error(400, "ErrorInvalidRequest", "itemIds must name between 1 and 20 items.");
        }
        let mb = &state.mailboxes[m];
        let mut value = Vec::new();
        let mut exported = 0;
        for id in ids {
            let Some(it) = mb.items.iter().find(|i| i.id == id) else {
                value.push(json!({"itemId": id, "error": {"@odata.type": "#microsoft.graph.mailTipsError",
                    "code": "ErrorItemNotFound", "message": "The specified object was not found in the store."}}));
                continue;
            };
            if it.dirty {
                self.stats.lock().expect("stats").batches_failed_dirty += 1;
                value.push(json!({"itemId": id, "error": {"@odata.type": "#microsoft.graph.mailTipsError",
                    "code": "ErrorCorruptData", "message": "The item could not be exported: its data is corrupt."}}));
                continue;
            }
            match state.blob(&self.dir, it) {
                Ok(b) => {
                    exported += 1;
                    let data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b);
                    value.push(json!({"itemId": id, "changeKey": it.change_key, "data": data}));
                }
                Err(e) => value.push(
                    json!({"itemId": id, "error": {"code": "ErrorInternalServerError", "message": e.to_string()}}),
                ),
            }
        }
        self.stats.lock().expect("stats").items_exported += exported;
        GraphReply::json(
            200,
            json!({"@odata.context": "$metadata#Collection(microsoft.graph.exportItemResponse)", "value": value}),
        )
    }

    /// `POST` to an import URL: pre-authenticated by its token; a bearer token is refused here.
    fn graph_import(&self, r: &GraphRequest) -> GraphReply {
        self.count_graph("importItem");
        if r.authorization.is_some() {
            return GraphReply::error(
                400,
                "ErrorInvalidRequest",
                "The import URL is pre-authenticated: an Authorization header must not be sent to it.",
            );
        }
        let Some(m) = param(r.url, "authtoken").and_then(|t| self.graph_session(&t)) else {
            return GraphReply::error(
                401,
                "ErrorInvalidToken",
                "The import session's token is invalid or has expired.",
            );
        };
        let mut state = self.state.lock().expect("state");
        let mbx = mailbox_id(&state, m);
        if let Err(throttled) = self.graph_admit(&mbx) {
            return throttled;
        }
        let reply = self.graph_import_item(&mut state, m, r.body);
        self.graph_release(&mbx);
        reply
    }

    fn graph_import_item(&self, state: &mut State, m: usize, body: &[u8]) -> GraphReply {
        let v: Value = serde_json::from_slice(body).unwrap_or_default();
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        let (folder, mode, item_id, change_key) = (s("FolderId"), s("Mode"), s("ItemId"), s("ChangeKey"));
        let blob = match base64::Engine::decode(&base64::engine::general_purpose::STANDARD, s("Data")) {
            Ok(b) if !b.is_empty() => b,
            _ => return GraphReply::error(400, "ErrorInvalidRequest", "Data must be a non-empty base64 stream."),
        };
        let action = match mode.as_str() {
            "create" if item_id.is_empty() && change_key.is_empty() => "CreateNew",
            "create" => {
                return GraphReply::error(400, "ErrorInvalidRequest", "create mode takes no ItemId or ChangeKey.")
            }
            "update" => {
                let current = state.mailboxes[m].items.iter().find(|i| i.id == item_id && i.folder_id == folder);
                match current {
                    Some(i) if i.change_key == change_key => "Update",
                    _ => {
                        return GraphReply::error(
                            400,
                            "ErrorItemNotFound",
                            "No item in the folder matches ItemId and ChangeKey.",
                        )
                    }
                }
            }
            _ => return GraphReply::error(400, "ErrorInvalidRequest", "Mode must be create or update."),
        };
        if self.refuses(&blob) {
            self.stats.lock().expect("stats").uploads_refused += 1;
            return GraphReply::error(400, "ErrorCorruptData", "The item could not be imported: its data is corrupt.");
        }
        let id = (action == "Update").then_some(item_id.as_str());
        match state.upload(&self.dir, m, &folder, id, action, false, &blob) {
            Ok((id, ck)) => {
                if let Err(e) = state.save(&self.dir) {
                    return GraphReply::error(500, "ErrorInternalServerError", &format!("saving the store: {e}"));
                }
                self.stats.lock().expect("stats").items_uploaded += 1;
                GraphReply::json(200, json!({"itemId": id, "changeKey": ck}))
            }
            Err(e) if e.code == "ErrorFolderNotFound" => GraphReply::error(404, e.code, &e.message),
            Err(e) => GraphReply::error(400, e.code, &e.message),
        }
    }
}

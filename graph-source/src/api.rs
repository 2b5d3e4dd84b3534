//! The Graph calls of a backup and a replay: users and their mailbox ids, folders (delta query),
//! items of a folder (delta query, or a plain listing), exportItems, folder creation, and import
//! sessions. Paths are `{base}/users…` and `{base}/admin/exchange/mailboxes/{mailboxId}/…`; ids
//! are percent-encoded into them. Every call is keyed to its mailbox for the governor.
//!
//! A delta link is kept *relative to the API base* (`/admin/exchange/…?$deltatoken=…`), so a
//! stored state never leads to another host and survives a change of `--graph-url`.

use crate::error::{Endpoint, GraphError};
use crate::export_json::{read_export, Exported};
use crate::http::{GraphClient, Method};
use base64::Engine as _;
use serde_json::Value;
use std::time::{Duration, Instant};

/// A user with a mailbox: Graph's id and the SMTP address snapshots are named by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub address: String,
}

/// The mailbox ids of a user (`settings/exchange`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxIds {
    pub primary: String,
    /// Present when the user has an In-Place Archive and the service says so.
    pub archive: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    pub id: String,
    pub parent_id: String,
    pub name: String,
    /// `IPF.Note`, `IPF.Appointment`, ...
    pub class: String,
    /// `inbox`, `sentitems`, ... for Outlook's default folders.
    pub well_known: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Item {
    pub id: String,
    pub change_key: String,
    /// The item class (`IPM.Note`, ...), Graph's `type`.
    pub class: String,
    pub size: u64,
    /// `receivedDateTime` where given, else `createdDateTime` (RFC 3339).
    pub time: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemChange {
    Upsert(Item),
    Removed(String),
}

/// A round of an item delta query: the changes and the link (relative to the base) for the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemDelta {
    pub changes: Vec<ItemChange>,
    pub delta_link: String,
}

/// A pre-authenticated import URL and when it expires.
#[derive(Clone)]
pub struct ImportSession {
    url: String,
    renew_at: Instant,
}

impl std::fmt::Debug for ImportSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ImportSession(…)")
    }
}

impl ImportSession {
    /// Still usable for a while (a minute's margin before its expiry).
    pub fn fresh(&self) -> bool {
        Instant::now() < self.renew_at
    }
}

/// How an imported item is put into its folder.
#[derive(Debug, Clone, Copy)]
pub enum ImportMode<'a> {
    Create,
    /// A new version of an existing item (its id and current change key).
    Update {
        item_id: &'a str,
        change_key: &'a str,
    },
}

/// The most pages one listing may take: a server that never ends its paging is stopped.
const MAX_PAGES: usize = 100_000;

/// A path segment, percent-encoded (ids hold `/`, `+` and `=`).
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' | b'@' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn text(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or("").to_string()
}

impl GraphClient {
    fn mailbox_path(&self, mailbox_id: &str) -> String {
        self.url(&format!("/admin/exchange/mailboxes/{}", seg(mailbox_id)))
    }

    /// Every page of a collection, from `url` on: `on_page(value array)` for each, and the final
    /// `@odata.deltaLink` if the collection is a delta query.
    fn pages(
        &self,
        key: &str,
        ep: Endpoint,
        url: String,
        on_page: &mut dyn FnMut(&[Value]) -> Result<(), GraphError>,
    ) -> Result<Option<String>, GraphError> {
        let mut next = url;
        for _ in 0..MAX_PAGES {
            let v = self.json(key, ep, Method::Get, &next, None)?;
            let items = v["value"].as_array().ok_or_else(|| GraphError::protocol(ep.name(), "no \"value\" array"))?;
            on_page(items)?;
            if let Some(n) = v["@odata.nextLink"].as_str() {
                self.check_link(ep, n)?;
                if n == next {
                    return Err(GraphError::protocol(ep.name(), "a next link that points at the same page"));
                }
                next = n.to_string();
                continue;
            }
            if let Some(d) = v["@odata.deltaLink"].as_str() {
                self.check_link(ep, d)?;
                return Ok(Some(d.to_string()));
            }
            return Ok(None);
        }
        Err(GraphError::protocol(ep.name(), format!("more than {MAX_PAGES} pages")))
    }

    /// Users that have a mail address (`GET /users`, paged).
    pub fn users(&self) -> Result<Vec<User>, GraphError> {
        let mut out = Vec::new();
        let url = self.url("/users?$select=id,userPrincipalName,mail&$top=999");
        self.pages("(tenant)", Endpoint::Users, url, &mut |page| {
            for u in page {
                let address = u["mail"].as_str().filter(|m| !m.is_empty()).unwrap_or("");
                if !address.is_empty() {
                    out.push(User { id: text(u, "id"), address: address.to_string() });
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// A user's mailbox ids (`GET /users/{user}/settings/exchange`).
    pub fn mailbox_ids(&self, user: &str) -> Result<MailboxIds, GraphError> {
        let url = self.url(&format!("/users/{}/settings/exchange", seg(user)));
        let v = self.json(user, Endpoint::ExchangeSettings, Method::Get, &url, None)?;
        let primary = v["primaryMailboxId"].as_str().filter(|s| !s.is_empty()).ok_or_else(|| {
            GraphError::protocol(
                Endpoint::ExchangeSettings.name(),
                format!("no primaryMailboxId for {user} (no mailbox?)"),
            )
        })?;
        let archive = v["inPlaceArchiveMailboxId"].as_str().filter(|s| !s.is_empty()).map(str::to_string);
        Ok(MailboxIds { primary: primary.to_string(), archive })
    }

    /// Every folder of a mailbox (a full folder delta round).
    pub fn folders(&self, mailbox_id: &str) -> Result<Vec<Folder>, GraphError> {
        let mut out = Vec::new();
        let url = format!("{}/folders/delta", self.mailbox_path(mailbox_id));
        self.pages(mailbox_id, Endpoint::FolderDelta, url, &mut |page| {
            for f in page.iter().filter(|f| f.get("@removed").is_none()) {
                out.push(Folder {
                    id: text(f, "id"),
                    parent_id: text(f, "parentFolderId"),
                    name: text(f, "displayName"),
                    class: text(f, "type"),
                    well_known: f["wellKnownName"].as_str().map(str::to_string),
                });
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn item_of(v: &Value) -> Item {
        let time = v["receivedDateTime"].as_str().or(v["createdDateTime"].as_str()).unwrap_or("").to_string();
        Item {
            id: text(v, "id"),
            change_key: text(v, "changeKey"),
            class: text(v, "type"),
            size: v["size"].as_u64().unwrap_or(0),
            time,
        }
    }

    /// Changes to a folder's items since `since` (a delta link this client gave out), or all its
    /// items; and the link to continue from.
    pub fn item_delta(&self, mailbox_id: &str, folder_id: &str, since: Option<&str>) -> Result<ItemDelta, GraphError> {
        let ep = Endpoint::ItemDelta;
        let url = match since {
            Some(rel) if rel.starts_with('/') => self.url(rel),
            Some(_) => return Err(GraphError::protocol(ep.name(), "a stored delta state that is not a relative link")),
            None => format!("{}/folders/{}/items/delta", self.mailbox_path(mailbox_id), seg(folder_id)),
        };
        let mut changes = Vec::new();
        let link = self.pages(mailbox_id, ep, url, &mut |page| {
            for v in page {
                if v.get("@removed").is_some() {
                    changes.push(ItemChange::Removed(text(v, "id")));
                } else {
                    changes.push(ItemChange::Upsert(Self::item_of(v)));
                }
            }
            Ok(())
        })?;
        let link = link.ok_or_else(|| GraphError::protocol(ep.name(), "the last page has no @odata.deltaLink"))?;
        let rel = link
            .strip_prefix(self.base())
            .filter(|r| r.starts_with('/'))
            .ok_or_else(|| GraphError::protocol(ep.name(), "a delta link outside the API base"))?;
        Ok(ItemDelta { changes, delta_link: rel.to_string() })
    }

    /// Every item a folder holds now.
    pub fn list_items(&self, mailbox_id: &str, folder_id: &str) -> Result<Vec<Item>, GraphError> {
        let mut out = Vec::new();
        let url = format!("{}/folders/{}/items", self.mailbox_path(mailbox_id), seg(folder_id));
        self.pages(mailbox_id, Endpoint::ListItems, url, &mut |page| {
            out.extend(page.iter().map(Self::item_of));
            Ok(())
        })?;
        Ok(out)
    }

    /// Creates a folder (under `parent`, or at the top of the mailbox); returns its id.
    pub fn create_folder(
        &self,
        mailbox_id: &str,
        parent: Option<&str>,
        name: &str,
        class: &str,
    ) -> Result<String, GraphError> {
        let url = match parent {
            Some(p) => format!("{}/folders/{}/childFolders", self.mailbox_path(mailbox_id), seg(p)),
            None => format!("{}/folders", self.mailbox_path(mailbox_id)),
        };
        let class = if class.is_empty() { "IPF.Note" } else { class };
        let body = serde_json::json!({"displayName": name, "type": class}).to_string();
        let v = self.json(mailbox_id, Endpoint::CreateFolder, Method::Post, &url, Some(body.as_bytes()))?;
        v["id"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| GraphError::protocol(Endpoint::CreateFolder.name(), "the created folder has no id"))
    }

    /// Exports up to 20 items, handing each result to `on` as it arrives. Items the reply does
    /// not mention are reported failed; a result for an item not asked for is an error.
    pub fn export(
        &self,
        mailbox_id: &str,
        ids: &[&str],
        on: &mut dyn FnMut(Exported) -> Result<(), GraphError>,
    ) -> Result<(), GraphError> {
        let ep = Endpoint::ExportItems;
        if ids.is_empty() {
            return Ok(());
        }
        if ids.len() > crate::MAX_EXPORT_ITEMS {
            return Err(GraphError::Config(format!("exportItems takes at most {} items", crate::MAX_EXPORT_ITEMS)));
        }
        let url = format!("{}/exportItems", self.mailbox_path(mailbox_id));
        let mut seen = std::collections::HashSet::new();
        // A reply cut off on the way: what arrived whole is kept, the rest asked for again.
        for attempt in 0..3 {
            let ask: Vec<&str> = ids.iter().copied().filter(|id| !seen.contains(*id)).collect();
            if ask.is_empty() {
                break;
            }
            let body = serde_json::json!({ "itemIds": ask }).to_string();
            let reply = self.send(mailbox_id, ep, Method::Post, &url, Some(body.as_bytes()))?;
            let input = std::io::BufReader::with_capacity(64 * 1024, reply.resp);
            let read = read_export(input, &self.limits, &mut |e| {
                let id = match &e {
                    Exported::Ok { id, .. } | Exported::Failed { id, .. } => id.clone(),
                };
                if !ask.contains(&id.as_str()) || !seen.insert(id.clone()) {
                    return Err(GraphError::protocol(
                        ep.name(),
                        format!("a result for item {id}, which was not asked for (or twice)"),
                    ));
                }
                if matches!(e, Exported::Ok { .. }) {
                    self.count_exported();
                }
                on(e)
            });
            match read {
                Ok(_) => break,
                Err(GraphError::Transport(_)) if attempt < 2 => continue,
                Err(GraphError::Protocol { message, .. }) if message.contains("truncated") && attempt < 2 => continue,
                Err(e) => return Err(e),
            }
        }
        for id in ids.iter().filter(|id| !seen.contains(**id)) {
            on(Exported::Failed { id: id.to_string(), reason: "the service returned no result for this item".into() })?;
        }
        Ok(())
    }

    /// A new import session for a mailbox.
    pub fn create_import_session(&self, mailbox_id: &str) -> Result<ImportSession, GraphError> {
        let ep = Endpoint::CreateImportSession;
        let url = format!("{}/createImportSession", self.mailbox_path(mailbox_id));
        let v = self.json(mailbox_id, ep, Method::Post, &url, None)?;
        let import_url = v["importUrl"].as_str().ok_or_else(|| GraphError::protocol(ep.name(), "no importUrl"))?;
        self.check_import_url(import_url)?;
        let expires = v["expirationDateTime"]
            .as_str()
            .and_then(|s| time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok());
        let left = match expires {
            Some(t) => {
                let d = t - time::OffsetDateTime::now_utc();
                Duration::try_from(d).unwrap_or(Duration::ZERO)
            }
            None => Duration::from_secs(15 * 60),
        };
        let renew_at = Instant::now() + left.saturating_sub(Duration::from_secs(60).min(left / 2));
        Ok(ImportSession { url: import_url.to_string(), renew_at })
    }

    /// Imports one item into `folder_id`; returns its id and change key.
    pub fn import_item(
        &self,
        mailbox_id: &str,
        session: &ImportSession,
        folder_id: &str,
        mode: ImportMode,
        data: &[u8],
    ) -> Result<(String, String), GraphError> {
        let mut body = serde_json::json!({
            "FolderId": folder_id,
            "Mode": match mode { ImportMode::Create => "create", ImportMode::Update { .. } => "update" },
            "Data": base64::engine::general_purpose::STANDARD.encode(data),
        });
        if let ImportMode::Update { item_id, change_key } = mode {
            body["ItemId"] = item_id.into();
            body["ChangeKey"] = change_key.into();
        }
        let v = self.post_import(mailbox_id, &session.url, body.to_string().into_bytes())?;
        let id = v["itemId"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| GraphError::protocol(Endpoint::ImportItem.name(), "no itemId in the reply"))?;
        Ok((id.to_string(), text(&v, "changeKey")))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_safe_path_segments() {
        assert_eq!(super::seg("MBX:e06@a78"), "MBX:e06@a78");
        assert_eq!(super::seg("AQ+k/x=="), "AQ%2Bk%2Fx%3D%3D");
    }
}

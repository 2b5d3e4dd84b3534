//! Reading EWS responses: per-item response messages, sync changes, exported items, and the
//! faults Exchange uses for throttling.

use crate::dom::{parse, Element, XmlError};
use base64::Engine;

#[derive(Debug, thiserror::Error)]
pub enum EwsError {
    #[error(transparent)]
    Xml(#[from] XmlError),
    /// A SOAP fault (HTTP 500), e.g. `ErrorServerBusy`; `back_off_ms` is the server's hint.
    #[error("SOAP fault {code}: {message}")]
    Fault { code: String, message: String, back_off_ms: Option<u64> },
    /// The whole request failed with this response code (ResponseClass="Error").
    #[error("{operation} failed: {code}: {message}")]
    Failed { operation: String, code: String, message: String },
    #[error("unexpected {operation} response: {detail}")]
    Unexpected { operation: String, detail: String },
    /// HTTP 503/429 (requests queued in IIS) or another non-SOAP status.
    #[error("HTTP {status} from the server")]
    Http { status: u16, retry_after_ms: Option<u64> },
    /// HTTP 413: the request was larger than the server accepts (EWS maxReceivedMessageSize).
    #[error("the request was too large for the server (HTTP 413)")]
    TooLarge,
    #[error("the server refused the credentials (HTTP 401): check the user name and EXARCH_EWS_PASSWORD / --password-file / --token-file")]
    Unauthorized,
    /// The connection broke during an exchange.
    #[error("connection to the EWS server failed: {0}")]
    Transport(String),
    /// No reply within the client's timeout.
    #[error("the EWS server did not answer in time: {0}")]
    TimedOut(String),
    /// No connection could be made (refused, unreachable, name not found): retried a few times only.
    #[error("cannot connect to the EWS server: {0}; check the --ews URL and that the server is up")]
    Connect(String),
    /// TLS failed (certificate not trusted, wrong name): asking again cannot help.
    #[error("TLS with the EWS server failed: {0}; if the server uses an internal CA, pass it with --ca-cert")]
    Tls(String),
    /// The server sent us elsewhere; exarch follows redirects only within the same origin.
    #[error("the EWS server redirected the request to another origin ({0}); exarch does not follow it (the request carries credentials and mail). If that address is right, pass it with --ews")]
    Redirect(String),
    /// The server asked for a wait longer than the client accepts: this mailbox stops for the run.
    #[error("the server asked to wait {} s before the next request, more than the {} s exarch waits, so this mailbox stops for this run", .ms / 1000, .cap_ms / 1000)]
    BackOffTooLong { ms: u64, cap_ms: u64 },
    /// Whoever took the exported items (the archive) failed; its own error, class and all, is inside.
    #[error("{0}")]
    Sink(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The run's deadline comes before the server's back-off ends.
    #[error("the time window ends before the server's back-off does")]
    OutOfTime,
}

impl EwsError {
    /// Worth retrying unchanged: the server was busy, the connection broke, or the body was cut.
    /// (An HTTP status other than 408, 429 or 5xx, a body that is not XML, TLS and redirects are not.)
    pub fn is_transient(&self) -> bool {
        self.is_throttling()
            || self.is_time_limit()
            || matches!(
                self,
                EwsError::Http { status: 408 | 429 | 500..=599, .. } | EwsError::Transport(_) | EwsError::Connect(_)
            )
            || matches!(self, EwsError::Xml(x) if x.truncated)
    }

    /// This mailbox stops for the run without failing it: the next run continues (a partial run).
    pub fn stops_run(&self) -> bool {
        matches!(self, EwsError::BackOffTooLong { .. } | EwsError::OutOfTime)
    }

    /// The server surely did not act on the request: it was throttled or queued (HTTP 503/429).
    /// Only these are retried for requests that change a mailbox.
    pub fn surely_not_processed(&self) -> bool {
        self.is_throttling() || matches!(self, EwsError::Http { status: 503 | 429, .. })
    }

    /// The request may or may not have been carried out (connection broke, reply cut off).
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            EwsError::Transport(_)
                | EwsError::TimedOut(_)
                | EwsError::Xml(_)
                | EwsError::Http { .. }
                | EwsError::Unexpected { .. }
        ) && !self.surely_not_processed()
    }

    /// Failures that no amount of asking again will mend, whatever the request.
    pub fn is_permanent(&self) -> bool {
        !self.is_transient() && !self.stops_run()
    }

    /// The server's back-off hint, if it gave one.
    pub fn back_off_ms(&self) -> Option<u64> {
        match self {
            EwsError::Fault { back_off_ms, .. } => *back_off_ms,
            EwsError::Http { retry_after_ms, .. } => *retry_after_ms,
            _ => None,
        }
    }

    /// Codes that mean "slow down", not "this is wrong".
    pub fn is_throttling(&self) -> bool {
        let code = match self {
            EwsError::Fault { code, .. } | EwsError::Failed { code, .. } => code.as_str(),
            _ => return false,
        };
        matches!(code, "ErrorServerBusy" | "ErrorExceededConnectionCount" | "ErrorTooManyObjectsOpened")
    }

    /// The request ran into a time limit (the server's `ErrorTimeoutExpired`, or no reply within
    /// the client's timeout): asked again unchanged it would fail again; smaller requests go through.
    pub fn is_time_limit(&self) -> bool {
        match self {
            EwsError::Fault { code, .. } | EwsError::Failed { code, .. } => code == "ErrorTimeoutExpired",
            EwsError::TimedOut(_) => true,
            _ => false,
        }
    }
}

pub(crate) fn unexpected(op: &str, d: impl Into<String>) -> EwsError {
    EwsError::Unexpected { operation: op.into(), detail: d.into() }
}

/// Parses a response body: the SOAP Body's first child, or the fault it holds.
fn body(xml: &[u8], op: &str) -> Result<Element, EwsError> {
    let doc = parse(xml)?;
    let body = doc.child("Body").ok_or_else(|| unexpected(op, "no SOAP Body"))?;
    if let Some(f) = body.child("Fault") {
        let code = f
            .find("ResponseCode")
            .map(|c| c.text.clone())
            .or_else(|| f.child("faultcode").map(|c| c.text.rsplit(':').next().unwrap_or("").to_string()))
            .unwrap_or_default();
        let message = f.child("faultstring").map(|s| s.text.clone()).unwrap_or_default();
        let back_off_ms = f.find("MessageXml").and_then(|mx| {
            mx.children_named("Value")
                .find(|v| v.attr("Name") == Some("BackOffMilliseconds"))
                .and_then(|v| v.text.trim().parse().ok())
        });
        return Err(EwsError::Fault { code, message, back_off_ms });
    }
    let first = body.children.first().ok_or_else(|| unexpected(op, "empty SOAP Body"))?;
    if first.name != format!("{op}Response") {
        return Err(unexpected(op, format!("the server answered with {}", first.name)));
    }
    Ok(first.clone())
}

/// One `*ResponseMessage`: its class, code and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub class: String,
    pub code: String,
    pub message: String,
}

impl Status {
    fn of(m: &Element) -> Status {
        Status {
            class: m.attr("ResponseClass").unwrap_or("").to_string(),
            code: m.text_at(&["ResponseCode"]).unwrap_or("").to_string(),
            message: m.text_at(&["MessageText"]).unwrap_or("").to_string(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.class == "Error"
    }
}

fn messages<'a>(root: &'a Element, op: &str) -> Result<Vec<&'a Element>, EwsError> {
    let msgs = root.child("ResponseMessages").ok_or_else(|| unexpected(op, "no ResponseMessages"))?;
    Ok(msgs.children.iter().collect())
}

fn single<'a>(root: &'a Element, op: &str) -> Result<&'a Element, EwsError> {
    let m = *messages(root, op)?.first().ok_or_else(|| unexpected(op, "no response message"))?;
    let s = Status::of(m);
    if s.is_error() {
        return Err(EwsError::Failed { operation: op.into(), code: s.code, message: s.message });
    }
    Ok(m)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Create,
    Update,
    Delete,
    ReadFlagChange,
}

fn kind(name: &str) -> Option<ChangeKind> {
    Some(match name {
        "Create" => ChangeKind::Create,
        "Update" => ChangeKind::Update,
        "Delete" => ChangeKind::Delete,
        "ReadFlagChange" => ChangeKind::ReadFlagChange,
        _ => return None,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderChange {
    pub kind: ChangeKind,
    pub id: String,
    pub parent_id: String,
    pub display_name: String,
    pub folder_class: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HierarchySync {
    pub sync_state: String,
    pub last: bool,
    pub changes: Vec<FolderChange>,
}

/// A folder element (Folder, CalendarFolder, ...) with the properties exarch asks for.
fn folder_change(kind: ChangeKind, id: String, folder: Option<&Element>) -> FolderChange {
    FolderChange {
        kind,
        id,
        parent_id: folder.and_then(|f| f.child("ParentFolderId")).and_then(|p| p.attr("Id")).unwrap_or("").to_string(),
        display_name: folder.and_then(|f| f.text_at(&["DisplayName"])).unwrap_or("").to_string(),
        folder_class: folder.and_then(|f| f.text_at(&["FolderClass"])).unwrap_or("").to_string(),
    }
}

pub fn parse_sync_folder_hierarchy(xml: &[u8]) -> Result<HierarchySync, EwsError> {
    let op = "SyncFolderHierarchy";
    let root = body(xml, op)?;
    let m = single(&root, op)?;
    let mut changes = Vec::new();
    if let Some(cs) = m.child("Changes") {
        for c in &cs.children {
            let Some(k) = kind(&c.name) else { continue };
            let (id, folder) = if k == ChangeKind::Delete {
                (c.find("FolderId").and_then(|f| f.attr("Id")).unwrap_or("").to_string(), None)
            } else {
                let f = c.children.first().ok_or_else(|| unexpected(op, "change without folder"))?;
                (f.child("FolderId").and_then(|i| i.attr("Id")).unwrap_or("").to_string(), Some(f))
            };
            changes.push(folder_change(k, id, folder));
        }
    }
    Ok(HierarchySync {
        sync_state: m.text_at(&["SyncState"]).unwrap_or("").to_string(),
        last: m.text_at(&["IncludesLastFolderInRange"]) == Some("true"),
        changes,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemChange {
    pub kind: ChangeKind,
    pub id: String,
    pub change_key: String,
    /// The item element's name: `Message`, `CalendarItem`, `Contact`, `Task`, ...
    pub element: String,
    pub subject: String,
    pub item_class: String,
    pub size: u64,
    pub received: String,
    pub from: String,
    /// A folder-associated (hidden) item.
    pub associated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemSync {
    pub sync_state: String,
    pub last: bool,
    pub changes: Vec<ItemChange>,
}

/// An item element (Message, CalendarItem, ...) with the properties exarch asks for.
fn item_change(kind: ChangeKind, item: Option<&Element>, id_el: Option<&Element>) -> ItemChange {
    ItemChange {
        kind,
        id: id_el.and_then(|i| i.attr("Id")).unwrap_or("").to_string(),
        change_key: id_el.and_then(|i| i.attr("ChangeKey")).unwrap_or("").to_string(),
        element: item.map(|i| i.name.clone()).unwrap_or_default(),
        subject: item.and_then(|i| i.text_at(&["Subject"])).unwrap_or("").to_string(),
        item_class: item.and_then(|i| i.text_at(&["ItemClass"])).unwrap_or("").to_string(),
        size: item.and_then(|i| i.text_at(&["Size"])).and_then(|s| s.trim().parse().ok()).unwrap_or(0),
        received: item.and_then(|i| i.text_at(&["DateTimeReceived"])).unwrap_or("").to_string(),
        from: item
            .and_then(|i| i.child("From"))
            .and_then(|f| f.find("EmailAddress"))
            .map(|e| e.text.clone())
            .unwrap_or_default(),
        associated: item.and_then(|i| i.text_at(&["IsAssociated"])) == Some("true"),
    }
}

/// One page of a FindFolder or FindItem answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub entries: Vec<T>,
    pub last: bool,
    /// Where the next page starts.
    pub next_offset: u32,
}

fn page_of<T>(m: &Element, op: &str, entries: Vec<T>) -> Result<Page<T>, EwsError> {
    let root = m.child("RootFolder").ok_or_else(|| unexpected(op, "no RootFolder"))?;
    let last = root.attr("IncludesLastItemInRange") != Some("false");
    let next_offset = root.attr("IndexedPagingOffset").and_then(|o| o.parse().ok()).unwrap_or(0);
    Ok(Page { entries, last, next_offset })
}

/// Subfolders from a FindFolder response (as `FolderChange`s of kind `Create`).
pub fn parse_find_folder(xml: &[u8]) -> Result<Page<FolderChange>, EwsError> {
    let op = "FindFolder";
    let root = body(xml, op)?;
    let m = single(&root, op)?;
    let folders = m.child("RootFolder").and_then(|r| r.child("Folders")).map(|f| f.children.as_slice()).unwrap_or(&[]);
    let entries = folders
        .iter()
        .map(|f| {
            let id = f.child("FolderId").and_then(|i| i.attr("Id")).unwrap_or("").to_string();
            folder_change(ChangeKind::Create, id, Some(f))
        })
        .collect();
    page_of(m, op, entries)
}

/// GetFolder: for each requested folder in order, its id, or `None` when the mailbox has no such
/// folder (a per-folder error such as ErrorFolderNotFound).
pub fn parse_get_folder(xml: &[u8]) -> Result<Vec<Option<String>>, EwsError> {
    let op = "GetFolder";
    let root = body(xml, op)?;
    Ok(messages(&root, op)?
        .iter()
        .map(|m| {
            if Status::of(m).is_error() {
                return None;
            }
            m.find("FolderId").and_then(|f| f.attr("Id")).map(str::to_string)
        })
        .collect())
}

/// Items from a FindItem response (as `ItemChange`s of kind `Create`).
pub fn parse_find_item(xml: &[u8]) -> Result<Page<ItemChange>, EwsError> {
    let op = "FindItem";
    let root = body(xml, op)?;
    let m = single(&root, op)?;
    let items = m.child("RootFolder").and_then(|r| r.child("Items")).map(|f| f.children.as_slice()).unwrap_or(&[]);
    let entries = items.iter().map(|i| item_change(ChangeKind::Create, Some(i), i.child("ItemId"))).collect();
    page_of(m, op, entries)
}

pub fn parse_sync_folder_items(xml: &[u8]) -> Result<ItemSync, EwsError> {
    let op = "SyncFolderItems";
    let root = body(xml, op)?;
    let m = single(&root, op)?;
    let mut changes = Vec::new();
    if let Some(cs) = m.child("Changes") {
        for c in &cs.children {
            let Some(k) = kind(&c.name) else { continue };
            let item =
                if matches!(k, ChangeKind::Delete | ChangeKind::ReadFlagChange) { None } else { c.children.first() };
            let id_el = match item {
                Some(i) => i.child("ItemId"),
                None => c.child("ItemId"),
            };
            changes.push(item_change(k, item, id_el));
        }
    }
    Ok(ItemSync {
        sync_state: m.text_at(&["SyncState"]).unwrap_or("").to_string(),
        last: m.text_at(&["IncludesLastItemInRange"]) == Some("true"),
        changes,
    })
}

/// One item of an ExportItems response, in request order.
#[derive(Debug, PartialEq)]
pub enum Exported {
    Ok { id: String, data: crate::export_stream::ItemData },
    Failed { status: Status },
}

/// Parses an ExportItems response. A whole-request failure is an error; per-item failures
/// (a dirty item) are `Exported::Failed` entries beside the good ones.
pub fn parse_export_items(xml: &[u8]) -> Result<Vec<Exported>, EwsError> {
    let op = "ExportItems";
    let root = body(xml, op)?;
    let mut out = Vec::new();
    for m in messages(&root, op)? {
        let s = Status::of(m);
        if s.is_error() {
            out.push(Exported::Failed { status: s });
            continue;
        }
        let id = m.child("ItemId").and_then(|i| i.attr("Id")).ok_or_else(|| unexpected(op, "item without ItemId"))?;
        let b64: String = m.text_at(&["Data"]).unwrap_or("").split_ascii_whitespace().collect();
        let data = base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|e| unexpected(op, format!("item {id}: Data is not base64: {e}")))?;
        out.push(Exported::Ok { id: id.to_string(), data: crate::export_stream::ItemData::from_vec(data) });
    }
    Ok(out)
}

/// One item of an UploadItems response, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uploaded {
    Ok { id: String, change_key: String },
    Failed { status: Status },
}

/// Parses an UploadItems response: per-item results (a refused item is `Uploaded::Failed`).
pub fn parse_upload_items(xml: &[u8]) -> Result<Vec<Uploaded>, EwsError> {
    let op = "UploadItems";
    let root = body(xml, op)?;
    let mut out = Vec::new();
    for m in messages(&root, op)? {
        let s = Status::of(m);
        if s.is_error() {
            out.push(Uploaded::Failed { status: s });
            continue;
        }
        let id = m.child("ItemId").ok_or_else(|| unexpected(op, "uploaded item without ItemId"))?;
        out.push(Uploaded::Ok {
            id: id.attr("Id").unwrap_or("").to_string(),
            change_key: id.attr("ChangeKey").unwrap_or("").to_string(),
        });
    }
    Ok(out)
}

/// The new folder's id from a CreateFolder response for one folder.
pub fn parse_create_folder(xml: &[u8]) -> Result<String, EwsError> {
    let op = "CreateFolder";
    let root = body(xml, op)?;
    let m = single(&root, op)?;
    m.find("FolderId")
        .and_then(|f| f.attr("Id"))
        .map(str::to_string)
        .ok_or_else(|| unexpected(op, "no FolderId in the response"))
}

/// Mailbox addresses from a ResolveNames response (how `--all-mailboxes` discovers them).
pub fn parse_resolve_names(xml: &[u8]) -> Result<Vec<String>, EwsError> {
    let op = "ResolveNames";
    let root = body(xml, op)?;
    let mut out = Vec::new();
    for m in messages(&root, op)? {
        let s = Status::of(m);
        // ErrorNameResolutionMultipleResults is a warning with results; NoResults is simply none.
        if s.is_error() && s.code != "ErrorNameResolutionNoResults" {
            return Err(EwsError::Failed { operation: op.into(), code: s.code, message: s.message });
        }
        if let Some(set) = m.child("ResolutionSet") {
            for r in set.children_named("Resolution") {
                if let Some(a) = r.child("Mailbox").and_then(|mb| mb.text_at(&["EmailAddress"])) {
                    out.push(a.to_string());
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENV: &str = r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Body>BODY</s:Body></s:Envelope>"#;

    fn wrap(body: &str) -> Vec<u8> {
        ENV.replace("BODY", body).into_bytes()
    }

    #[test]
    fn server_busy_fault_carries_back_off() {
        let x = wrap(
            r#"<s:Fault><faultcode xmlns:a="http://schemas.microsoft.com/exchange/services/2006/types">a:ErrorServerBusy</faultcode><faultstring xml:lang="en-US">The server cannot service this request right now. Try again later.</faultstring><detail><e:ResponseCode xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">ErrorServerBusy</e:ResponseCode><e:Message xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">The server cannot service this request right now. Try again later.</e:Message><t:MessageXml><t:Value Name="BackOffMilliseconds">297749</t:Value></t:MessageXml></detail></s:Fault>"#,
        );
        let e = parse_export_items(&x).unwrap_err();
        assert!(e.is_throttling());
        match e {
            EwsError::Fault { code, back_off_ms, .. } => {
                assert_eq!(code, "ErrorServerBusy");
                assert_eq!(back_off_ms, Some(297_749));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn export_items_mixes_good_and_dirty() {
        let x = wrap(
            r#"<m:ExportItemsResponse><m:ResponseMessages><m:ExportItemsResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:ItemId Id="A1" ChangeKey="c"/><m:Data>aGVsbG8=</m:Data></m:ExportItemsResponseMessage><m:ExportItemsResponseMessage ResponseClass="Error"><m:MessageText>The item is corrupt.</m:MessageText><m:ResponseCode>ErrorItemCorrupt</m:ResponseCode></m:ExportItemsResponseMessage></m:ResponseMessages></m:ExportItemsResponse>"#,
        );
        let r = parse_export_items(&x).unwrap();
        assert_eq!(
            r[0],
            Exported::Ok { id: "A1".into(), data: crate::export_stream::ItemData::from_vec(b"hello".to_vec()) }
        );
        match &r[1] {
            Exported::Failed { status } => assert_eq!(status.code, "ErrorItemCorrupt"),
            other => panic!("{other:?}"),
        }
        // malformed XML and bad base64 are errors, never silently empty items
        assert!(matches!(parse_export_items(&x[..x.len() - 40]), Err(EwsError::Xml(_))));
        let bad = wrap(
            r#"<m:ExportItemsResponse><m:ResponseMessages><m:ExportItemsResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:ItemId Id="A1"/><m:Data>!!!</m:Data></m:ExportItemsResponseMessage></m:ResponseMessages></m:ExportItemsResponse>"#,
        );
        assert!(matches!(parse_export_items(&bad), Err(EwsError::Unexpected { .. })));
    }

    #[test]
    fn sync_folder_items_changes() {
        let x = wrap(
            r#"<m:SyncFolderItemsResponse><m:ResponseMessages><m:SyncFolderItemsResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:SyncState>S2</m:SyncState><m:IncludesLastItemInRange>false</m:IncludesLastItemInRange><m:Changes><t:Create><t:CalendarItem><t:ItemId Id="I1" ChangeKey="K1"/><t:Subject>Weekly sync</t:Subject><t:ItemClass>IPM.Appointment</t:ItemClass><t:Size>2048</t:Size><t:DateTimeReceived>2026-11-01T09:00:00Z</t:DateTimeReceived></t:CalendarItem></t:Create><t:Delete><t:ItemId Id="I0" ChangeKey="K0"/></t:Delete></m:Changes></m:SyncFolderItemsResponseMessage></m:ResponseMessages></m:SyncFolderItemsResponse>"#,
        );
        let s = parse_sync_folder_items(&x).unwrap();
        assert_eq!(s.sync_state, "S2");
        assert!(!s.last);
        assert_eq!(s.changes.len(), 2);
        assert_eq!(s.changes[0].element, "CalendarItem");
        assert_eq!(s.changes[0].size, 2048);
        assert_eq!(s.changes[1].kind, ChangeKind::Delete);
        assert_eq!(s.changes[1].id, "I0");
        let failed = wrap(
            r#"<m:SyncFolderItemsResponse><m:ResponseMessages><m:SyncFolderItemsResponseMessage ResponseClass="Error"><m:MessageText>Invalid sync state</m:MessageText><m:ResponseCode>ErrorInvalidSyncStateData</m:ResponseCode></m:SyncFolderItemsResponseMessage></m:ResponseMessages></m:SyncFolderItemsResponse>"#,
        );
        assert!(
            matches!(parse_sync_folder_items(&failed), Err(EwsError::Failed { code, .. }) if code == "ErrorInvalidSyncStateData")
        );
    }

    #[test]
    fn find_folder_and_find_item_pages() {
        let f = wrap(
            r#"<m:FindFolderResponse><m:ResponseMessages><m:FindFolderResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:RootFolder IndexedPagingOffset="1" TotalItemsInView="2" IncludesLastItemInRange="false"><t:Folders><t:Folder><t:FolderId Id="P1" ChangeKey="c"/><t:ParentFolderId Id="ROOT"/><t:FolderClass>IPF.Note</t:FolderClass><t:DisplayName>Company</t:DisplayName></t:Folder></t:Folders></m:RootFolder></m:FindFolderResponseMessage></m:ResponseMessages></m:FindFolderResponse>"#,
        );
        let p = parse_find_folder(&f).unwrap();
        assert_eq!((p.entries.len(), p.last, p.next_offset), (1, false, 1));
        assert_eq!(p.entries[0].display_name, "Company");
        let i = wrap(
            r#"<m:FindItemResponse><m:ResponseMessages><m:FindItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:RootFolder IndexedPagingOffset="1" TotalItemsInView="1" IncludesLastItemInRange="true"><t:Items><t:Message><t:ItemId Id="I1" ChangeKey="K1"/><t:Subject>Hello</t:Subject><t:ItemClass>IPM.Post</t:ItemClass><t:Size>99</t:Size></t:Message></t:Items></m:RootFolder></m:FindItemResponseMessage></m:ResponseMessages></m:FindItemResponse>"#,
        );
        let p = parse_find_item(&i).unwrap();
        assert!(p.last);
        assert_eq!((p.entries[0].id.as_str(), p.entries[0].change_key.as_str(), p.entries[0].size), ("I1", "K1", 99));
        assert!(parse_find_item(&f).is_err(), "a FindFolder answer is not a FindItem answer");
    }

    #[test]
    fn hierarchy_and_resolve_names() {
        let x = wrap(
            r#"<m:SyncFolderHierarchyResponse><m:ResponseMessages><m:SyncFolderHierarchyResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:SyncState>H1</m:SyncState><m:IncludesLastFolderInRange>true</m:IncludesLastFolderInRange><m:Changes><t:Create><t:Folder><t:FolderId Id="F1" ChangeKey="c"/><t:ParentFolderId Id="ROOT"/><t:FolderClass>IPF.Note</t:FolderClass><t:DisplayName>Inbox</t:DisplayName></t:Folder></t:Create></m:Changes></m:SyncFolderHierarchyResponseMessage></m:ResponseMessages></m:SyncFolderHierarchyResponse>"#,
        );
        let h = parse_sync_folder_hierarchy(&x).unwrap();
        assert!(h.last);
        assert_eq!(h.changes[0].display_name, "Inbox");
        assert_eq!(h.changes[0].parent_id, "ROOT");
        let r = wrap(
            r#"<m:ResolveNamesResponse><m:ResponseMessages><m:ResolveNamesResponseMessage ResponseClass="Warning"><m:ResponseCode>ErrorNameResolutionMultipleResults</m:ResponseCode><m:ResolutionSet TotalItemsInView="2"><t:Resolution><t:Mailbox><t:Name>User 1</t:Name><t:EmailAddress>user1@example.com</t:EmailAddress></t:Mailbox></t:Resolution><t:Resolution><t:Mailbox><t:EmailAddress>user2@example.com</t:EmailAddress></t:Mailbox></t:Resolution></m:ResolutionSet></m:ResolveNamesResponseMessage></m:ResponseMessages></m:ResolveNamesResponse>"#,
        );
        assert_eq!(parse_resolve_names(&r).unwrap(), vec!["user1@example.com", "user2@example.com"]);
    }
}

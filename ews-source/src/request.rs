//! Building EWS SOAP requests.
//!
//! Every request carries `RequestServerVersion` (Exchange2010_SP1, the first version with
//! ExportItems/UploadItems) and, when a service account works on someone else's mailbox, an
//! `ExchangeImpersonation` header; the HTTP layer adds the matching `X-AnchorMailbox`.

use crate::{NS_MESSAGES, NS_SOAP, NS_TYPES};
use quick_xml::events::BytesText;
use quick_xml::Writer;

pub const SERVER_VERSION: &str = "Exchange2010_SP1";

/// Microsoft's advice: at most 100 items per ExportItems call.
pub const MAX_EXPORT_BATCH: usize = 100;
/// SyncFolderItems accepts 1..=512 changes per call.
pub const MAX_SYNC_CHANGES: u32 = 512;

/// Properties fetched with each synced item: what `exarch ls` shows and searches, taken from the
/// server rather than parsed out of the opaque export stream.
pub const ITEM_PROPERTIES: [&str; 6] =
    ["item:Subject", "item:ItemClass", "item:Size", "item:DateTimeReceived", "item:IsAssociated", "message:From"];
pub const FOLDER_PROPERTIES: [&str; 3] = ["folder:DisplayName", "folder:FolderClass", "folder:ParentFolderId"];

/// How an UploadItems item is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateAction {
    CreateNew,
    Update,
    UpdateOrCreate,
}

impl CreateAction {
    fn as_str(self) -> &'static str {
        match self {
            CreateAction::CreateNew => "CreateNew",
            CreateAction::Update => "Update",
            CreateAction::UpdateOrCreate => "UpdateOrCreate",
        }
    }
}

/// One item to upload: the full-fidelity stream from ExportItems, base64-encoded by the caller.
#[derive(Debug, Clone)]
pub struct UploadItem<'a> {
    pub parent_folder_id: &'a str,
    pub item_id: Option<&'a str>,
    pub action: CreateAction,
    pub associated: bool,
    pub data_base64: &'a str,
}

/// A folder to sync: a distinguished one (`msgfolderroot`, `publicfoldersroot`) or by id.
#[derive(Debug, Clone, Copy)]
pub enum FolderRef<'a> {
    Distinguished(&'a str),
    Id(&'a str),
}

/// The operations exarch sends.
#[derive(Debug, Clone)]
pub enum Operation<'a> {
    ResolveNames {
        entry: &'a str,
    },
    SyncFolderHierarchy {
        root: FolderRef<'a>,
        sync_state: Option<&'a str>,
    },
    SyncFolderItems {
        folder: FolderRef<'a>,
        sync_state: Option<&'a str>,
        max_changes: u32,
    },
    ExportItems {
        item_ids: &'a [&'a str],
    },
    UploadItems {
        items: &'a [UploadItem<'a>],
    },
    /// One folder under `parent`; the element (Folder, CalendarFolder, ...) follows the class.
    CreateFolder {
        parent: FolderRef<'a>,
        name: &'a str,
        class: &'a str,
    },
    /// The direct subfolders of `parent`, a page from `offset` (public folders: no sync there).
    FindFolder {
        parent: FolderRef<'a>,
        offset: u32,
    },
    /// The items of `folder`, a page of at most `max` from `offset`.
    FindItem {
        folder: FolderRef<'a>,
        offset: u32,
        max: u32,
    },
    /// Folders by id or distinguished name (how a mailbox's Inbox is found whatever its language).
    GetFolder {
        folders: &'a [FolderRef<'a>],
    },
}

impl Operation<'_> {
    /// The operation's name, as in the SOAPAction header and the simulator's statistics.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::ResolveNames { .. } => "ResolveNames",
            Operation::SyncFolderHierarchy { .. } => "SyncFolderHierarchy",
            Operation::SyncFolderItems { .. } => "SyncFolderItems",
            Operation::ExportItems { .. } => "ExportItems",
            Operation::UploadItems { .. } => "UploadItems",
            Operation::CreateFolder { .. } => "CreateFolder",
            Operation::FindFolder { .. } => "FindFolder",
            Operation::FindItem { .. } => "FindItem",
            Operation::GetFolder { .. } => "GetFolder",
        }
    }
}

type W = Writer<Vec<u8>>;
type R = std::io::Result<()>;

fn text(w: &mut W, name: &str, value: &str) -> R {
    w.create_element(name).write_text_content(BytesText::new(value))?;
    Ok(())
}

fn folder_ref(w: &mut W, wrapper: &str, f: FolderRef) -> R {
    w.create_element(wrapper).write_inner_content(|w| {
        match f {
            FolderRef::Distinguished(id) => {
                w.create_element("t:DistinguishedFolderId").with_attribute(("Id", id)).write_empty()?
            }
            FolderRef::Id(id) => w.create_element("t:FolderId").with_attribute(("Id", id)).write_empty()?,
        };
        Ok(())
    })?;
    Ok(())
}

/// Entries per FindFolder/FindItem page (Exchange's default EWSFindCountLimit is 1000).
pub const MAX_FIND_PAGE: u32 = 1000;

fn page(w: &mut W, element: &str, max: u32, offset: u32) -> R {
    w.create_element(element)
        .with_attributes([
            ("MaxEntriesReturned", max.to_string().as_str()),
            ("Offset", offset.to_string().as_str()),
            ("BasePoint", "Beginning"),
        ])
        .write_empty()?;
    Ok(())
}

fn shape(w: &mut W, wrapper: &str, props: &[&str]) -> R {
    w.create_element(wrapper).write_inner_content(|w| {
        text(w, "t:BaseShape", "IdOnly")?;
        w.create_element("t:AdditionalProperties").write_inner_content(|w| {
            for p in props {
                w.create_element("t:FieldURI").with_attribute(("FieldURI", *p)).write_empty()?;
            }
            Ok(())
        })?;
        Ok(())
    })?;
    Ok(())
}

fn body(w: &mut W, op: &Operation) -> R {
    match op {
        Operation::ResolveNames { entry } => {
            w.create_element("m:ResolveNames")
                .with_attributes([("ReturnFullContactData", "false"), ("SearchScope", "ActiveDirectory")])
                .write_inner_content(|w| text(w, "m:UnresolvedEntry", entry))?;
        }
        Operation::SyncFolderHierarchy { root, sync_state } => {
            w.create_element("m:SyncFolderHierarchy").write_inner_content(|w| {
                shape(w, "m:FolderShape", &FOLDER_PROPERTIES)?;
                folder_ref(w, "m:SyncFolderId", *root)?;
                if let Some(s) = sync_state {
                    text(w, "m:SyncState", s)?;
                }
                Ok(())
            })?;
        }
        Operation::SyncFolderItems { folder, sync_state, max_changes } => {
            w.create_element("m:SyncFolderItems").write_inner_content(|w| {
                shape(w, "m:ItemShape", &ITEM_PROPERTIES)?;
                folder_ref(w, "m:SyncFolderId", *folder)?;
                if let Some(s) = sync_state {
                    text(w, "m:SyncState", s)?;
                }
                text(w, "m:MaxChangesReturned", &(*max_changes).clamp(1, MAX_SYNC_CHANGES).to_string())?;
                // Normal and folder-associated (hidden) items: rules, views and forms are mail too.
                text(w, "m:SyncScope", "NormalAndAssociatedItems")?;
                Ok(())
            })?;
        }
        Operation::ExportItems { item_ids } => {
            w.create_element("m:ExportItems").write_inner_content(|w| {
                w.create_element("m:ItemIds").write_inner_content(|w| {
                    for id in item_ids.iter() {
                        w.create_element("t:ItemId").with_attribute(("Id", *id)).write_empty()?;
                    }
                    Ok(())
                })?;
                Ok(())
            })?;
        }
        Operation::UploadItems { items } => {
            w.create_element("m:UploadItems").write_inner_content(|w| {
                w.create_element("m:Items").write_inner_content(|w| {
                    for it in items.iter() {
                        let mut e = w.create_element("t:Item").with_attribute(("CreateAction", it.action.as_str()));
                        if it.associated {
                            e = e.with_attribute(("IsAssociated", "true"));
                        }
                        e.write_inner_content(|w| {
                            w.create_element("t:ParentFolderId")
                                .with_attribute(("Id", it.parent_folder_id))
                                .write_empty()?;
                            if let Some(id) = it.item_id {
                                w.create_element("t:ItemId").with_attribute(("Id", id)).write_empty()?;
                            }
                            text(w, "t:Data", it.data_base64)
                        })?;
                    }
                    Ok(())
                })?;
                Ok(())
            })?;
        }
        Operation::FindFolder { parent, offset } => {
            w.create_element("m:FindFolder").with_attribute(("Traversal", "Shallow")).write_inner_content(|w| {
                shape(w, "m:FolderShape", &FOLDER_PROPERTIES)?;
                page(w, "m:IndexedPageFolderView", MAX_FIND_PAGE, *offset)?;
                folder_ref(w, "m:ParentFolderIds", *parent)
            })?;
        }
        Operation::FindItem { folder, offset, max } => {
            w.create_element("m:FindItem").with_attribute(("Traversal", "Shallow")).write_inner_content(|w| {
                shape(w, "m:ItemShape", &ITEM_PROPERTIES)?;
                page(w, "m:IndexedPageItemView", (*max).clamp(1, MAX_FIND_PAGE), *offset)?;
                folder_ref(w, "m:ParentFolderIds", *folder)
            })?;
        }
        Operation::GetFolder { folders } => {
            w.create_element("m:GetFolder").write_inner_content(|w| {
                shape(w, "m:FolderShape", &FOLDER_PROPERTIES)?;
                w.create_element("m:FolderIds").write_inner_content(|w| {
                    for f in folders.iter() {
                        match f {
                            FolderRef::Distinguished(id) => {
                                w.create_element("t:DistinguishedFolderId").with_attribute(("Id", *id)).write_empty()?
                            }
                            FolderRef::Id(id) => {
                                w.create_element("t:FolderId").with_attribute(("Id", *id)).write_empty()?
                            }
                        };
                    }
                    Ok(())
                })?;
                Ok(())
            })?;
        }
        Operation::CreateFolder { parent, name, class } => {
            w.create_element("m:CreateFolder").write_inner_content(|w| {
                folder_ref(w, "m:ParentFolderId", *parent)?;
                w.create_element("m:Folders").write_inner_content(|w| {
                    let element = match *class {
                        c if c.starts_with("IPF.Appointment") => "t:CalendarFolder",
                        c if c.starts_with("IPF.Contact") => "t:ContactsFolder",
                        c if c.starts_with("IPF.Task") => "t:TasksFolder",
                        _ => "t:Folder",
                    };
                    w.create_element(element).write_inner_content(|w| {
                        if !class.is_empty() {
                            text(w, "t:FolderClass", class)?;
                        }
                        text(w, "t:DisplayName", name)
                    })?;
                    Ok(())
                })?;
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// The SOAP header content and body of one request, without the envelope: for schema checks.
pub struct Parts {
    pub header: Vec<String>,
    pub body: String,
}

fn render(f: impl FnOnce(&mut W) -> R) -> String {
    let mut w = Writer::new(Vec::new());
    f(&mut w).expect("writing to memory cannot fail");
    String::from_utf8(w.into_inner()).expect("UTF-8")
}

fn with_ns(fragment: &str) -> String {
    // Declare both EWS namespaces on the fragment's root so it stands alone.
    let end = fragment.find(['>', ' ', '/']).expect("fragment has a root element");
    format!("{} xmlns:m=\"{NS_MESSAGES}\" xmlns:t=\"{NS_TYPES}\"{}", &fragment[..end], &fragment[end..])
}

/// Header elements and body, each a standalone XML fragment with namespace declarations.
pub fn parts(op: &Operation, impersonate: Option<&str>) -> Parts {
    let mut header = vec![render(|w| {
        w.create_element("t:RequestServerVersion").with_attribute(("Version", SERVER_VERSION)).write_empty()?;
        Ok(())
    })];
    if let Some(smtp) = impersonate {
        header.push(render(|w| {
            w.create_element("t:ExchangeImpersonation").write_inner_content(|w| {
                w.create_element("t:ConnectingSID").write_inner_content(|w| text(w, "t:PrimarySmtpAddress", smtp))?;
                Ok(())
            })?;
            Ok(())
        }));
    }
    Parts { header: header.iter().map(|h| with_ns(h)).collect(), body: with_ns(&render(|w| body(w, op))) }
}

/// The complete SOAP 1.1 envelope for `op`, impersonating `impersonate` when given. It is made of
/// exactly the fragments `parts` returns (each declaring its namespaces), so what the schema test
/// validates is byte for byte what is sent.
pub fn envelope(op: &Operation, impersonate: Option<&str>) -> String {
    let p = parts(op, impersonate);
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"{NS_SOAP}\"><soap:Header>{}</soap:Header><soap:Body>{}</soap:Body></soap:Envelope>",
        p.header.concat(),
        p.body
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_version_impersonation_and_escapes_text() {
        let ids = ["AAMk<1>&", "AAMk2"];
        let x = envelope(&Operation::ExportItems { item_ids: &ids }, Some("user1@example.com"));
        assert!(x.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope"));
        assert!(x.contains("<t:RequestServerVersion xmlns:m=") && x.contains("Version=\"Exchange2010_SP1\"/>"));
        assert!(x.contains("<t:PrimarySmtpAddress>user1@example.com</t:PrimarySmtpAddress>"));
        assert!(x.contains("Id=\"AAMk&lt;1&gt;&amp;\""));
        let x = envelope(
            &Operation::SyncFolderItems { folder: FolderRef::Id("F1"), sync_state: None, max_changes: 9999 },
            None,
        );
        assert!(x.contains("<m:MaxChangesReturned>512</m:MaxChangesReturned>"));
        assert!(!x.contains("ExchangeImpersonation"));
    }
}

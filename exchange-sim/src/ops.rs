//! The EWS operations the simulator answers: ResolveNames, SyncFolderHierarchy, SyncFolderItems,
//! GetFolder, FindFolder, FindItem, ExportItems, UploadItems and CreateFolder, on the model's state.
//! Items flagged dirty fail every ExportItems batch containing them.

use crate::model::{Item, State};
use crate::server::{Reply, Simulator};
use crate::soap::{fault, folder_xml, ok_message, page_bounds, response};
use exarch_ews_source::dom;
use quick_xml::escape::escape;

impl Simulator {
    pub(crate) fn dispatch(&self, op: &str, el: &dom::Element, mailbox: Option<&str>) -> Reply {
        let mut state = self.state.lock().expect("state");
        if op == "ResolveNames" {
            let set: String = state
                .mailboxes
                .iter()
                .filter(|m| !m.public && m.part == crate::stores::Part::Primary)
                .map(|m| format!("<t:Resolution><t:Mailbox><t:Name>{a}</t:Name><t:EmailAddress>{a}</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType><t:MailboxType>Mailbox</t:MailboxType></t:Mailbox></t:Resolution>", a = escape(&m.address)))
                .collect();
            let msg = format!("<m:ResolveNamesResponseMessage ResponseClass=\"Warning\"><m:MessageText>Multiple results were found.</m:MessageText><m:ResponseCode>ErrorNameResolutionMultipleResults</m:ResponseCode><m:ResolutionSet TotalItemsInView=\"{n}\" IncludesLastItemInRange=\"true\">{set}</m:ResolutionSet></m:ResolveNamesResponseMessage>", n = state.mailboxes.iter().filter(|m| !m.public && m.part == crate::stores::Part::Primary).count());
            return (200, response("ResolveNames", &msg));
        }
        // Without impersonation a request goes to the public folders, which know no sync.
        let Some(mbx) = (match mailbox {
            Some(m) => state.mailbox(m),
            None => state.public_store(),
        }) else {
            return (500, fault("ErrorNonExistentMailbox", "No mailbox with such guid or address.", None));
        };
        // The part of the user's mailbox (archive, Recoverable Items) the request names.
        let primary = mbx;
        let Some(mbx) = state.route(primary, el) else {
            return (200, response(op, &format!("<m:{op}ResponseMessage ResponseClass=\"Error\"><m:MessageText>The specified folder could not be found in the store.</m:MessageText><m:ResponseCode>ErrorFolderNotFound</m:ResponseCode></m:{op}ResponseMessage>")));
        };
        if state.mailboxes[mbx].public && op.starts_with("Sync") {
            return (500, fault("ErrorInvalidOperation", &format!("{op} is not supported for public folders."), None));
        }
        match op {
            "UploadItems" => return self.upload_items(&mut state, mbx, el),
            "CreateFolder" => return self.create_folder(&mut state, mbx, el),
            _ => {}
        }
        let state = &*state;
        let mb = &state.mailboxes[mbx];
        match op {
            "SyncFolderHierarchy" => {
                let since: u64 = el.text_at(&["SyncState"]).and_then(|s| s.parse().ok()).unwrap_or(0);
                let changes: String = if since == 0 {
                    mb.folders
                        .iter()
                        .filter(|f| !f.parent_id.is_empty())
                        .map(|f| format!("<t:Create>{}</t:Create>", folder_xml(f)))
                        .collect()
                } else {
                    String::new()
                };
                let inner = format!("<m:SyncState>1</m:SyncState><m:IncludesLastFolderInRange>true</m:IncludesLastFolderInRange><m:Changes>{changes}</m:Changes>");
                (200, response("SyncFolderHierarchy", &ok_message("SyncFolderHierarchy", &inner)))
            }
            "SyncFolderItems" => {
                let folder_id = el.find("FolderId").and_then(|f| f.attr("Id")).unwrap_or("").to_string();
                if !mb.folders.iter().any(|f| f.id == folder_id) {
                    return (200, response("SyncFolderItems", "<m:SyncFolderItemsResponseMessage ResponseClass=\"Error\"><m:MessageText>The specified folder could not be found in the store.</m:MessageText><m:ResponseCode>ErrorFolderNotFound</m:ResponseCode></m:SyncFolderItemsResponseMessage>"));
                }
                let since: u64 = el.text_at(&["SyncState"]).and_then(|s| s.parse().ok()).unwrap_or(0);
                let max: usize = el
                    .text_at(&["MaxChangesReturned"])
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(512)
                    .clamp(1, 512);
                // Changes newer than the client's watermark, oldest first.
                let mut changes: Vec<(u64, String)> = Vec::new();
                for it in mb.items.iter().filter(|i| i.folder_id == folder_id && i.seq > since) {
                    let kind = if it.created_seq > since { "Create" } else { "Update" };
                    changes.push((it.seq, format!("<t:{kind}>{}</t:{kind}>", self.item_xml(state, it))));
                }
                for t in mb.tombstones.iter().filter(|t| t.folder_id == folder_id && t.seq > since) {
                    changes.push((
                        t.seq,
                        format!("<t:Delete><t:ItemId Id=\"{}\" ChangeKey=\"AAAA\"/></t:Delete>", escape(&t.id)),
                    ));
                }
                changes.sort_by_key(|c| c.0);
                let last = changes.len() <= max;
                changes.truncate(max);
                let new_state = changes.last().map(|c| c.0).unwrap_or(since);
                let body: String = changes.into_iter().map(|c| c.1).collect();
                let inner = format!("<m:SyncState>{new_state}</m:SyncState><m:IncludesLastItemInRange>{last}</m:IncludesLastItemInRange><m:Changes>{body}</m:Changes>");
                (200, response("SyncFolderItems", &ok_message("SyncFolderItems", &inner)))
            }
            "GetFolder" => {
                let mut msgs = String::new();
                let root = state.mailbox_root(mbx);
                for f in el.find("FolderIds").map(|f| f.children.as_slice()).unwrap_or(&[]) {
                    let found = match (f.name.as_str(), f.attr("Id")) {
                        ("DistinguishedFolderId", Some("root")) => Some(&root),
                        ("DistinguishedFolderId", Some(d)) => state
                            .part_of(primary, crate::stores::Part::of_distinguished(d))
                            .and_then(|p| state.distinguished_folder(p, d)),
                        (_, Some(id)) if id == root.id => Some(&root),
                        (_, Some(id)) => state
                            .parts(primary)
                            .into_iter()
                            .find_map(|p| state.mailboxes[p].folders.iter().find(|x| x.id == id)),
                        _ => None,
                    };
                    match found {
                        Some(x) => msgs.push_str(&ok_message("GetFolder", &format!("<m:Folders>{}</m:Folders>", folder_xml(x)))),
                        None => msgs.push_str("<m:GetFolderResponseMessage ResponseClass=\"Error\"><m:MessageText>The specified folder could not be found in the store.</m:MessageText><m:ResponseCode>ErrorFolderNotFound</m:ResponseCode></m:GetFolderResponseMessage>"),
                    }
                }
                (200, response("GetFolder", &msgs))
            }
            "FindFolder" => {
                let root = state.mailbox_root(mbx);
                let parent = match el.find("ParentFolderIds").and_then(|p| p.children.first()) {
                    Some(f) if f.name == "DistinguishedFolderId" && f.attr("Id") == Some("root") => root.id.clone(),
                    Some(f) if f.name == "DistinguishedFolderId" => {
                        mb.folders.iter().find(|f| f.parent_id.is_empty()).map(|f| f.id.clone()).unwrap_or_default()
                    }
                    Some(f) => f.attr("Id").unwrap_or("").to_string(),
                    None => String::new(),
                };
                // The mailbox root holds the top of the information store (shown as its parent).
                let mut folders: Vec<crate::model::Folder> = mb.folders.clone();
                for f in folders.iter_mut().filter(|f| f.parent_id.is_empty()) {
                    f.parent_id = root.id.clone();
                }
                if parent != root.id && !folders.iter().any(|f| f.id == parent) {
                    return (200, response("FindFolder", "<m:FindFolderResponseMessage ResponseClass=\"Error\"><m:MessageText>The specified folder could not be found in the store.</m:MessageText><m:ResponseCode>ErrorFolderNotFound</m:ResponseCode></m:FindFolderResponseMessage>"));
                }
                // Shallow: the children; Deep: every folder below, parents before children.
                let deep = el.attr("Traversal") == Some("Deep");
                let mut children: Vec<&crate::model::Folder> =
                    folders.iter().filter(|f| f.parent_id == parent).collect();
                if deep {
                    let mut i = 0;
                    while i < children.len() {
                        let id = children[i].id.clone();
                        children.extend(folders.iter().filter(|f| f.parent_id == id));
                        i += 1;
                    }
                }
                let (from, to, last) = page_bounds(el, "IndexedPageFolderView", children.len());
                let body: String = children[from..to].iter().map(|f| folder_xml(f)).collect();
                let inner = format!("<m:RootFolder IndexedPagingOffset=\"{to}\" TotalItemsInView=\"{}\" IncludesLastItemInRange=\"{last}\"><t:Folders>{body}</t:Folders></m:RootFolder>", children.len());
                (200, response("FindFolder", &ok_message("FindFolder", &inner)))
            }
            "FindItem" => {
                let parent = el.find("ParentFolderIds").and_then(|p| p.children.first());
                let folder_id = match parent {
                    Some(f) if f.name == "DistinguishedFolderId" => f
                        .attr("Id")
                        .and_then(|d| state.distinguished_folder(mbx, d))
                        .map(|f| f.id.as_str())
                        .unwrap_or(""),
                    Some(f) => f.attr("Id").unwrap_or(""),
                    None => "",
                };
                if !mb.folders.iter().any(|f| f.id == folder_id) {
                    return (200, response("FindItem", "<m:FindItemResponseMessage ResponseClass=\"Error\"><m:MessageText>The specified folder could not be found in the store.</m:MessageText><m:ResponseCode>ErrorFolderNotFound</m:ResponseCode></m:FindItemResponseMessage>"));
                }
                let items: Vec<_> = mb.items.iter().filter(|i| i.folder_id == folder_id && !i.associated).collect();
                let (from, to, last) = page_bounds(el, "IndexedPageItemView", items.len());
                let body: String = items[from..to].iter().map(|it| self.item_xml(state, it)).collect();
                let inner = format!("<m:RootFolder IndexedPagingOffset=\"{to}\" TotalItemsInView=\"{}\" IncludesLastItemInRange=\"{last}\"><t:Items>{body}</t:Items></m:RootFolder>", items.len());
                (200, response("FindItem", &ok_message("FindItem", &inner)))
            }
            "ExportItems" => {
                let ids: Vec<&str> = el
                    .find("ItemIds")
                    .map(|i| i.children.iter().filter_map(|c| c.attr("Id")).collect())
                    .unwrap_or_default();
                let parts = state.parts(primary);
                let find = |id: &str| parts.iter().find_map(|&p| state.mailboxes[p].items.iter().find(|i| i.id == id));
                let items: Vec<Option<&Item>> = ids.iter().map(|id| find(id)).collect();
                if items.iter().flatten().any(|i| i.dirty) {
                    self.stats.lock().expect("stats").batches_failed_dirty += 1;
                    return (
                        500,
                        fault(
                            "ErrorInternalServerError",
                            "An internal server error occurred. The operation failed.",
                            None,
                        ),
                    );
                }
                // Calendar items are slow; a request that would run past the time limit stops there.
                let found: Vec<&Item> = items.iter().flatten().copied().collect();
                let fits = match self.slow.budget(&found) {
                    crate::slow::Budgeted::All(d) => {
                        self.delay(d);
                        ids.len()
                    }
                    crate::slow::Budgeted::Partial { fits, limit } => {
                        self.delay(limit);
                        self.stats.lock().expect("stats").requests_timed_out += 1;
                        if self.slow.timeout_style == crate::slow::TimeoutStyle::Fault {
                            return (
                                500,
                                fault(
                                    "ErrorTimeoutExpired",
                                    "The request timed out before the operation could complete.",
                                    None,
                                ),
                            );
                        }
                        fits
                    }
                };
                let mut msgs = String::new();
                let mut exported = 0;
                for (k, (id, it)) in ids.iter().zip(items).enumerate() {
                    if k >= fits {
                        msgs.push_str("<m:ExportItemsResponseMessage ResponseClass=\"Error\"><m:MessageText>The request timed out before the operation could complete.</m:MessageText><m:ResponseCode>ErrorTimeoutExpired</m:ResponseCode></m:ExportItemsResponseMessage>");
                        continue;
                    }
                    match it {
                        Some(it) => match state.blob(&self.dir, it) {
                            Ok(b) => {
                                exported += 1;
                                let data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b);
                                msgs.push_str(&ok_message("ExportItems", &format!("<m:ItemId Id=\"{}\" ChangeKey=\"{}\"/><m:Data>{data}</m:Data>", escape(&it.id), escape(&it.change_key))));
                            }
                            Err(e) => msgs.push_str(&format!("<m:ExportItemsResponseMessage ResponseClass=\"Error\"><m:MessageText>{}</m:MessageText><m:ResponseCode>ErrorInternalServerError</m:ResponseCode></m:ExportItemsResponseMessage>", escape(e.to_string()))),
                        },
                        None => msgs.push_str(&format!("<m:ExportItemsResponseMessage ResponseClass=\"Error\"><m:MessageText>The specified object was not found in the store. ({})</m:MessageText><m:ResponseCode>ErrorItemNotFound</m:ResponseCode></m:ExportItemsResponseMessage>", escape(*id))),
                    }
                }
                self.stats.lock().expect("stats").items_exported += exported;
                (200, response("ExportItems", &msgs))
            }
            other => {
                (500, fault("ErrorInvalidOperation", &format!("{other} is not supported by this simulator."), None))
            }
        }
    }

    /// UploadItems: each item created or updated on its own; refused ones get their own error.
    /// The state is saved before the reply, so what a client was told is stored is stored.
    fn upload_items(&self, state: &mut State, mbx: usize, el: &dom::Element) -> Reply {
        let Some(items) = el.child("Items") else {
            return (500, fault("ErrorSchemaValidation", "UploadItems needs Items.", None));
        };
        let mut msgs = String::new();
        let (mut uploaded, mut refused) = (0u64, 0u64);
        for it in items.children_named("Item") {
            let parent = it.child("ParentFolderId").and_then(|p| p.attr("Id")).unwrap_or("");
            let item_id = it.child("ItemId").and_then(|i| i.attr("Id"));
            let action = it.attr("CreateAction").unwrap_or("");
            let associated = it.attr("IsAssociated").is_some_and(|v| v == "true" || v == "1");
            let b64: String = it.text_at(&["Data"]).unwrap_or("").split_ascii_whitespace().collect();
            let result = match base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64.as_bytes()) {
                Err(_) => Err(("ErrorInvalidRequest", "Data is not valid base64.".to_string())),
                Ok(blob) if blob.is_empty() => Err(("ErrorInvalidRequest", "Data is empty.".to_string())),
                Ok(blob) if self.refuses(&blob) => {
                    Err(("ErrorCorruptData", "The item could not be imported: its data is corrupt.".to_string()))
                }
                Ok(blob) => state
                    .upload(&self.dir, mbx, parent, item_id, action, associated, &blob)
                    .map_err(|r| (r.code, r.message)),
            };
            match result {
                Ok((id, ck)) => {
                    uploaded += 1;
                    msgs.push_str(&ok_message(
                        "UploadItems",
                        &format!("<m:ItemId Id=\"{}\" ChangeKey=\"{}\"/>", escape(&id), escape(&ck)),
                    ));
                }
                Err((code, msg)) => {
                    refused += 1;
                    msgs.push_str(&format!("<m:UploadItemsResponseMessage ResponseClass=\"Error\"><m:MessageText>{}</m:MessageText><m:ResponseCode>{code}</m:ResponseCode></m:UploadItemsResponseMessage>", escape(&msg)));
                }
            }
        }
        if uploaded > 0 {
            if let Err(e) = state.save(&self.dir) {
                return (500, fault("ErrorInternalServerError", &format!("saving the mailbox store: {e}"), None));
            }
        }
        let mut st = self.stats.lock().expect("stats");
        st.items_uploaded += uploaded;
        st.uploads_refused += refused;
        drop(st);
        (200, response("UploadItems", &msgs))
    }

    /// CreateFolder: one or more folders under one parent.
    fn create_folder(&self, state: &mut State, mbx: usize, el: &dom::Element) -> Reply {
        let parent = match el.child("ParentFolderId").and_then(|p| p.children.first()) {
            Some(f)
                if f.name == "DistinguishedFolderId"
                    && matches!(
                        f.attr("Id"),
                        Some(
                            "msgfolderroot"
                                | "publicfoldersroot"
                                | "archivemsgfolderroot"
                                | "recoverableitemsroot"
                                | "archiverecoverableitemsroot"
                        )
                    ) =>
            {
                String::new()
            }
            Some(f) if f.name == "FolderId" => f.attr("Id").unwrap_or("").to_string(),
            _ => {
                return (
                    200,
                    response("CreateFolder", "<m:CreateFolderResponseMessage ResponseClass=\"Error\"><m:MessageText>Only msgfolderroot, publicfoldersroot and folder ids are supported as parents.</m:MessageText><m:ResponseCode>ErrorInvalidRequest</m:ResponseCode></m:CreateFolderResponseMessage>"),
                )
            }
        };
        let mut msgs = String::new();
        let mut created = 0;
        for f in el.child("Folders").map(|f| f.children.iter().collect::<Vec<_>>()).unwrap_or_default() {
            let name = f.text_at(&["DisplayName"]).unwrap_or("");
            let class = f.text_at(&["FolderClass"]).unwrap_or("IPF.Note");
            match state.create_folder(mbx, &parent, name, class) {
                Ok(id) => {
                    created += 1;
                    msgs.push_str(&ok_message(
                        "CreateFolder",
                        &format!("<m:Folders><t:{n}><t:FolderId Id=\"{}\" ChangeKey=\"AQAAAA==\"/></t:{n}></m:Folders>", escape(&id), n = f.name),
                    ));
                }
                Err(r) => msgs.push_str(&format!("<m:CreateFolderResponseMessage ResponseClass=\"Error\"><m:MessageText>{}</m:MessageText><m:ResponseCode>{}</m:ResponseCode></m:CreateFolderResponseMessage>", escape(&r.message), r.code)),
            }
        }
        if created > 0 {
            if let Err(e) = state.save(&self.dir) {
                return (500, fault("ErrorInternalServerError", &format!("saving the mailbox store: {e}"), None));
            }
        }
        self.stats.lock().expect("stats").folders_created += created;
        (200, response("CreateFolder", &msgs))
    }

    fn item_xml(&self, state: &State, it: &Item) -> String {
        let key = (it.id.clone(), it.change_key.clone());
        let size = {
            let cached = self.sizes.lock().expect("sizes").get(&key).copied();
            match cached {
                Some(s) => s,
                None => {
                    let s = state.blob(&self.dir, it).map(|b| b.len() as u64).unwrap_or(0);
                    self.sizes.lock().expect("sizes").insert(key, s);
                    s
                }
            }
        };
        let el = match it.class.as_str() {
            "IPM.Appointment" => "CalendarItem",
            "IPM.Contact" => "Contact",
            "IPM.Task" => "Task",
            _ => "Message",
        };
        format!(
            "<t:{el}><t:ItemId Id=\"{}\" ChangeKey=\"{}\"/><t:Subject>{}</t:Subject><t:ItemClass>{}</t:ItemClass><t:Size>{size}</t:Size><t:DateTimeReceived>{}</t:DateTimeReceived><t:From><t:Mailbox><t:EmailAddress>{}</t:EmailAddress></t:Mailbox></t:From><t:IsAssociated>{}</t:IsAssociated></t:{el}>",
            escape(&it.id),
            escape(&it.change_key),
            escape(&it.subject),
            escape(&it.class),
            escape(&it.received),
            escape(&it.sender),
            it.associated
        )
    }

    /// Whether the simulator refuses to import this stream.
    pub(crate) fn refuses(&self, blob: &[u8]) -> bool {
        let h = blake3::hash(blob);
        (u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8")) as f64 / u64::MAX as f64) < self.refuse_rate
    }
}

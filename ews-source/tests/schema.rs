//! Every request the EWS client builds is valid against Microsoft's published schema
//! (`schema/messages.xsd`, `schema/types.xsd`), checked with the Python `xmlschema` package:
//! the body element of each operation, and each SOAP header element.

use exarch_ews_source::request::{parts, CreateAction, FolderRef, Operation, UploadItem};
use std::process::Command;

#[test]
fn every_request_validates_against_the_ews_schema() {
    let ids = ["AAMkADk0ZTRmYzE4LWE0YmMtNDc0Ni1hYzMwLWQ0ZjBkNTM3OWMzNwBGAAAAAA==", "AAMkAD2=", "id<&>\"3"];
    let uploads = [
        UploadItem {
            parent_folder_id: "AQMkAD",
            item_id: None,
            action: CreateAction::CreateNew,
            associated: false,
            data_base64: "AQIDBA==",
        },
        UploadItem {
            parent_folder_id: "AQMkAD",
            item_id: Some("AAMkAD2="),
            action: CreateAction::UpdateOrCreate,
            associated: true,
            data_base64: "AQIDBA==",
        },
        UploadItem {
            parent_folder_id: "AQMkAD",
            item_id: Some("AAMkAD2="),
            action: CreateAction::Update,
            associated: false,
            data_base64: "",
        },
    ];
    let ops = [
        Operation::ResolveNames { entry: "SMTP:" },
        Operation::SyncFolderHierarchy { root: FolderRef::Distinguished("msgfolderroot"), sync_state: None },
        Operation::SyncFolderHierarchy {
            root: FolderRef::Distinguished("publicfoldersroot"),
            sync_state: Some("H4sIAAAA"),
        },
        Operation::SyncFolderItems { folder: FolderRef::Id("AQMkAD"), sync_state: None, max_changes: 512 },
        Operation::SyncFolderItems {
            folder: FolderRef::Distinguished("calendar"),
            sync_state: Some("H4sI"),
            max_changes: 1,
        },
        Operation::ExportItems { item_ids: &ids },
        Operation::UploadItems { items: &uploads },
        Operation::CreateFolder {
            parent: FolderRef::Distinguished("msgfolderroot"),
            name: "Restored 2026-11-23 10:00",
            class: "IPF.Note",
        },
        Operation::CreateFolder { parent: FolderRef::Id("AQMkAD"), name: "Kalender <&>", class: "IPF.Appointment" },
        Operation::CreateFolder { parent: FolderRef::Id("AQMkAD"), name: "Contacts", class: "IPF.Contact" },
        Operation::CreateFolder { parent: FolderRef::Id("AQMkAD"), name: "Tasks", class: "IPF.Task" },
        Operation::CreateFolder { parent: FolderRef::Id("AQMkAD"), name: "No class", class: "" },
        Operation::FindFolder { parent: FolderRef::Distinguished("publicfoldersroot"), offset: 0 },
        Operation::FindFolder { parent: FolderRef::Id("AQMkAD"), offset: 1000 },
        Operation::FindItem { folder: FolderRef::Id("AQMkAD"), offset: 0, max: 1000 },
        Operation::GetFolder { folders: &[FolderRef::Distinguished("inbox"), FolderRef::Distinguished("calendar")] },
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let p = parts(op, Some("user1@example.com"));
        for (j, fragment) in p.header.iter().chain(std::iter::once(&p.body)).enumerate() {
            let f = dir.path().join(format!("{i}-{}-{j}.xml", op.name()));
            std::fs::write(&f, fragment).unwrap();
            files.push(f);
        }
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/validate.py");
    let out = Command::new("python3")
        .arg(script)
        .args(&files)
        .output()
        .expect("python3 is needed for the schema test (with `pip install xmlschema`; .ci/run installs it)");
    assert!(
        out.status.success(),
        "requests not valid against the EWS schema:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // the check can fail: a request with an element out of order is rejected
    let bad = dir.path().join("bad.xml");
    std::fs::write(&bad, parts(&ops[3], None).body.replace("<m:MaxChangesReturned>512</m:MaxChangesReturned>", ""))
        .unwrap();
    let out = Command::new("python3").arg(script).arg(&bad).output().unwrap();
    assert!(!out.status.success(), "a SyncFolderItems without MaxChangesReturned must be rejected");
}

//! Writing SOAP replies: envelopes, response messages, faults with back-off hints, folders, and
//! the paging of FindFolder/FindItem views.

use exarch_ews_source::dom;
use quick_xml::escape::escape;

pub(crate) fn fault(code: &str, message: &str, back_off_ms: Option<u64>) -> String {
    let hint = back_off_ms
        .map(|ms| format!("<t:MessageXml><t:Value Name=\"BackOffMilliseconds\">{ms}</t:Value></t:MessageXml>"))
        .unwrap_or_default();
    envelope(&format!(
        "<s:Fault><faultcode xmlns:a=\"{t}\">a:{code}</faultcode><faultstring xml:lang=\"en-US\">{msg}</faultstring><detail><e:ResponseCode xmlns:e=\"http://schemas.microsoft.com/exchange/services/2006/errors\">{code}</e:ResponseCode><e:Message xmlns:e=\"http://schemas.microsoft.com/exchange/services/2006/errors\">{msg}</e:Message>{hint}</detail></s:Fault>",
        t = exarch_ews_source::NS_TYPES,
        msg = escape(message)
    ))
}

pub(crate) fn envelope(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><s:Envelope xmlns:s=\"{}\" xmlns:m=\"{}\" xmlns:t=\"{}\"><s:Header><h:ServerVersionInfo xmlns:h=\"{}\" MajorVersion=\"15\" MinorVersion=\"2\" MajorBuildNumber=\"1544\" MinorBuildNumber=\"4\" Version=\"V2017_07_11\"/></s:Header><s:Body>{body}</s:Body></s:Envelope>",
        exarch_ews_source::NS_SOAP,
        exarch_ews_source::NS_MESSAGES,
        exarch_ews_source::NS_TYPES,
        exarch_ews_source::NS_TYPES
    )
}

pub(crate) fn ok_message(op: &str, inner: &str) -> String {
    format!("<m:{op}ResponseMessage ResponseClass=\"Success\"><m:ResponseCode>NoError</m:ResponseCode>{inner}</m:{op}ResponseMessage>")
}

pub(crate) fn response(op: &str, messages: &str) -> String {
    envelope(&format!("<m:{op}Response><m:ResponseMessages>{messages}</m:ResponseMessages></m:{op}Response>"))
}

/// A folder element with the properties clients ask for (sync, FindFolder and GetFolder alike).
pub(crate) fn folder_xml(f: &crate::model::Folder) -> String {
    // (the top of a store has no parent to name)
    let parent = if f.parent_id.is_empty() {
        String::new()
    } else {
        format!("<t:ParentFolderId Id=\"{}\"/>", escape(&f.parent_id))
    };
    format!(
        "<t:Folder><t:FolderId Id=\"{}\" ChangeKey=\"AQAAAA==\"/>{parent}<t:FolderClass>{}</t:FolderClass><t:DisplayName>{}</t:DisplayName></t:Folder>",
        escape(&f.id),
        escape(&f.class),
        escape(&f.name)
    )
}

/// The slice `[from, to)` of `total` entries an indexed page view asks for, and whether it is the last.
pub(crate) fn page_bounds(el: &dom::Element, view: &str, total: usize) -> (usize, usize, bool) {
    let v = el.find(view);
    let num = |name: &str, default: usize| v.and_then(|v| v.attr(name)).and_then(|x| x.parse().ok()).unwrap_or(default);
    let from = num("Offset", 0).min(total);
    let to = (from + num("MaxEntriesReturned", 1000).clamp(1, 1000)).min(total);
    (from, to, to == total)
}

//! EWS responses and NTLM messages come from the network: any bytes must give a value or an error,
//! never a panic, and never unbounded memory.
#![no_main]

use exarch_ews_source::export_stream::{stream_export_items, Limits};
use exarch_ews_source::response;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = exarch_ews_source::dom::parse(data);
    let _ = response::parse_export_items(data);
    let _ = response::parse_sync_folder_items(data);
    let _ = response::parse_sync_folder_hierarchy(data);
    let _ = response::parse_resolve_names(data);
    let _ = response::parse_upload_items(data);
    let _ = response::parse_create_folder(data);
    let _ = response::parse_find_folder(data);
    let _ = response::parse_find_item(data);
    let _ = response::parse_get_folder(data);
    // The streaming export parser, with small limits so the spool and the size cap are reached.
    let limits = Limits { max_item_bytes: 4096, in_memory: 64, spill_dir: std::env::temp_dir() };
    let _ = stream_export_items(std::io::BufReader::with_capacity(13, data), &limits, &mut |e| {
        if let response::Exported::Ok { data, .. } = e {
            let _ = data.into_vec();
        }
        Ok(())
    });
    if exarch_ews_source::ntlm::parse_challenge(data).is_ok() {
        let neg = exarch_ews_source::ntlm::negotiate();
        let b = exarch_ews_source::ntlm::Binding { target_name: "HTTP/h".into(), channel_bindings: Some([1; 16]) };
        let _ = exarch_ews_source::ntlm::authenticate("D\\u", "p", &neg, data, &b, [0; 8], 0);
    }
    // A hostile AUTHENTICATE against a fixed handshake, under the strictest checks.
    let neg = exarch_ews_source::ntlm::negotiate();
    let ch = exarch_ews_source::ntlm::challenge([0; 8], "S", 0);
    let strict = exarch_ews_source::ntlm::Expected {
        protection: exarch_ews_source::ntlm::Protection::Require,
        channel_bindings: Some([1; 16]),
        services: vec!["HTTP/h".into()],
    };
    let _ = exarch_ews_source::ntlm::verify(data, &neg, &ch, "p", &strict);
    let _ = exarch_ews_source::channel_binding::for_certificate(data);
});

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
    if let Ok(c) = exarch_ews_source::ntlm::parse_challenge(data) {
        let _ = exarch_ews_source::ntlm::authenticate("D\\u", "p", &c, [0; 8], 0);
    }
    let _ = exarch_ews_source::ntlm::verify(data, [0; 8], "p");
});

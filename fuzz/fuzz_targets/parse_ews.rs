//! EWS responses come from the network: any bytes must give a value or an error, never a panic.
#![no_main]

use exarch_ews_source::response;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = exarch_ews_source::dom::parse(data);
    let _ = response::parse_export_items(data);
    let _ = response::parse_sync_folder_items(data);
    let _ = response::parse_sync_folder_hierarchy(data);
    let _ = response::parse_resolve_names(data);
});

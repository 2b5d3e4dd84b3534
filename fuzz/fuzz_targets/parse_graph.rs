//! Bytes a Graph service or a token holder controls: exportItems replies (streamed, with items
//! spilled to temporary files beyond a tiny limit) and client assertions. Any input must give an
//! error or a result, never a panic, and never unbounded memory.
#![no_main]

use exarch_graph_source::export_json::read_export;
use exarch_graph_source::Limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_item_bytes: 4096, in_memory: 64, spill_dir: std::env::temp_dir() };
    let mut n = 0usize;
    let _ = read_export(std::io::BufReader::with_capacity(13, data), &limits, &mut |_| {
        n += 1;
        Ok(())
    });
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = exarch_graph_source::assertion::verify(s, &[data.to_vec()], 0);
    }
});

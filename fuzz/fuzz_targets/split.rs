//! The stream splitter covers its input exactly, with correct line numbers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secretstore::render::stream;

fuzz_target!(|data: &[u8]| {
    let docs = stream::split(data);
    assert_eq!(docs.first().map(|d| d.start), Some(0));
    assert_eq!(docs.last().map(|d| d.end), Some(data.len()));
    for pair in docs.windows(2) {
        assert_eq!(pair[0].end, pair[1].start);
    }
    for doc in &docs {
        let newlines = data[..doc.start].iter().filter(|b| **b == b'\n').count();
        assert_eq!(doc.first_line, newlines + 1);
    }
});

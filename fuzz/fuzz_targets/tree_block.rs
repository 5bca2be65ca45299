//! The fast line reader answers only where the event parser reads the document the same:
//! the same nodes, values, styles and positions, and never for a document the event
//! parser rejects.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secretstore::render::tree::Tree;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(fast) = Tree::parse_block(text) {
        match Tree::parse_events(text) {
            Ok(full) => assert!(fast == full, "the readers differ"),
            Err(e) => panic!("the fast reader accepted what the event parser rejects: {e:?}"),
        }
    }
});

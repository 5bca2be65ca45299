//! Render never panics; a success keeps the document count, leaves untouched documents
//! byte for byte and is a fixed point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secretstore::config::Settings;
use secretstore::render::{render, Input, Options};
use secretstore::render::stream;

fn render_bytes(bytes: &[u8]) -> Option<Vec<u8>> {
    let inputs = [Input {
        name: "fuzz.yaml".into(),
        bytes: bytes.to_vec(),
    }];
    let options = Options { allow_empty: true };
    render(&inputs, &Settings::default(), &options)
        .ok()
        .map(|rendered| rendered.to_bytes())
}

fn pieces(bytes: &[u8]) -> Vec<&[u8]> {
    let body = &bytes[stream::bom_len(bytes)..];
    stream::split(body)
        .iter()
        .map(|d| &body[d.start..d.end])
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some(out) = render_bytes(data) else {
        return;
    };
    let (before, after) = (pieces(data), pieces(&out));
    assert_eq!(before.len(), after.len(), "the document count changed");
    for (b, a) in before.iter().zip(&after) {
        if b != a {
            assert!(
                b.windows(11).any(|w| w == b"secretstore"),
                "a document without the marker changed"
            );
        }
    }
    assert_eq!(
        render_bytes(&out).as_deref(),
        Some(&out[..]),
        "not a fixed point"
    );
});

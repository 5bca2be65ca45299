//! The template front-end (what render and lint run on a manifest's templates) never
//! panics on hostile text; a template that parses renders or fails cleanly, and its
//! errors point inside the text. The injector-template translator is held to the same,
//! and what it writes parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secretstore::convert::go_template;
use secretstore::template::{self, Sources};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match template::parse(text, &["db", "secret"]) {
        Ok(parsed) => {
            let _ = parsed.referenced_keys();
            let mut sources = Sources::new();
            for alias in ["db", "secret"] {
                let data = serde_json::json!({"password": "p@ss", "list": ["a", "b"], "n": 1});
                if let serde_json::Value::Object(map) = data {
                    sources.insert(alias.into(), map);
                }
            }
            let _ = template::render(&parsed, &sources);
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in errors {
                assert!(e.offset <= text.len() && e.line >= 1 && e.column >= 1);
            }
        }
    }
    if let Ok(translation) = go_template::translate(text) {
        let aliases: Vec<&str> = translation.sources.iter().map(|s| s.alias.as_str()).collect();
        if let Err(e) = template::parse(&translation.template, &aliases) {
            panic!("a translation does not parse: {e:?}");
        }
    }
});

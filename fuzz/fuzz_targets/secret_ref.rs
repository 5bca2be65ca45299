//! The reference parser never panics, and what it accepts prints back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secretstore::render::dialect::SecretRef;

fuzz_target!(|text: &str| {
    if let Ok(parsed) = SecretRef::parse(text) {
        let mut again = parsed.path.clone();
        if let Some(key) = &parsed.key {
            again.push('#');
            again.push_str(key);
            if let Some(version) = parsed.version {
                again.push_str(&format!("#{version}"));
            }
        }
        assert_eq!(SecretRef::parse(&again).ok(), Some(parsed));
    }
});

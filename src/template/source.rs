//! One source's data as the template sees it: a map whose lookups of a missing key are
//! remembered, so that a failed render names the alias and key (minijinja's strict
//! undefined error says only that a value was undefined).

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use serde_json::Map;
use std::sync::{Arc, Mutex};
use zeroize::Zeroize;

/// The (alias, key) of the last lookup of a key a source does not have.
pub type MissingSlot = Arc<Mutex<Option<(String, String)>>>;

#[derive(Debug)]
pub struct SourceData {
    pub alias: String,
    pub data: Map<String, serde_json::Value>,
    pub missing: MissingSlot,
}

impl Object for SourceData {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        match self.data.get(name) {
            Some(value) => Some(Value::from(minijinja::value::Serde(value))),
            None => {
                if let Ok(mut slot) = self.missing.lock() {
                    *slot = Some((self.alias.clone(), name.to_string()));
                }
                None
            }
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        // Go's range and printing of a map go by key; so do templates.
        let mut keys: Vec<&String> = self.data.keys().collect();
        keys.sort();
        Enumerator::Values(keys.into_iter().map(|k| Value::from(k.as_str())).collect())
    }
}

impl Drop for SourceData {
    fn drop(&mut self) {
        for value in self.data.values_mut() {
            zeroize_json(value);
        }
    }
}

/// Overwrites the strings of a JSON value (the values of a secret) before they are freed.
pub fn zeroize_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => s.zeroize(),
        serde_json::Value::Array(items) => items.iter_mut().for_each(zeroize_json),
        serde_json::Value::Object(map) => map.values_mut().for_each(zeroize_json),
        _ => {}
    }
}

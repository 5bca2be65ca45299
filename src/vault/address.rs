//! Checks of the values secretstore sends to Vault in a URL or a header, shared by the
//! configuration (render refuses what the agent could not send), the dialect, the agent
//! and the HTTP layer. No I/O: the playground's WebAssembly build has them too.

use url::Url;

/// Whether `value` can be sent as an HTTP header value as it is (visible ASCII and
/// spaces, no line breaks or other control characters).
pub fn is_header_safe(value: &str) -> bool {
    value.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
}

/// Whether a `/`-separated path has a `.` or `..` segment, which a URL would resolve and
/// so reach another path than the one written.
pub fn has_dot_segment(path: &str) -> bool {
    path.split('/')
        .any(|segment| segment == "." || segment == "..")
}

/// The address without a user name or password, for messages.
pub fn redacted_address(address: &str) -> String {
    match Url::parse(address) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.as_str().trim_end_matches('/').to_owned()
        }
        Ok(_) => address.to_owned(),
        Err(_) => "<an address that is not a URL>".to_owned(),
    }
}

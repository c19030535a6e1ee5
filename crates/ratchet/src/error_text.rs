//! Error text that says what actually went wrong: reqwest's and the
//! PostgreSQL driver's own messages stop at "error sending request" or
//! "error performing TLS handshake" and hide whether it was DNS, TLS, a
//! refusal or a timeout.

use std::error::Error;

/// An error and its sources, `a: b: c`, leaving out a cause whose text its
/// parent already holds.
pub(crate) fn with_causes(e: &(dyn Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// An HTTP request that got no status: what kind of failure, then why.
pub(crate) fn http_failure(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    format!("{kind}: {}", with_causes(e))
}

//! The one redaction layer: every text that leaves ratchet passes through
//! [`redact`] before it is cut, stored, journaled, logged or replied.
//!
//! Two nets, applied in this order:
//! 1. **By value.** Every configured secret is registered here when it is
//!    read: the model API key when a client is built, the database password
//!    when a store connects, and, through [`register_from_env`], the values
//!    of environment variables whose names say they hold a secret. Each
//!    occurrence (raw, percent-encoded or JSON-escaped) becomes
//!    `[redacted]`.
//! 2. **By shape.** Secrets nobody registered are masked where their shape
//!    gives them away: the password of a URL's userinfo
//!    (`scheme://user:PW@host`), the value of a password-like key in a
//!    query string or a `key=value` list (`password=PW`, `api_key=PW`,
//!    `sslpassword=PW`, ...), and a bearer token (`Bearer PW`).
//!
//! The registry is process-wide, since a secret read by one component can
//! surface in another's error (a provider echoing its key, a driver error
//! quoting a connection string).

mod serialize;

use serde_json::Value;
pub use serialize::Redacted;
use std::borrow::Cow;
use std::sync::RwLock;

/// What a secret is replaced by.
pub const MASK: &str = "[redacted]";

/// Secrets shorter than this are not replaced by value, since replacing
/// a short string everywhere would mangle ordinary text; they are still
/// masked by shape. [`register`] reports them.
pub const MIN_SECRET_LEN: usize = 6;

static REGISTRY: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Why a secret could not be registered for scrubbing by value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "a secret from {source_name} is shorter than {MIN_SECRET_LEN} characters, so it is scrubbed only where its shape shows it"
)]
pub struct TooShort {
    /// Where the secret came from (a variable name, "the database URL").
    pub source_name: String,
}

/// Registers `secret`, read from `source_name`, for scrubbing by value.
/// Empty values are ignored; short ones are refused with [`TooShort`]
/// (and logged), never stored.
pub fn register(source_name: &str, secret: &str) -> Result<(), TooShort> {
    let secret = secret.trim();
    if secret.is_empty() {
        return Ok(());
    }
    if secret.chars().count() < MIN_SECRET_LEN {
        let e = TooShort {
            source_name: source_name.to_string(),
        };
        tracing::warn!("{e}");
        return Err(e);
    }
    let mut forms = vec![secret.to_string(), percent_encode(secret)];
    if let Ok(json) = serde_json::to_string(secret) {
        forms.push(json[1..json.len() - 1].to_string());
    }
    let mut registry = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
    for form in forms {
        if !registry.contains(&form) {
            registry.push(form);
        }
    }
    // Longest first, so a secret containing another is replaced whole.
    registry.sort_by_key(|s| std::cmp::Reverse(s.len()));
    Ok(())
}

/// Whether an environment variable's name says it holds a secret: one of
/// its `_`-separated words is `PASSWORD`, `PASSWD`, `SECRET`, `TOKEN` or
/// `APIKEY`, its last word is `KEY`, or it is `PGPASSWORD`, a
/// `…DATABASE_URL` or `RATCHET_STORE`. Whole words only, so `MAX_TOKENS`
/// or `KEYBOARD` are not taken for secrets.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    const WORDS: [&str; 5] = ["PASSWORD", "PASSWD", "SECRET", "TOKEN", "APIKEY"];
    let words: Vec<&str> = upper.split('_').collect();
    words.iter().any(|w| WORDS.contains(w))
        || words.last() == Some(&"KEY")
        || upper == "PGPASSWORD"
        || upper.ends_with("DATABASE_URL")
        || upper == "RATCHET_STORE"
}

/// Registers the secrets the environment holds: every variable whose name
/// [`is_secret_name`], and the password inside any connection string among
/// them. Returns how many values were registered.
pub fn register_from_env() -> usize {
    let mut n = 0;
    for (name, value) in std::env::vars_os() {
        let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
            continue;
        };
        if !is_secret_name(name) {
            continue;
        }
        let embedded = embedded_passwords(value);
        if embedded.is_empty() && value.contains("://") {
            // A URL without a password is not itself a secret.
            continue;
        }
        if embedded.is_empty() {
            n += usize::from(register(name, value).is_ok());
        }
        for pw in embedded {
            n += usize::from(register(name, &pw).is_ok());
        }
    }
    n
}

/// The passwords written inside a connection string, in any of its forms:
/// URL userinfo, a `password=` query parameter, or a `password=` pair of
/// a `key=value` string.
pub fn embedded_passwords(conn: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Some((_, rest)) = conn.split_once("://") {
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && let Some((_, pw)) = userinfo.split_once(':')
        {
            found.push(percent_decode(pw));
        }
    }
    for (start, end) in keyed_values(conn) {
        found.push(percent_decode(&conn[start..end]));
    }
    found.retain(|p| !p.is_empty());
    found
}

/// `text` with every registered secret and every secret-shaped value
/// masked. Borrowed when nothing needed masking.
pub fn redact(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    {
        let registry = REGISTRY.read().unwrap_or_else(|p| p.into_inner());
        for secret in registry.iter() {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), MASK));
            }
        }
    }
    match mask_shapes(&out) {
        Some(masked) => Cow::Owned(masked),
        None => out,
    }
}

/// [`redact`] into an owned string.
pub fn redact_string(text: String) -> String {
    match redact(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(masked) => masked,
    }
}

/// Redacts every string inside a JSON value, in place.
pub fn redact_value(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let Cow::Owned(masked) = redact(s) {
                *s = masked;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        Value::Object(map) => map.values_mut().for_each(redact_value),
        _ => {}
    }
}

/// Keys whose value is a secret in a query string or `key=value` list.
const SECRET_KEYS: [&str; 9] = [
    "password",
    "passwd",
    "pwd",
    "sslpassword",
    "api_key",
    "apikey",
    "access_token",
    "token",
    "secret",
];

/// Byte ranges of the values of secret keys in `text` (`key=value`, the
/// value running to `&`, `;`, `,`, whitespace or a closing quote).
fn keyed_values(text: &str) -> Vec<(usize, usize)> {
    let lower = text.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut ranges = Vec::new();
    for key in SECRET_KEYS {
        let mut from = 0;
        while let Some(at) = lower[from..].find(key) {
            let start = from + at;
            from = start + key.len();
            let boundary = start == 0 || !is_key_char(bytes[start - 1]);
            let mut i = start + key.len();
            // `"key": "value"` in JSON as well as `key=value`.
            let json_key = i < bytes.len() && bytes[i] == b'"';
            if json_key {
                i += 1;
            }
            while i < bytes.len() && bytes[i] == b' ' {
                i += 1;
            }
            let assigns = i < bytes.len() && (bytes[i] == b'=' || (json_key && bytes[i] == b':'));
            if !boundary || !assigns {
                continue;
            }
            i += 1;
            while i < bytes.len() && bytes[i] == b' ' {
                i += 1;
            }
            let (value_start, end) = if i < bytes.len() && (bytes[i] == b'\'' || bytes[i] == b'"') {
                let quote = bytes[i] as char;
                let close = lower[i + 1..]
                    .find(quote)
                    .map_or(bytes.len(), |c| i + 1 + c);
                (i + 1, close)
            } else {
                let end = lower[i..]
                    .find(|c: char| c.is_whitespace() || "&;,\"')>}".contains(c))
                    .map_or(bytes.len(), |c| i + c);
                (i, end)
            };
            if end > value_start {
                ranges.push((value_start, end));
            }
        }
    }
    ranges
}

fn is_key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Masks secret-shaped values; `None` when there were none.
fn mask_shapes(text: &str) -> Option<String> {
    let mut ranges = keyed_values(text);
    ranges.extend(userinfo_passwords(text));
    ranges.extend(bearer_tokens(text));
    ranges.retain(|&(s, e)| text[s..e] != *MASK && !text[s..e].starts_with(MASK));
    if ranges.is_empty() {
        return None;
    }
    ranges.sort();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in ranges {
        if start < at {
            at = at.max(end);
            continue;
        }
        out.push_str(&text[at..start]);
        out.push_str(MASK);
        at = end;
    }
    out.push_str(&text[at..]);
    Some(out)
}

/// Byte ranges of the passwords in `scheme://user:PW@host` forms.
fn userinfo_passwords(text: &str) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("://") {
        let start = from + at + 3;
        from = start;
        let authority_end = text[start..]
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"')
            .map_or(text.len(), |e| start + e);
        let authority = &text[start..authority_end];
        if let Some(atsign) = authority.rfind('@')
            && let Some(colon) = authority[..atsign].find(':')
            && colon + 1 < atsign
        {
            ranges.push((start + colon + 1, start + atsign));
        }
    }
    ranges
}

/// Byte ranges of the tokens after `Bearer `.
fn bearer_tokens(text: &str) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut from = 0;
    let lower = text.to_ascii_lowercase();
    while let Some(at) = lower[from..].find("bearer ") {
        let start = from + at + "bearer ".len();
        from = start;
        let end = text[start..]
            .find(|c: char| c.is_whitespace() || "\"',;".contains(c))
            .map_or(text.len(), |e| start + e);
        if end > start {
            ranges.push((start, end));
        }
    }
    ranges
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let hex = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hex(bytes[i + 1]) << 4 | hex(bytes[i + 2]));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A writer that buffers what it is given and writes it to `inner`,
/// redacted, when flushed or dropped: one per log record. With
/// `tracing_subscriber`, `.with_writer(|| RedactingLine::new(std::io::stderr()))`
/// sends every log line through this layer.
pub struct RedactingLine<T: std::io::Write> {
    inner: T,
    buf: Vec<u8>,
}

impl<T: std::io::Write> RedactingLine<T> {
    /// A line writer in front of `inner`.
    pub fn new(inner: T) -> Self {
        RedactingLine {
            inner,
            buf: Vec::new(),
        }
    }

    fn emit(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.buf);
        let clean = redact(&text).into_owned();
        self.buf.clear();
        self.inner.write_all(clean.as_bytes())?;
        self.inner.flush()
    }
}

impl<T: std::io::Write> std::io::Write for RedactingLine<T> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.emit()
    }
}

impl<T: std::io::Write> Drop for RedactingLine<T> {
    fn drop(&mut self) {
        let _ = self.emit();
    }
}

#[cfg(test)]
mod tests;

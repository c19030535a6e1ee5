//! Content hashes of serializable values: step inputs and commits.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// A value that cannot be hashed because it does not serialize.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot hash a value that does not serialize: {0}")]
pub struct HashError(pub String);

/// The SHA-256 of a value's JSON form, hex encoded (first 32 hex digits).
/// A value that does not serialize is an error, never a hash: two such
/// values must not look equal, or a changed step input could replay.
///
/// serde_json writes struct fields in declaration order and maps in key
/// order, so equal values hash equally across runs and builds.
pub fn digest<T: Serialize + ?Sized>(value: &T) -> Result<String, HashError> {
    // The JSON goes straight into the hasher: the same bytes as
    // `serde_json::to_vec`, without building them (a model call's input is
    // the whole turn so far).
    let mut hasher = HashWriter(Sha256::new());
    serde_json::to_writer(&mut hasher, value).map_err(|e| HashError(e.to_string()))?;
    Ok(hex::encode(&hasher.0.finalize()[..16]))
}

/// The same hash as [`digest_bytes`] of the chunks joined, without joining
/// them.
pub fn digest_chunks(chunks: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for c in chunks {
        hasher.update(c);
    }
    hex::encode(&hasher.finalize()[..16])
}

/// Feeds written bytes to a SHA-256.
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The SHA-256 of raw bytes, hex encoded (first 32 hex digits).
pub fn digest_bytes(bytes: &[u8]) -> String {
    let full = Sha256::digest(bytes);
    hex::encode(&full[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_hash_equally_and_different_ones_do_not() {
        let a = serde_json::json!({"b": 1, "a": [1, 2]});
        let b = serde_json::json!({"a": [1, 2], "b": 1});
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(
            digest(&a),
            digest(&serde_json::json!({"a": [2, 1], "b": 1}))
        );
        assert_eq!(digest(&a).unwrap().len(), 32);
        let bytes = serde_json::to_vec(&a).unwrap();
        assert_eq!(digest(&a).unwrap(), digest_bytes(&bytes));
    }

    #[test]
    fn a_value_that_does_not_serialize_has_no_hash() {
        let mut map = std::collections::HashMap::new();
        map.insert(vec![1u8], 1);
        assert!(
            digest(&map).is_err(),
            "non-string map keys do not serialize"
        );
    }
}

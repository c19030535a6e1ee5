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
    let bytes = serde_json::to_vec(value).map_err(|e| HashError(e.to_string()))?;
    Ok(digest_bytes(&bytes))
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

//! Content hashes of serializable values: step inputs and commits.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The SHA-256 of a value's JSON form, hex encoded (first 32 hex digits).
///
/// serde_json writes struct fields in declaration order and maps in key
/// order, so equal values hash equally across runs and builds.
pub fn digest<T: Serialize + ?Sized>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    digest_bytes(&bytes)
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
        assert_eq!(digest(&a).len(), 32);
    }
}

//! Session and turn identifiers. Both are opaque strings, validated once at
//! the edge so that everything inside can trust them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest id accepted: keeps keys, file names and log lines bounded.
const MAX_ID_LEN: usize = 256;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is empty or only whitespace.
    #[error("{kind} id must not be empty")]
    Empty {
        /// Which kind of id.
        kind: &'static str,
    },
    /// The id is longer than the limit.
    #[error("{kind} id is {len} bytes, over the limit of {MAX_ID_LEN}")]
    TooLong {
        /// Which kind of id.
        kind: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The id holds a control character or a bidirectional override
    /// (which makes an id print as another one).
    #[error("{kind} id must not contain control characters or bidirectional overrides")]
    ControlChar {
        /// Which kind of id.
        kind: &'static str,
    },
}

/// Unicode's bidirectional embedding, override and isolate controls.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn validate(kind: &'static str, s: &str) -> Result<(), IdError> {
    if s.trim().is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { kind, len: s.len() });
    }
    if s.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Err(IdError::ControlChar { kind });
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps an id.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                validate($kind, &s)?;
                Ok(Self(s))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
    };
}

string_id!(
    /// Identifies a session: one conversation with its history and inbox.
    SessionId,
    "session"
);
string_id!(
    /// Identifies one turn. Every id made inside a turn derives from it.
    TurnId,
    "turn"
);

impl TurnId {
    /// The id of the `n`th agent frame followed from this (root) turn.
    pub fn agent_frame(&self, n: u32) -> TurnId {
        TurnId(format!("{}:agent-frame:{n}", self.root()))
    }

    /// The root turn of an agent-frame chain (the id itself for a root turn).
    pub fn root(&self) -> &str {
        match self.0.find(":agent-frame:") {
            Some(i) => &self.0[..i],
            None => &self.0,
        }
    }

    /// Which agent frame of its chain this turn is (0 for the root turn).
    pub fn frame_index(&self) -> u32 {
        self.0
            .rsplit_once(":agent-frame:")
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(0)
    }

    /// A deterministic id for the `ordinal`th thing of `kind` in this turn.
    pub fn derive(&self, kind: &str, ordinal: usize) -> String {
        format!("{}:{kind}:{ordinal}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_empty_long_and_control_strings() {
        assert!(matches!(SessionId::new(""), Err(IdError::Empty { .. })));
        assert!(matches!(SessionId::new("  "), Err(IdError::Empty { .. })));
        assert!(matches!(
            TurnId::new("x".repeat(300)),
            Err(IdError::TooLong { len: 300, .. })
        ));
        assert!(matches!(
            SessionId::new("a\nb"),
            Err(IdError::ControlChar { .. })
        ));
        assert_eq!(SessionId::new("s-1").unwrap().as_str(), "s-1");
    }

    #[test]
    fn deserializing_an_invalid_id_fails() {
        let err = serde_json::from_str::<SessionId>("\"\"").unwrap_err();
        assert!(err.to_string().contains("must not be empty"));
    }

    #[test]
    fn agent_frame_ids_derive_from_the_root() {
        let t = TurnId::new("t1").unwrap();
        let f1 = t.agent_frame(1);
        assert_eq!(f1.as_str(), "t1:agent-frame:1");
        assert_eq!(f1.agent_frame(2).as_str(), "t1:agent-frame:2");
        assert_eq!(f1.root(), "t1");
        assert_eq!(t.derive("msg", 3), "t1:msg:3");
    }
}

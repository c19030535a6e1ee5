//! Token usage, summed per turn and per session.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Tokens a model call (or a whole turn) consumed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Model calls made.
    #[serde(default)]
    pub model_calls: u64,
}

impl Usage {
    /// Adds another usage to this one.
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.model_calls += other.model_calls;
    }

    /// Total tokens.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_adds_and_round_trips() {
        let mut u = Usage {
            input_tokens: 3,
            output_tokens: 4,
            model_calls: 1,
        };
        u.add(&u.clone());
        assert_eq!(u.total_tokens(), 14);
        let s = serde_json::to_string(&u).unwrap();
        assert_eq!(s, r#"{"input_tokens":6,"output_tokens":8,"model_calls":2}"#);
        assert_eq!(serde_json::from_str::<Usage>(&s).unwrap(), u);
    }
}

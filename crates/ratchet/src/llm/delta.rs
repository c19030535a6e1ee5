//! Live output of a streaming model call: what a provider hands to an
//! optional [`DeltaSink`] as tokens arrive. Deltas never enter the journal
//! (the step records the assembled answer); they are for whoever watches.

use std::sync::Arc;

/// A piece of a streaming answer.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelDelta {
    /// More answer text.
    Text(String),
    /// More reasoning text.
    Reasoning(String),
    /// A piece of tool call `index` (its id and name arrive first, the
    /// arguments in fragments of JSON text).
    ToolCall {
        /// The call's position in the answer.
        index: u32,
        /// Its id, when this piece carries it.
        id: Option<String>,
        /// Its tool name, when this piece carries it.
        name: Option<String>,
        /// A fragment of its arguments.
        arguments: String,
    },
}

/// Receives the deltas of streaming model calls, tagged with the call's
/// iteration (the model step). Called on the request's task: keep it quick.
pub trait DeltaSink: Send + Sync {
    /// One piece of model call `iteration`'s answer.
    fn delta(&self, iteration: u32, delta: &ModelDelta);
}

/// A shared sink.
pub type SharedDeltaSink = Arc<dyn DeltaSink>;

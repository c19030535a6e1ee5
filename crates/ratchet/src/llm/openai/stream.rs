//! Streaming Chat Completions (`"stream": true`): server-sent events, each
//! `data: {chunk}` until `data: [DONE]`, assembled into the same
//! [`ModelResponse`] a plain call parses, each delta handed to the sink.
//!
//! [`SseLines`] cuts a byte stream into event data at any chunk boundary;
//! [`Assembler`] folds chunks: text and reasoning appended, tool calls
//! grown by index (id and name first, arguments in fragments), the finish
//! reason and usage (`stream_options.include_usage`) from the last chunks.

use super::wire::{finish_reason, parse_arguments};
use crate::llm::delta::ModelDelta;
use crate::llm::{ModelResponse, SharedDeltaSink};
use crate::model::{Part, Usage};
use serde_json::Value;

/// Cuts a stream of bytes into the `data:` payloads of its events.
#[derive(Default)]
pub(super) struct SseLines {
    pending: Vec<u8>,
}

impl SseLines {
    /// Feeds bytes; returns the data of every event line completed.
    pub(super) fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(at) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=at).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\r', '\n']);
            if let Some(data) = line.strip_prefix("data:") {
                out.push(data.trim_start().to_string());
            }
        }
        out
    }
}

#[derive(Default)]
struct CallDraft {
    id: String,
    name: String,
    arguments: String,
}

/// Folds stream chunks into one response.
pub(super) struct Assembler {
    iteration: u32,
    sink: Option<SharedDeltaSink>,
    text: String,
    reasoning: String,
    calls: Vec<CallDraft>,
    finish: Option<String>,
    usage: Option<Usage>,
    done: bool,
}

impl Assembler {
    pub(super) fn new(iteration: u32, sink: Option<SharedDeltaSink>) -> Self {
        Assembler {
            iteration,
            sink,
            text: String::new(),
            reasoning: String::new(),
            calls: Vec::new(),
            finish: None,
            usage: None,
            done: false,
        }
    }

    fn emit(&self, delta: ModelDelta) {
        if let Some(sink) = &self.sink {
            sink.delta(self.iteration, &delta);
        }
    }

    /// Takes one event's data (already scrubbed of secrets).
    pub(super) fn push(&mut self, data: &str) -> Result<(), String> {
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let chunk: Value =
            serde_json::from_str(data).map_err(|e| format!("unexpected stream chunk: {e}"))?;
        if let Some(e) = chunk.get("error") {
            let message = e["message"].as_str().unwrap_or("error in stream");
            return Err(format!("the stream ended with an error: {message}"));
        }
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(Usage {
                input_tokens: u["prompt_tokens"].as_u64().unwrap_or(0),
                output_tokens: u["completion_tokens"].as_u64().unwrap_or(0),
                model_calls: 1,
            });
        }
        let Some(choice) = chunk["choices"].get(0) else {
            return Ok(());
        };
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish = Some(reason.to_string());
        }
        let delta = &choice["delta"];
        if let Some(t) = delta["reasoning_content"]
            .as_str()
            .filter(|t| !t.is_empty())
        {
            self.reasoning.push_str(t);
            self.emit(ModelDelta::Reasoning(t.to_string()));
        }
        if let Some(t) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            self.text.push_str(t);
            self.emit(ModelDelta::Text(t.to_string()));
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"].as_u64().unwrap_or(self.calls.len() as u64) as usize;
            if index > 1024 {
                return Err(format!("stream chunk names tool call #{index}"));
            }
            while self.calls.len() <= index {
                self.calls.push(CallDraft::default());
            }
            let draft = &mut self.calls[index];
            let id = call["id"].as_str().map(str::to_string);
            let name = call["function"]["name"].as_str().map(str::to_string);
            let arguments = call["function"]["arguments"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if let Some(id) = &id {
                draft.id = id.clone();
            }
            if let Some(name) = &name {
                draft.name.push_str(name);
            }
            draft.arguments.push_str(&arguments);
            self.emit(ModelDelta::ToolCall {
                index: index as u32,
                id,
                name,
                arguments,
            });
        }
        Ok(())
    }

    /// The assembled response; a stream cut before its end is an error.
    pub(super) fn finish(self) -> Result<ModelResponse, String> {
        if !self.done && self.finish.is_none() {
            return Err("the stream ended before the answer was complete".into());
        }
        let mut parts = Vec::new();
        if !self.reasoning.is_empty() {
            parts.push(Part::Reasoning {
                text: self.reasoning,
            });
        }
        if !self.text.is_empty() {
            parts.push(Part::Text { text: self.text });
        }
        let has_calls = !self.calls.is_empty();
        for c in self.calls {
            parts.push(Part::ToolCall {
                id: c.id,
                name: c.name,
                arguments: parse_arguments(Value::String(c.arguments)),
            });
        }
        Ok(ModelResponse {
            parts,
            usage: self.usage.unwrap_or(Usage {
                model_calls: 1,
                ..Usage::default()
            }),
            finish_reason: finish_reason(self.finish.as_deref(), has_calls),
            directive: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::FinishReason;
    use crate::llm::delta::DeltaSink;
    use serde_json::json;
    use std::sync::{Arc, Mutex};

    struct Collect(Mutex<Vec<(u32, ModelDelta)>>);
    impl DeltaSink for Collect {
        fn delta(&self, iteration: u32, delta: &ModelDelta) {
            self.0.lock().unwrap().push((iteration, delta.clone()));
        }
    }

    pub(crate) fn sse(chunks: &[Value]) -> String {
        let mut s: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
        s.push_str("data: [DONE]\n\n");
        s
    }

    fn tool_stream() -> String {
        sse(&[
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Let me "}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "check."}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "id": "call_1", "type": "function", "function": {"name": "calculator", "arguments": ""}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "function": {"arguments": "{\"expression\":"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "function": {"arguments": "\"6*7\"}"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 8}}),
        ])
    }

    #[test]
    fn a_stream_cut_anywhere_assembles_the_same_answer_and_hands_out_deltas() {
        let body = tool_stream();
        let bytes = body.as_bytes();
        let mut first = None;
        for step in [1, 3, 7, 64, bytes.len()] {
            let sink = Arc::new(Collect(Mutex::new(Vec::new())));
            let mut lines = SseLines::default();
            let mut asm = Assembler::new(2, Some(sink.clone()));
            for piece in bytes.chunks(step) {
                for data in lines.feed(piece) {
                    asm.push(&data).unwrap();
                }
            }
            let r = asm.finish().unwrap();
            assert_eq!(
                r.parts,
                vec![
                    Part::Text {
                        text: "Let me check.".into()
                    },
                    Part::ToolCall {
                        id: "call_1".into(),
                        name: "calculator".into(),
                        arguments: json!({"expression": "6*7"}),
                    }
                ]
            );
            assert_eq!(r.finish_reason, FinishReason::ToolCalls);
            assert_eq!((r.usage.input_tokens, r.usage.output_tokens), (20, 8));
            let deltas = sink.0.lock().unwrap().clone();
            assert!(deltas.iter().all(|(i, _)| *i == 2));
            assert_eq!(deltas[0].1, ModelDelta::Text("Let me ".into()));
            assert_eq!(deltas.len(), 5, "{deltas:?}");
            match &first {
                None => first = Some(r),
                Some(f) => assert_eq!(f, &r, "chunk size {step}"),
            }
        }
    }

    #[test]
    fn a_cut_stream_or_an_error_chunk_is_an_error() {
        let mut asm = Assembler::new(0, None);
        asm.push(&json!({"choices": [{"delta": {"content": "par"}}]}).to_string())
            .unwrap();
        assert!(asm.finish().is_err(), "no finish reason, no [DONE]");
        let mut asm = Assembler::new(0, None);
        let err = asm
            .push(&json!({"error": {"message": "overloaded"}}).to_string())
            .unwrap_err();
        assert!(err.contains("overloaded"));
    }
}

//! An incremental scan of a server-sent event stream: counts `data:` events and those that
//! carry content, without building a value tree. Chunks may split lines anywhere.

/// What one [`SseScan::feed`] call found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// `data:` lines completed by this chunk.
    pub data: u32,
    /// Of those, the ones whose payload has a non-empty `"content"` string.
    pub content: u32,
}

#[derive(Debug, Default)]
pub struct SseScan {
    /// The unfinished line carried over from the previous chunk.
    partial: Vec<u8>,
    pub data_events: u32,
    pub content_events: u32,
    /// `data: [DONE]` was seen.
    pub done: bool,
    /// The payload of an error event (`data: {"error":…}`), the last one seen.
    pub error: Option<String>,
}

impl SseScan {
    pub fn feed(&mut self, mut chunk: &[u8]) -> Fed {
        let mut fed = Fed::default();
        while let Some(i) = chunk.iter().position(|&b| b == b'\n') {
            let (line, rest) = chunk.split_at(i);
            chunk = &rest[1..];
            if self.partial.is_empty() {
                self.line(line, &mut fed);
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.line(&whole, &mut fed);
                whole.clear();
                self.partial = whole;
            }
        }
        self.partial.extend_from_slice(chunk);
        fed
    }

    fn line(&mut self, line: &[u8], fed: &mut Fed) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(payload) = line.strip_prefix(b"data:") else {
            return; // comments (`: keep-alive`), `event:`, `id:`, blank separators
        };
        let payload = payload.strip_prefix(b" ").unwrap_or(payload);
        fed.data += 1;
        self.data_events += 1;
        if payload == b"[DONE]" {
            self.done = true;
        } else if payload.starts_with(b"{\"error\"") {
            self.error = Some(String::from_utf8_lossy(payload).into_owned());
        } else if has_content(payload) {
            fed.content += 1;
            self.content_events += 1;
        }
    }
}

/// A JSON chunk with `"content": "<at least one character>"` somewhere in it.
fn has_content(payload: &[u8]) -> bool {
    const KEY: &[u8] = b"\"content\":";
    let mut rest = payload;
    while let Some(at) = rest.windows(KEY.len()).position(|w| w == KEY) {
        let after = &rest[at + KEY.len()..];
        let value = after.trim_ascii_start();
        if value.len() >= 2 && value[0] == b'"' && value[1] != b'"' {
            return true;
        }
        rest = after;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str =
        r#"data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#;
    const WORD: &str = r#"data: {"choices":[{"index":0,"delta":{"content":"Echo: "}}]}"#;
    const FINISH: &str = r#"data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;

    fn stream() -> String {
        format!("{ROLE}\n\n{WORD}\n\n: keep-alive\n\n{WORD}\r\n\r\n{FINISH}\n\ndata: [DONE]\n\n")
    }

    #[test]
    fn counts_events_and_content_whole() {
        let mut s = SseScan::default();
        let fed = s.feed(stream().as_bytes());
        assert_eq!(
            fed,
            Fed {
                data: 5,
                content: 2
            }
        );
        assert!(s.done);
    }

    #[test]
    fn any_split_gives_the_same_counts() {
        let bytes = stream().into_bytes();
        for cut in 0..bytes.len() {
            let mut s = SseScan::default();
            let a = s.feed(&bytes[..cut]);
            let b = s.feed(&bytes[cut..]);
            assert_eq!(a.data + b.data, 5, "cut at {cut}");
            assert_eq!(s.content_events, 2, "cut at {cut}");
            assert!(s.done);
        }
    }

    #[test]
    fn an_error_event_is_kept() {
        let mut s = SseScan::default();
        s.feed(
            format!("{WORD}\n\ndata: {{\"error\":{{\"code\":\"gateway_shutting_down\"}}}}\n\n")
                .as_bytes(),
        );
        assert!(
            s.error
                .as_deref()
                .unwrap()
                .contains("gateway_shutting_down")
        );
        assert!(!s.done);
    }

    #[test]
    fn empty_and_null_content_do_not_count() {
        assert!(!has_content(br#"{"delta":{"content":""}}"#));
        assert!(!has_content(br#"{"delta":{"content":null}}"#));
        assert!(has_content(br#"{"delta":{"content": "x"}}"#));
        assert!(has_content(br#"{"a":{"content":""},"b":{"content":"y"}}"#));
    }
}

//! What `morpheus-bench` and `morpheus-reliability` share: starting the simulator and the
//! gateway, setting up a user and key through the real API, a lean HTTP/1 client, an SSE
//! scanner and the percentile math.

pub mod http;
pub mod procs;
pub mod setup;
pub mod sse;
pub mod stack;
pub mod stats;

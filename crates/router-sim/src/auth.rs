//! HTTP Basic auth, with the proxy-router's three distinct refusals.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper::header::HeaderValue;

pub(crate) struct BasicAuth {
    /// The exact header a correct client sends, so the common case is one comparison.
    expected: Vec<u8>,
    user: String,
    password: String,
}

impl BasicAuth {
    pub fn new(user: &str, password: &str) -> Self {
        let expected =
            format!("Basic {}", STANDARD.encode(format!("{user}:{password}"))).into_bytes();
        Self {
            expected,
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }

    /// `Err` carries the proxy-router's error text for a 401. Mirrors its `CheckAuth`: an absent
    /// or empty header, then anything that does not parse as `Basic base64(user:password)` with
    /// both parts non-empty, then a mismatch.
    pub fn check(&self, header: Option<&HeaderValue>) -> Result<(), &'static str> {
        let value = header.map_or(&b""[..], HeaderValue::as_bytes);
        if value.is_empty() {
            return Err("no basic auth provided");
        }
        if value == self.expected.as_slice() {
            return Ok(());
        }
        let malformed = "invalid basic auth provided";
        let encoded = value.strip_prefix(b"Basic ").ok_or(malformed)?;
        let decoded = STANDARD.decode(encoded).map_err(|_| malformed)?;
        let decoded = std::str::from_utf8(&decoded).map_err(|_| malformed)?;
        let (user, password) = decoded.split_once(':').ok_or(malformed)?;
        if user.is_empty() || password.is_empty() {
            return Err(malformed);
        }
        if user == self.user && password == self.password {
            Ok(())
        } else {
            Err("invalid username or password")
        }
    }
}

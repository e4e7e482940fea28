//! HTTP Basic auth with the proxy-router's three distinct 401s and its per-user method
//! permissions (`system/auth.go:353-419`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper::StatusCode;
use hyper::header::HeaderValue;

use crate::config::{SimConfig, SimUser};
use crate::texts;

struct User {
    /// The exact header this user's client sends, so the common case is one comparison.
    expected: Vec<u8>,
    name: String,
    password: String,
    methods: Vec<String>,
}

impl User {
    fn new(u: SimUser) -> Self {
        let expected = format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", u.name, u.password))
        )
        .into_bytes();
        Self {
            expected,
            name: u.name,
            password: u.password,
            methods: u.methods,
        }
    }

    /// `IsMethodAllowed` (`system/auth.go:369-389`): a listed method or `*`; a user without any
    /// listed method may call nothing (`WhitelistDefault` is false, `:55`).
    fn may_call(&self, method: &str) -> bool {
        self.methods.iter().any(|m| m == "*" || m == method)
    }
}

pub(crate) struct BasicAuth {
    users: Vec<User>,
}

impl BasicAuth {
    pub fn new(config: &SimConfig) -> Self {
        let main = SimUser {
            name: config.user.clone(),
            password: config.password.clone(),
            methods: config.user_methods.clone(),
        };
        Self {
            users: std::iter::once(main)
                .chain(config.extra_users.iter().cloned())
                .map(User::new)
                .collect(),
        }
    }

    /// `Err` carries the status and the proxy-router's text. Mirrors its `CheckAuth`: an absent
    /// or empty header, then anything that does not parse as `Basic base64(user:password)` with
    /// both parts non-empty, then unknown credentials, then a method the user may not call.
    pub fn check(
        &self,
        header: Option<&HeaderValue>,
        method: &str,
    ) -> Result<(), (StatusCode, &'static str)> {
        let value = header.map_or(&b""[..], HeaderValue::as_bytes);
        if value.is_empty() {
            return Err((StatusCode::UNAUTHORIZED, texts::NO_BASIC_AUTH));
        }
        let user = match self.users.iter().find(|u| value == u.expected.as_slice()) {
            Some(user) => user,
            None => self.parse(value)?,
        };
        if user.may_call(method) {
            Ok(())
        } else {
            Err((StatusCode::FORBIDDEN, texts::METHOD_NOT_ALLOWED))
        }
    }

    fn parse(&self, value: &[u8]) -> Result<&User, (StatusCode, &'static str)> {
        let malformed = (StatusCode::UNAUTHORIZED, texts::INVALID_BASIC_AUTH);
        let encoded = value.strip_prefix(b"Basic ").ok_or(malformed)?;
        let decoded = STANDARD.decode(encoded).map_err(|_| malformed)?;
        let decoded = std::str::from_utf8(&decoded).map_err(|_| malformed)?;
        let (name, password) = decoded.split_once(':').ok_or(malformed)?;
        if name.is_empty() || password.is_empty() {
            return Err(malformed);
        }
        self.users
            .iter()
            .find(|u| u.name == name && u.password == password)
            .ok_or((StatusCode::UNAUTHORIZED, texts::WRONG_CREDENTIALS))
    }
}

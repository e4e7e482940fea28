//! How to reach the proxy-router and how long to wait for it.

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::Url;
use secrecy::SecretString;

/// Where the proxy-router is, its Basic-auth credentials, and the limits of every exchange.
#[derive(Clone)]
pub struct ProxyRouterConfig {
    /// `http://host:port` (optionally with a path prefix). Credentials in the URL's userinfo
    /// are used when `user`/`password` are not set, and are never kept in the URL.
    pub base_url: String,
    pub user: Option<String>,
    pub password: Option<SecretString>,
    /// TCP (and TLS) connection set-up.
    pub connect_timeout: Duration,
    /// From sending a request to the response head.
    pub first_byte_timeout: Duration,
    /// The longest gap between two chunks of a body (streams included).
    pub idle_timeout: Duration,
    /// A whole non-streaming admin call (models, bids, sessions, wallet, …).
    pub request_timeout: Duration,
    /// A whole non-streaming chat completion.
    pub chat_timeout: Duration,
    /// A whole session open: two mined transactions and a provider handshake, minutes at worst
    /// (`blockchainapi/service.go:328-443`, `lib/tx_escalator.go:17-20`).
    pub open_timeout: Duration,
    /// After an open whose outcome is unknown (a timeout, a text the node returns after the
    /// transaction was sent): how long the node's session list is watched for the session.
    pub open_recovery_window: Duration,
    /// Cap for any body read in full.
    pub max_body_bytes: usize,
    /// Cap for one server-sent event of a stream.
    pub max_event_bytes: usize,
}

impl ProxyRouterConfig {
    /// The usual cap on a body read in full: far above any answer of the proxy-router's, low
    /// enough that a broken one cannot exhaust memory. (The timeouts are the gateway's
    /// settings; these caps are not.)
    pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
    /// The usual cap on one server-sent event.
    pub const MAX_EVENT_BYTES: usize = 1024 * 1024;
}

// By hand so that a URL with userinfo never reaches a log through `{:?}`.
impl std::fmt::Debug for ProxyRouterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let base = normalise_base(&self.base_url)
            .map(|b| b.base)
            .unwrap_or_else(|_| "<invalid>".to_owned());
        f.debug_struct("ProxyRouterConfig")
            .field("base_url", &base)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("first_byte_timeout", &self.first_byte_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("chat_timeout", &self.chat_timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_event_bytes", &self.max_event_bytes)
            .finish()
    }
}

/// A base URL split into what is safe to keep and the credentials it carried.
pub(crate) struct NormalisedBase {
    /// `scheme://host[:port][/prefix]`, no trailing slash, no userinfo, query or fragment.
    pub base: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

pub(crate) fn normalise_base(raw: &str) -> anyhow::Result<NormalisedBase> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        bail!("the proxy-router base URL is empty");
    }
    // The parse error of `url` never echoes the input, so it cannot leak userinfo.
    let mut url = Url::parse(trimmed).context("the proxy-router base URL is not a valid URL")?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("the proxy-router base URL must be http:// or https://");
    }
    if url.host_str().is_none() {
        bail!("the proxy-router base URL has no host");
    }
    let user = Some(percent_decode(url.username())).filter(|u| !u.is_empty());
    let password = url.password().map(percent_decode);
    // Infallible for http(s) URLs with a host.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    let base = url.as_str().trim_end_matches('/').to_owned();
    Ok(NormalisedBase {
        base,
        user,
        password,
    })
}

fn percent_decode(raw: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_taken_out_of_the_base_url() {
        let b = normalise_base("http://ad%40min:p%3Ass@127.0.0.1:8082/router/?x=1#f").unwrap();
        assert_eq!(b.base, "http://127.0.0.1:8082/router");
        assert_eq!(b.user.as_deref(), Some("ad@min"));
        assert_eq!(b.password.as_deref(), Some("p:ss"));
        let b = normalise_base("http://localhost:8082/").unwrap();
        assert_eq!(b.base, "http://localhost:8082");
        assert!(b.user.is_none() && b.password.is_none());
    }

    #[test]
    fn bad_base_urls_are_refused_without_echoing_them() {
        for bad in ["", "ftp://x", "not a url secret", "unix:/tmp/sock"] {
            let err = normalise_base(bad).err().unwrap();
            assert!(!format!("{err:#}").contains("secret"));
        }
    }

    #[test]
    fn debug_never_shows_credentials() {
        let second = Duration::from_secs(1);
        let cfg = ProxyRouterConfig {
            base_url: "http://admin:hunter2@10.1.2.3:8082".to_owned(),
            user: None,
            password: Some(SecretString::from("s3cr3t")),
            connect_timeout: second,
            first_byte_timeout: second,
            idle_timeout: second,
            request_timeout: second,
            chat_timeout: second,
            open_timeout: second,
            open_recovery_window: second,
            max_body_bytes: ProxyRouterConfig::MAX_BODY_BYTES,
            max_event_bytes: ProxyRouterConfig::MAX_EVENT_BYTES,
        };
        let shown = format!("{cfg:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }
}

//! Who a request comes from, the one notion every per-client limit uses (logins,
//! registrations, connection caps, rated bids).
//!
//! The client is the TCP peer, unless the peer is one of the configured trusted proxies: then
//! it is the rightmost address of `X-Forwarded-For` that is not itself a trusted proxy (each
//! proxy appends the address it received the request from, so entries to the left of that
//! one are whatever the client chose to send). Anybody else's `X-Forwarded-For` is ignored, so
//! a forged header neither hides a client nor resets its counters.
//!
//! Limits count a client by its network prefix, /32 for IPv4 and /64 for IPv6 by default: an
//! IPv6 host is usually handed a whole /64, and counting its addresses one by one would give it
//! 2^64 allowances.

use std::future::{Ready, ready};
use std::net::IpAddr;

use actix_web::http::header::{HeaderMap, HeaderName};
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use ipnet::IpNet;

use crate::AppState;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The trusted proxies and the prefix lengths clients are counted by.
#[derive(Debug, Clone)]
pub struct ClientAddressRules {
    trusted_proxies: Vec<IpNet>,
    ipv4_prefix: u8,
    ipv6_prefix: u8,
}

impl Default for ClientAddressRules {
    /// No trusted proxy; IPv4 clients per address, IPv6 clients per /64.
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            ipv4_prefix: 32,
            ipv6_prefix: 64,
        }
    }
}

/// A setting that does not describe proxies or prefix lengths.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidClientAddressRules {
    #[error("{0:?} is neither an IP address nor a CIDR range (like 10.0.0.0/8 or fd00::/8)")]
    Proxy(String),
    #[error("an IPv4 prefix length is 1 to 32, not {0}")]
    Ipv4Prefix(u8),
    #[error("an IPv6 prefix length is 1 to 128, not {0}")]
    Ipv6Prefix(u8),
}

impl ClientAddressRules {
    /// `trusted_proxies`: comma-separated addresses and CIDR ranges (`10.0.0.0/8, ::1`).
    ///
    /// # Errors
    /// An entry that is not an address or a range, or a prefix length out of range.
    pub fn new(
        trusted_proxies: &str,
        ipv4_prefix: u8,
        ipv6_prefix: u8,
    ) -> Result<Self, InvalidClientAddressRules> {
        if !(1..=32).contains(&ipv4_prefix) {
            return Err(InvalidClientAddressRules::Ipv4Prefix(ipv4_prefix));
        }
        if !(1..=128).contains(&ipv6_prefix) {
            return Err(InvalidClientAddressRules::Ipv6Prefix(ipv6_prefix));
        }
        let trusted_proxies = trusted_proxies
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| canonical_net(net).trunc())
                    .map_err(|_| InvalidClientAddressRules::Proxy(entry.to_owned()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            trusted_proxies,
            ipv4_prefix,
            ipv6_prefix,
        })
    }

    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer, or behind a trusted proxy the forwarded client.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.is_trusted_proxy(peer) {
            return peer;
        }
        // Hops in the order they were appended; the header may be repeated.
        let hops: Vec<&str> = headers
            .get_all(X_FORWARDED_FOR)
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            // An unreadable entry was not written by a proxy we trust: the client is the last
            // hop we could vouch for.
            let Some(ip) = parse_hop(hop) else { break };
            client = ip;
            if !self.is_trusted_proxy(ip) {
                break;
            }
        }
        client
    }

    /// The key a client is counted under: its address reduced to the configured prefix.
    pub fn key(&self, ip: IpAddr) -> ClientKey {
        let ip = ip.to_canonical();
        let prefix = match ip {
            IpAddr::V4(_) => self.ipv4_prefix,
            IpAddr::V6(_) => self.ipv6_prefix,
        };
        ClientKey(IpNet::new(ip, prefix).map_or(ip, |net| net.trunc().addr()))
    }

    /// The key of a request's client, when it came over TCP.
    pub fn of_request(&self, req: &HttpRequest) -> Option<ClientKey> {
        let peer = req.peer_addr()?.ip();
        Some(self.key(self.client_ip(peer, req.headers())))
    }
}

/// An address reduced to its network prefix: what per-client limits count by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    /// The prefix's first address (`2001:db8:1:2::` for any address of `2001:db8:1:2::/64`).
    pub fn ip(self) -> IpAddr {
        self.0
    }
}

/// `X-Forwarded-For` entries are addresses, sometimes with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<std::net::SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// `::ffff:10.0.0.0/104` is `10.0.0.0/8`: a dual-stack listener sees IPv4 peers as mapped.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
            Some(v4) if v6.prefix_len() >= 96 => {
                IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).unwrap_or(net)
            }
            _ => net,
        },
        IpNet::V4(_) => net,
    }
}

/// The calling client's key, for handlers (`None` when the request did not come over TCP).
#[derive(Debug, Clone, Copy)]
pub struct Client(pub Option<ClientKey>);

impl Client {
    /// The key as the address the domain's throttles take.
    pub fn ip(self) -> Option<IpAddr> {
        self.0.map(ClientKey::ip)
    }
}

impl FromRequest for Client {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let key = match req.app_data::<web::Data<AppState>>() {
            Some(state) => state.client_addresses.of_request(req),
            None => ClientAddressRules::default().of_request(req),
        };
        ready(Ok(Client(key)))
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(X_FORWARDED_FOR, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn rules(proxies: &str) -> ClientAddressRules {
        ClientAddressRules::new(proxies, 32, 64).unwrap()
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let r = rules("");
        let h = forwarded(&["203.0.113.9"]);
        assert_eq!(r.client_ip(ip("198.51.100.1"), &h), ip("198.51.100.1"));
    }

    #[test]
    fn a_peer_that_is_not_a_trusted_proxy_is_the_client_whatever_it_forwards() {
        let r = rules("10.0.0.0/8");
        let h = forwarded(&["203.0.113.9"]);
        assert_eq!(r.client_ip(ip("198.51.100.1"), &h), ip("198.51.100.1"));
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let r = rules("10.0.0.0/8, 192.0.2.7");
        // The client forged the first entry; our proxies appended the rest.
        let h = forwarded(&["1.1.1.1, 203.0.113.9", "192.0.2.7"]);
        assert_eq!(r.client_ip(ip("10.1.2.3"), &h), ip("203.0.113.9"));
        // Only trusted hops: the leftmost is as far as we can see.
        let h = forwarded(&["10.9.9.9, 192.0.2.7"]);
        assert_eq!(r.client_ip(ip("10.1.2.3"), &h), ip("10.9.9.9"));
        // No header: the proxy itself.
        assert_eq!(
            r.client_ip(ip("10.1.2.3"), &HeaderMap::new()),
            ip("10.1.2.3")
        );
    }

    #[test]
    fn an_unreadable_hop_stops_the_walk_at_the_last_trusted_one() {
        let r = rules("10.0.0.0/8");
        let h = forwarded(&["203.0.113.9, garbage, 10.0.0.5"]);
        assert_eq!(r.client_ip(ip("10.1.2.3"), &h), ip("10.0.0.5"));
        let h = forwarded(&["unknown"]);
        assert_eq!(r.client_ip(ip("10.1.2.3"), &h), ip("10.1.2.3"));
    }

    #[test]
    fn hops_may_carry_ports_and_mapped_addresses() {
        let r = rules("10.0.0.0/8");
        let h = forwarded(&["[2001:db8::1]:443"]);
        assert_eq!(r.client_ip(ip("10.1.2.3"), &h), ip("2001:db8::1"));
        let h = forwarded(&["203.0.113.9:5678"]);
        assert_eq!(r.client_ip(ip("10.1.2.3"), &h), ip("203.0.113.9"));
        // A dual-stack listener's view of an IPv4 proxy.
        let h = forwarded(&["203.0.113.9"]);
        assert_eq!(r.client_ip(ip("::ffff:10.1.2.3"), &h), ip("203.0.113.9"));
        assert!(rules("::ffff:10.0.0.0/104").is_trusted_proxy(ip("10.4.4.4")));
    }

    #[test]
    fn clients_are_counted_per_prefix() {
        let r = rules("");
        assert_eq!(
            r.key(ip("2001:db8:1:2::1")),
            r.key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(r.key(ip("2001:db8:1:2::1")), r.key(ip("2001:db8:1:3::1")));
        assert_eq!(r.key(ip("2001:db8:1:2::1")).ip(), ip("2001:db8:1:2::"));
        assert_ne!(r.key(ip("192.0.2.1")), r.key(ip("192.0.2.2")));
        assert_eq!(r.key(ip("::ffff:192.0.2.1")), r.key(ip("192.0.2.1")));
        let wide = ClientAddressRules::new("", 24, 48).unwrap();
        assert_eq!(wide.key(ip("192.0.2.1")), wide.key(ip("192.0.2.200")));
        assert_eq!(
            wide.key(ip("2001:db8:1:2::1")),
            wide.key(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        assert_eq!(
            ClientAddressRules::new("10.0.0.0/8, nonsense", 32, 64).unwrap_err(),
            InvalidClientAddressRules::Proxy("nonsense".into())
        );
        assert!(ClientAddressRules::new("", 0, 64).is_err());
        assert!(ClientAddressRules::new("", 32, 129).is_err());
        assert!(ClientAddressRules::new("10.0.0.0/33", 32, 64).is_err());
    }
}

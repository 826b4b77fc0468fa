//! Who is calling: the connection's address, or, when the connection comes from a trusted
//! proxy, the address that proxy names in `X-Forwarded-For`.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    str::FromStr,
};

use axum::{
    extract::{ConnectInfo, Request},
    http::HeaderMap,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// An address or a network of addresses: `10.0.0.1`, `10.0.0.0/8`, `fd00::/8`. The
/// entries of [`AdminConfig::trusted_proxies`](crate::AdminConfig::trusted_proxies).
///
/// ```
/// use perf_http::IpNet;
///
/// let net: IpNet = "10.1.0.0/16".parse().expect("a network");
/// assert!(net.contains("10.1.2.3".parse().expect("an address")));
/// assert!(!net.contains("10.2.0.1".parse().expect("an address")));
/// assert_eq!("192.0.2.7".parse::<IpNet>().expect("an address").to_string(), "192.0.2.7/32");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet(ipnet::IpNet);

impl IpNet {
    /// Whether `address` is in the network. An IPv4 address written as IPv6
    /// (`::ffff:10.0.0.1`, as a dual-stack listener sees IPv4 peers) counts as IPv4.
    pub fn contains(&self, address: IpAddr) -> bool {
        self.0.contains(&address.to_canonical())
    }
}

/// Why a network did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpNetError(String);

impl fmt::Display for IpNetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not an IP address or network (10.0.0.1, 10.0.0.0/8, fd00::/8)",
            self.0
        )
    }
}

impl std::error::Error for IpNetError {}

impl FromStr for IpNet {
    type Err = IpNetError;

    /// An address (a network of one) or `address/prefix`; host bits after the prefix are
    /// cleared (`10.1.2.3/8` is `10.0.0.0/8`).
    fn from_str(text: &str) -> Result<Self, IpNetError> {
        let trimmed = text.trim();
        let net = if trimmed.contains('/') {
            trimmed.parse::<ipnet::IpNet>().map(|net| net.trunc()).ok()
        } else {
            trimmed.parse::<IpAddr>().map(ipnet::IpNet::from).ok()
        };
        net.map(Self).ok_or_else(|| IpNetError(text.to_owned()))
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for IpNet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// A list of networks, or one string of them separated by commas (an environment
/// variable's natural form: `PERF_ADMIN_TRUSTED_PROXIES=10.0.0.0/8,127.0.0.1`).
pub(crate) fn one_or_many<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<IpNet>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        Many(Vec<String>),
        One(String),
    }
    let given = match Given::deserialize(deserializer)? {
        Given::Many(list) => list,
        Given::One(text) => text
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(str::to_owned)
            .collect(),
    };
    given
        .iter()
        .map(|entry| entry.parse().map_err(de::Error::custom))
        .collect()
}

/// The calling client's address: the connection's peer (served with
/// `into_make_service_with_connect_info::<SocketAddr>()`; `None` otherwise). When the peer is
/// one of `trusted`, the right-most address of `X-Forwarded-For` that is not itself trusted:
/// each proxy appends the address it received the request from, so entries to the left of
/// the first untrusted one are whatever the client chose to send. Without a peer address,
/// `X-Forwarded-For` is never read.
pub(crate) fn client(request: &Request, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip().to_canonical())?;
    let is_trusted = |address: IpAddr| trusted.iter().any(|net| net.contains(address));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut client = peer;
    for entry in forwarded_for(request.headers()).rev() {
        // An entry that is not an address ends the walk: the last trusted hop answers for it.
        let Some(address) = parse_hop(entry) else {
            break;
        };
        client = address;
        if !is_trusted(address) {
            break;
        }
    }
    Some(client)
}

/// The entries of every `X-Forwarded-For` header, in order.
fn forwarded_for(headers: &HeaderMap) -> impl DoubleEndedIterator<Item = &str> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|value| value.to_str().unwrap_or_default().split(','))
        .map(str::trim)
        .collect::<Vec<_>>()
        .into_iter()
}

/// `192.0.2.1`, `2001:db8::1`, and with a port as some proxies write them: `192.0.2.1:443`,
/// `[2001:db8::1]:443`.
fn parse_hop(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|socket| socket.ip()))
        .ok()
        .map(|address| address.to_canonical())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().expect(text)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect(text)
    }

    #[test]
    fn networks_parse_and_contain() {
        assert_eq!(net("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(net(" 10.1.2.3 ").to_string(), "10.1.2.3/32");
        assert_eq!(net("fd00::1/8").to_string(), "fd00::/8");
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(net("::/0").contains(ip("2001:db8::1")));
        assert!(!net("::/0").contains(ip("203.0.113.9")), "families differ");
        assert!(
            net("10.0.0.0/8").contains(ip("::ffff:10.9.8.7")),
            "IPv4 as IPv6"
        );
        assert!(net("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!net("2001:db8::/32").contains(ip("2001:db9::1")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "10.0.0.0/+8",
            "x",
            "10.0.0.0/",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad:?}");
        }
    }

    fn request(peer: Option<&str>, forwarded: &[&str]) -> Request {
        let mut request = Request::new(Body::empty());
        if let Some(peer) = peer {
            let peer = SocketAddr::new(ip(peer), 40_000);
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        for value in forwarded {
            let value = value.parse().expect("a header value");
            request.headers_mut().append("x-forwarded-for", value);
        }
        request
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_peer() {
        let trusted = [net("10.0.0.0/8")];
        let client = |peer, forwarded: &[&str]| client(&request(peer, forwarded), &trusted);
        assert_eq!(
            client(Some("203.0.113.9"), &["198.51.100.1"]),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            client(Some("10.0.0.2"), &["198.51.100.1"]),
            Some(ip("198.51.100.1"))
        );
        assert_eq!(
            client(Some("10.0.0.2"), &["1.1.1.1, 198.51.100.1, 10.0.0.3"]),
            Some(ip("198.51.100.1")),
            "the right-most untrusted entry, not what the client wrote first"
        );
        assert_eq!(
            client(Some("10.0.0.2"), &["1.1.1.1", "198.51.100.1:5555"]),
            Some(ip("198.51.100.1")),
            "headers in order; a port is dropped"
        );
        assert_eq!(
            client(Some("10.0.0.2"), &["10.0.0.5, 10.0.0.4"]),
            Some(ip("10.0.0.5")),
            "all trusted: the left-most"
        );
        assert_eq!(
            client(Some("10.0.0.2"), &["198.51.100.1, garbage"]),
            Some(ip("10.0.0.2")),
            "a hop that is not an address: the proxy answers for it"
        );
        assert_eq!(client(Some("10.0.0.2"), &[]), Some(ip("10.0.0.2")));
        assert_eq!(
            client(None, &["198.51.100.1"]),
            None,
            "no peer: never the header"
        );
        assert_eq!(
            client(Some("::ffff:203.0.113.9"), &[]),
            Some(ip("203.0.113.9")),
            "IPv4 peers of a dual-stack listener as IPv4"
        );
    }

    #[test]
    fn a_list_or_a_string_of_networks() {
        #[derive(Deserialize)]
        struct Config {
            #[serde(deserialize_with = "one_or_many")]
            nets: Vec<IpNet>,
        }
        let read = |json: &str| serde_json::from_str::<Config>(json).map(|c| c.nets);
        let expected = vec![net("10.0.0.0/8"), net("127.0.0.1")];
        assert_eq!(
            read(r#"{"nets": ["10.0.0.0/8", "127.0.0.1"]}"#).ok(),
            Some(expected.clone())
        );
        assert_eq!(
            read(r#"{"nets": "10.0.0.0/8, 127.0.0.1"}"#).ok(),
            Some(expected)
        );
        let error = read(r#"{"nets": ["10.0.0.0/99"]}"#).expect_err("refused");
        assert!(error.to_string().contains("10.0.0.0/99"), "{error}");
    }
}

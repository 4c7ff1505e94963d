//! Where outbound HTTP on a user's behalf (webhook deliveries, media fetched from a URL a client
//! gives) may go: public addresses only.
//!
//! A user chooses the URL, so without a check a webhook could reach the deployment's own network:
//! loopback ports, the cloud metadata service at 169.254.169.254, private databases. Addresses
//! that are not globally reachable (the special-purpose ranges of the IANA registries) are
//! refused when a URL is saved, and again at every connection, since a name can resolve to
//! another address by then (DNS rebinding). Operators who deliver to their own network on
//! purpose list those hosts in [`AllowedHosts`] (`WEBHOOK_ALLOWED_HOSTS`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Longest wait for a name to resolve when a URL is saved.
const SAVE_LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// The IPv4 ranges that are not globally reachable, most specific first, each with the name a
/// refusal gives it.
static V4_RANGES: LazyLock<Vec<(Ipv4Net, &'static str)>> = LazyLock::new(|| {
    [
        ("255.255.255.255/32", "broadcast"),
        ("0.0.0.0/8", "unspecified (\"this network\")"),
        ("10.0.0.0/8", "private (RFC 1918)"),
        ("100.64.0.0/10", "shared (carrier-grade NAT, RFC 6598)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private (RFC 1918)"),
        ("192.0.0.0/24", "IETF protocol assignment"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "reserved (6to4 relay anycast)"),
        ("192.168.0.0/16", "private (RFC 1918)"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    ]
    .into_iter()
    .map(|(net, class)| (net.parse().expect("a valid IPv4 network"), class))
    .collect()
});

/// The IPv6 ranges that are not globally reachable and embed no IPv4 address to judge instead.
static V6_RANGES: LazyLock<Vec<(Ipv6Net, &'static str)>> = LazyLock::new(|| {
    [
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001:db8::/32", "documentation"),
        ("2001::/23", "IETF protocol assignment"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "segment routing (SRv6)"),
        ("fc00::/7", "unique-local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
    ]
    .into_iter()
    .map(|(net, class)| (net.parse().expect("a valid IPv6 network"), class))
    .collect()
});

/// The IPv4 address inside an IPv6 one that stands for it: IPv4-mapped (`::ffff:a.b.c.d`),
/// NAT64 (`64:ff9b::a.b.c.d`) or 6to4 (`2002:AABB:CCDD::`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, ..] | [0x64, 0xff9b, 0, 0, 0, 0, ..] => Some(tail()),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        _ => None,
    }
}

/// Why `ip` is not a public address (the name of its class), or `None` when it is one.
pub fn forbidden_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => V4_RANGES.iter().find(|(net, _)| net.contains(&v4)).map(|(_, c)| *c),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => forbidden_class(IpAddr::V4(v4)),
            None => V6_RANGES.iter().find(|(net, _)| net.contains(&v6)).map(|(_, c)| *c),
        },
    }
}

/// Internal hosts an operator lets webhooks reach: host names (matched exactly, in any case,
/// whatever they resolve to), addresses and networks (`10.1.2.3`, `10.0.0.0/8`, `::1`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    names: Vec<String>,
    nets: Vec<IpNet>,
}

impl FromStr for AllowedHosts {
    type Err = String;

    /// A comma-separated list; empty allows nothing.
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        let mut allowed = AllowedHosts::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if let Ok(ip) = entry.parse::<IpAddr>() {
                allowed.nets.push(IpNet::from(ip));
            } else if let Ok(net) = entry.parse::<IpNet>() {
                allowed.nets.push(net.trunc());
            } else if entry.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) {
                allowed.names.push(entry.trim_end_matches('.').to_ascii_lowercase());
            } else {
                return Err(format!(
                    "`{entry}` is not a host name, IP address or network (e.g. hooks.internal, 10.1.2.3, 10.0.0.0/8)"
                ));
            }
        }
        Ok(allowed)
    }
}

impl fmt::Display for AllowedHosts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nets = self.nets.iter().map(ToString::to_string);
        let all: Vec<String> = self.names.iter().cloned().chain(nets).collect();
        f.write_str(&all.join(","))
    }
}

impl AllowedHosts {
    /// Whether the host name `name` is listed (then any address it resolves to is allowed).
    pub fn allows_name(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// Why a connection to `ip` is refused, or `None` when it is public or listed.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        let class = forbidden_class(ip)?;
        let listed = self.nets.iter().any(|net| net.contains(&ip))
            || matches!(ip, IpAddr::V6(v6) if embedded_v4(v6).is_some_and(|v4| self.nets.iter().any(|n| n.contains(&IpAddr::V4(v4)))));
        (!listed).then_some(class)
    }
}

/// A connection refused because the address is not public: what a delivery records, without
/// naming the address or anything the target said.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("refused: address not allowed")]
pub struct Refused;

/// The host of a URL: a name to resolve, or an address as written.
fn url_host(url: &url::Url) -> Option<Result<IpAddr, String>> {
    match url.host()? {
        url::Host::Domain(name) => Some(Err(name.to_owned())),
        url::Host::Ipv4(ip) => Some(Ok(IpAddr::V4(ip))),
        url::Host::Ipv6(ip) => Some(Ok(IpAddr::V6(ip))),
    }
}

/// The refusal for a URL whose host is an address (names are judged when they resolve).
pub fn literal_refusal(url: &str, allowed: &AllowedHosts) -> Option<Refused> {
    let url = url::Url::parse(url).ok()?;
    match url_host(&url)? {
        Ok(ip) => allowed.refusal(ip).map(|_| Refused),
        Err(_) => None,
    }
}

/// Checks where a URL a user is saving leads: its host, or every address its name resolves to,
/// must be public or allowed. A name that does not resolve now passes: nothing is known of it
/// yet, and each delivery checks again when it connects. The error names the address and its
/// class, for the user to fix.
pub async fn check_url(raw: &str, allowed: &AllowedHosts) -> Result<(), String> {
    let url = url::Url::parse(raw.trim()).map_err(|e| format!("url: not a valid URL ({e})"))?;
    let (host, addrs) = match url_host(&url) {
        None => return Err("url: names no host".into()),
        Some(Ok(ip)) => (ip.to_string(), vec![ip]),
        Some(Err(name)) if allowed.allows_name(&name) => return Ok(()),
        Some(Err(name)) => {
            let port = url.port_or_known_default().unwrap_or(443);
            let lookup = tokio::net::lookup_host((name.as_str(), port));
            let addrs = match tokio::time::timeout(SAVE_LOOKUP_TIMEOUT, lookup).await {
                Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
                _ => Vec::new(),
            };
            (name, addrs)
        }
    };
    for ip in addrs {
        if let Some(class) = allowed.refusal(ip) {
            let which = if host == ip.to_string() {
                format!("`{ip}` is")
            } else {
                format!("`{host}` resolves to {ip},")
            };
            return Err(format!(
                "url: {which} a {class} address; webhooks are delivered to public addresses only \
                 (an operator can allow internal hosts with WEBHOOK_ALLOWED_HOSTS)"
            ));
        }
    }
    Ok(())
}

/// Resolves with the system resolver and keeps only the addresses outbound HTTP on a user's
/// behalf may reach, at every connection, so a name that passed when its URL was saved cannot
/// lead inside later (DNS rebinding). Addresses written in a URL never reach a resolver: check
/// them with [`literal_refusal`] before sending.
pub struct GuardedResolver {
    allowed: Arc<AllowedHosts>,
}

impl GuardedResolver {
    /// A resolver that lets through public addresses and those `allowed` lists.
    pub fn new(allowed: AllowedHosts) -> Self {
        GuardedResolver {
            allowed: Arc::new(allowed),
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allowed = Arc::clone(&self.allowed);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            // The port is the URL's; the client sets it on each address.
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted = permitted(&host, found, &allowed);
            if permitted.is_empty() {
                tracing::info!(host, "a host resolved to no address outbound requests may reach");
                return Err(Box::new(Refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

/// The addresses of `host` outbound requests may connect to.
fn permitted(host: &str, found: Vec<SocketAddr>, allowed: &AllowedHosts) -> Vec<SocketAddr> {
    if allowed.allows_name(host) {
        return found;
    }
    found
        .into_iter()
        .filter(|a| allowed.refusal(a.ip()).is_none())
        .collect()
}

/// Whether `err` (or any error it wraps) is the guard's refusal.
pub fn is_refusal(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(err) = current {
        if err.downcast_ref::<Refused>().is_some() {
            return true;
        }
        current = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn only_public_or_allowed_addresses_are_kept() {
        let none = AllowedHosts::default();
        let found = addrs(&["127.0.0.1:0", "93.184.215.14:0", "[fd00::1]:0", "[::ffff:10.0.0.1]:0"]);
        assert_eq!(
            permitted("rebound.example", found.clone(), &none),
            addrs(&["93.184.215.14:0"])
        );
        let by_name: AllowedHosts = "rebound.example".parse().unwrap();
        assert_eq!(permitted("rebound.example", found.clone(), &by_name), found);
        let by_net: AllowedHosts = "10.0.0.0/8".parse().unwrap();
        assert_eq!(
            permitted("rebound.example", found, &by_net),
            addrs(&["93.184.215.14:0", "[::ffff:10.0.0.1]:0"])
        );
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_at_connection() {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver::new(AllowedHosts::default())))
            .no_proxy()
            .build()
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let err = client
            .post(format!("http://localhost:{port}/hook"))
            .send()
            .await
            .unwrap_err();
        assert!(is_refusal(&err), "{err:?}");
        let accepted = tokio::time::timeout(std::time::Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "no connection was made");
    }

    fn class(ip: &str) -> Option<&'static str> {
        forbidden_class(ip.parse().unwrap())
    }

    #[test]
    fn internal_addresses_are_refused_by_class() {
        for (ip, expected) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("10.0.0.1", "private (RFC 1918)"),
            ("172.31.255.255", "private (RFC 1918)"),
            ("192.168.1.1", "private (RFC 1918)"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "shared (carrier-grade NAT, RFC 6598)"),
            ("0.0.0.0", "unspecified (\"this network\")"),
            ("255.255.255.255", "broadcast"),
            ("224.0.0.251", "multicast"),
            ("192.0.2.10", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("240.0.0.1", "reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("fd00::1", "unique-local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
            ("64:ff9b::a00:1", "private (RFC 1918)"),
            ("2002:7f00:1::", "loopback"),
        ] {
            assert_eq!(class(ip), Some(expected), "{ip}");
        }
        for public in [
            "93.184.215.14",
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(class(public), None, "{public}");
        }
    }

    #[test]
    fn operators_allow_listed_hosts() {
        let allowed: AllowedHosts = "hooks.internal, 127.0.0.1, 10.0.0.0/8".parse().unwrap();
        assert!(allowed.allows_name("HOOKS.internal."));
        assert!(!allowed.allows_name("other.internal"));
        assert_eq!(allowed.refusal("127.0.0.1".parse().unwrap()), None);
        assert_eq!(allowed.refusal("::ffff:127.0.0.1".parse().unwrap()), None);
        assert_eq!(allowed.refusal("10.9.8.7".parse().unwrap()), None);
        assert_eq!(allowed.refusal("127.0.0.2".parse().unwrap()), Some("loopback"));
        assert_eq!(allowed.refusal("8.8.8.8".parse().unwrap()), None);
        assert_eq!(allowed.to_string(), "hooks.internal,127.0.0.1/32,10.0.0.0/8");
        assert_eq!("".parse::<AllowedHosts>().unwrap(), AllowedHosts::default());
        assert!("http://x/".parse::<AllowedHosts>().is_err());
    }

    #[tokio::test]
    async fn saving_refuses_internal_targets_and_names_the_class() {
        let none = AllowedHosts::default();
        for (url, needle) in [
            ("http://127.0.0.1:8080/h", "`127.0.0.1` is a loopback address"),
            ("http://169.254.169.254/", "link-local"),
            ("http://[::1]/", "`::1` is a loopback address"),
            ("http://10.0.0.1/", "private (RFC 1918)"),
            ("http://0x7f.1/", "loopback"),
            ("http://[::ffff:7f00:1]/", "loopback"),
            ("http://localhost:9/h", "`localhost` resolves to"),
        ] {
            let err = check_url(url, &none).await.unwrap_err();
            assert!(
                err.contains(needle) && err.contains("WEBHOOK_ALLOWED_HOSTS"),
                "{url}: {err}"
            );
        }
        assert!(check_url("https://8.8.8.8/h", &none).await.is_ok());
        let allowed: AllowedHosts = "127.0.0.1,::1".parse().unwrap();
        assert!(check_url("http://127.0.0.1:8080/h", &allowed).await.is_ok());
        assert!(
            check_url("http://localhost:8080/h", &"localhost".parse().unwrap())
                .await
                .is_ok()
        );
        assert_eq!(literal_refusal("http://127.0.0.1:1/", &none), Some(Refused));
        assert_eq!(literal_refusal("http://127.0.0.1:1/", &allowed), None);
        assert_eq!(
            literal_refusal("http://localhost:1/", &none),
            None,
            "names are judged when resolved"
        );
    }
}

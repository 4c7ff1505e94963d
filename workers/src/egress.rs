//! The webhook client's guard at connection time: names resolve through [`GuardedResolver`],
//! which drops every address that is not public (or allowed by the operator), so a name that
//! passed when its URL was saved cannot lead inside later (DNS rebinding). Addresses written in
//! the URL never reach a resolver and are checked before sending
//! ([`wafleet_core::egress::literal_refusal`]).

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use wafleet_core::egress::{AllowedHosts, Refused};

/// Resolves with the system resolver and keeps only the addresses a webhook may reach.
pub(crate) struct GuardedResolver {
    allowed: Arc<AllowedHosts>,
}

impl GuardedResolver {
    /// A resolver that lets through public addresses and those `allowed` lists.
    pub(crate) fn new(allowed: AllowedHosts) -> Self {
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
                tracing::info!(host, "a webhook host resolved to no address it may reach");
                return Err(Box::new(Refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

/// The addresses of `host` a webhook may connect to.
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
pub(crate) fn is_refusal(err: &(dyn std::error::Error + 'static)) -> bool {
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
}

//! The WebSocket to WhatsApp: the stock tokio transport with a deadline on connecting, failures
//! reported as [`LinkEvent::Disconnected`], and a quick reachability check before a session starts.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use wafleet_core::link::{LinkError, LinkEvent};
use whatsapp_rust::transport::{TokioWebSocketTransportFactory, Transport, TransportEvent, TransportFactory};

/// The stock factory, bounded by a connect deadline. the client retries failed connections on its
/// own, silently; this reports each failure so that the session's owner sees it.
pub(crate) struct TimedTransportFactory {
    /// The stock WebSocket factory, with our URL.
    pub inner: TokioWebSocketTransportFactory,
    /// The URL, for messages.
    pub url: String,
    /// Deadline for the WebSocket (TCP + TLS + upgrade).
    pub timeout: Duration,
    /// Where failures are reported.
    pub events: mpsc::UnboundedSender<LinkEvent>,
}

#[async_trait]
impl TransportFactory for TimedTransportFactory {
    async fn create_transport(
        &self,
    ) -> Result<(Arc<dyn Transport>, async_channel::Receiver<TransportEvent>), anyhow::Error> {
        let outcome = match tokio::time::timeout(self.timeout, self.inner.create_transport()).await {
            Ok(result) => result,
            Err(_) => Err(anyhow::anyhow!("no connection within {:?}", self.timeout)),
        };
        if let Err(e) = &outcome {
            let reason = format!("cannot connect to {}: {e:#}", self.url);
            tracing::warn!(%reason, "WhatsApp connection failed");
            let _ = self.events.send(LinkEvent::Disconnected { reason });
        }
        outcome
    }
}

/// Host and port of a `ws://` or `wss://` URL.
pub(crate) fn host_port(url: &str) -> Result<(String, u16), LinkError> {
    let invalid = || LinkError::Invalid(format!("`{url}` is not a ws:// or wss:// URL"));
    let (default_port, rest) = if let Some(rest) = url.strip_prefix("wss://") {
        (443, rest)
    } else if let Some(rest) = url.strip_prefix("ws://") {
        (80, rest)
    } else {
        return Err(invalid());
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        // An IPv6 literal without port (`[::1]`) has colons but ends with `]`.
        Some((host, port)) if !port.ends_with(']') => (host, port.parse().map_err(|_| invalid())?),
        _ => (authority, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(invalid());
    }
    Ok((host.to_owned(), port))
}

/// Fails fast with [`LinkError::Transient`] when nothing answers at `url`, so that opening a
/// session without network is an error rather than silent retries.
pub(crate) async fn check_reachable(url: &str, timeout: Duration) -> Result<(), LinkError> {
    let (host, port) = host_port(url)?;
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), port))).await {
        Ok(Ok(_stream)) => Ok(()),
        Ok(Err(e)) => Err(LinkError::Transient(format!("cannot reach WhatsApp at {url}: {e}"))),
        Err(_) => Err(LinkError::Transient(format!(
            "cannot reach WhatsApp at {url}: no answer within {timeout:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_and_port() {
        assert_eq!(
            host_port("wss://web.whatsapp.com/ws/chat").unwrap(),
            ("web.whatsapp.com".into(), 443)
        );
        assert_eq!(host_port("ws://127.0.0.1:9/ws").unwrap(), ("127.0.0.1".into(), 9));
        assert_eq!(host_port("ws://[::1]:8080").unwrap(), ("::1".into(), 8080));
        assert_eq!(host_port("ws://[::1]/x").unwrap(), ("::1".into(), 80));
        assert!(matches!(host_port("http://x"), Err(LinkError::Invalid(_))));
        assert!(matches!(host_port("ws://:80"), Err(LinkError::Invalid(_))));
    }
}

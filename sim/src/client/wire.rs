//! Dialling the simulator and exchanging frames.

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wafleet_core::link::{Jid, LinkError};

use super::LinkOptions;
use crate::protocol::{ClientFrame, HelloMode, ServerFrame};

/// A session's socket.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What `sim` keeps in `link_credentials`.
#[derive(Serialize, Deserialize)]
pub(crate) struct Credentials {
    /// The device token.
    pub token: String,
    /// The account's JID.
    pub jid: Jid,
}

/// Opens a socket to `url`, quickly failing as [`LinkError::Transient`].
pub(crate) async fn dial(url: &str, options: &LinkOptions) -> Result<Ws, LinkError> {
    let config = WebSocketConfig::default()
        .read_buffer_size(options.ws_buffer_bytes)
        .write_buffer_size(options.ws_buffer_bytes);
    let connect = tokio_tungstenite::connect_async_with_config(url, Some(config), true);
    match tokio::time::timeout(options.connect_timeout, connect).await {
        Err(_) => Err(LinkError::Transient(format!(
            "the simulator at {url} did not answer within {:?}",
            options.connect_timeout
        ))),
        Ok(Err(err)) => Err(LinkError::Transient(format!(
            "cannot reach the simulator at {url}: {err}"
        ))),
        Ok(Ok((ws, _))) => Ok(ws),
    }
}

/// Writes one frame.
pub(crate) async fn send(ws: &mut Ws, frame: &ClientFrame) -> Result<(), LinkError> {
    let text = serde_json::to_string(frame).map_err(|err| LinkError::Invalid(format!("encoding a frame: {err}")))?;
    ws.send(Message::text(text))
        .await
        .map_err(|err| LinkError::Transient(format!("writing to the simulator: {err}")))
}

/// Dials and says hello.
pub(crate) async fn hello(url: &str, options: &LinkOptions, mode: HelloMode) -> Result<Ws, LinkError> {
    let mut ws = dial(url, options).await?;
    send(&mut ws, &ClientFrame::Hello { mode }).await?;
    Ok(ws)
}

/// The outcome of resuming a linked device.
pub(crate) enum Resume {
    /// Live; replayed messages follow on the socket.
    Connected(Box<Ws>),
    /// The device must pair again.
    Refused {
        /// Why.
        reason: String,
        /// The account is banned.
        banned: bool,
    },
}

/// Dials, presents `token` and waits for the verdict.
pub(crate) async fn resume(url: &str, options: &LinkOptions, token: &str) -> Result<Resume, LinkError> {
    let mut ws = hello(
        url,
        options,
        HelloMode::Connect {
            token: token.to_owned(),
        },
    )
    .await?;
    let first = tokio::time::timeout(options.connect_timeout, ws.next())
        .await
        .map_err(|_| LinkError::Transient("the simulator did not confirm the connection in time".into()))?;
    let text = match first {
        Some(Ok(Message::Text(text))) => text,
        Some(Ok(other)) => return Err(LinkError::Transient(format!("unexpected first frame: {other:?}"))),
        Some(Err(err)) => {
            return Err(LinkError::Transient(format!(
                "connection to the simulator failed: {err}"
            )));
        }
        None => return Err(LinkError::Transient("the simulator closed the connection".into())),
    };
    match serde_json::from_str::<ServerFrame>(text.as_str()) {
        Ok(ServerFrame::Connected { .. }) => Ok(Resume::Connected(Box::new(ws))),
        Ok(ServerFrame::Refused { reason, banned }) => Ok(Resume::Refused { reason, banned }),
        Ok(other) => Err(LinkError::Transient(format!("unexpected first frame: {other:?}"))),
        Err(err) => Err(LinkError::Transient(format!(
            "undecodable frame from the simulator: {err}"
        ))),
    }
}

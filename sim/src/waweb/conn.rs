//! One WebSocket: the Noise handshake, then encrypted nodes in both directions until either
//! side closes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::Network;
use super::model::Out;
use super::noise::{Progress, ServerHandshake};

/// How long a closing connection waits for the client to close its side.
const LINGER: Duration = Duration::from_secs(5);

/// How long a client may take over the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Serves one connection until it closes; errors end it (and are logged at debug: clients that
/// go away mid-handshake are normal).
pub(crate) async fn serve(net: Arc<Network>, stream: TcpStream) {
    if let Err(err) = run(net, stream).await {
        tracing::debug!(error = %format!("{err:#}"), "WhatsApp Web connection ended");
    }
}

async fn run(net: Arc<Network>, stream: TcpStream) -> anyhow::Result<()> {
    let buffer = net.config.ws_buffer_bytes;
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(buffer)
        .write_buffer_size(buffer);
    let mut ws = tokio_tungstenite::accept_async_with_config(stream, Some(ws_config))
        .await
        .context("WebSocket upgrade")?;

    let established = {
        let mut handshake = ServerHandshake::new(&net.identity);
        loop {
            let message = tokio::time::timeout(HANDSHAKE_TIMEOUT, ws.next())
                .await
                .context("handshake timed out")?;
            let data = match message {
                Some(Ok(Message::Binary(data))) => data,
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => continue,
                Some(Err(err)) => return Err(err.into()),
            };
            match handshake.feed(&data)? {
                Progress::More => {}
                Progress::Reply(bytes) => ws.send(Message::binary(bytes)).await?,
                Progress::Established(established) => break established,
                Progress::ReplyEstablished(bytes, established) => {
                    ws.send(Message::binary(bytes)).await?;
                    break established;
                }
            }
        }
    };
    net.lock().handshakes.count(established.pattern);
    let mut codec = established.codec;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let conn = net.open(established.client_static, &established.payload, tx);

    let outcome: anyhow::Result<()> = async {
        loop {
            while let Some(node) = codec.next_node()? {
                net.handle(conn, node).await;
            }
            tokio::select! {
                message = ws.next() => match message {
                    Some(Ok(Message::Binary(data))) => codec.feed(&data),
                    Some(Ok(Message::Close(_))) | None => return Ok(()),
                    Some(Ok(_)) => {}
                    Some(Err(err)) => return Err(err.into()),
                },
                out = rx.recv() => match out {
                    Some(Out::Node(node)) => ws.send(Message::binary(codec.seal(&node)?)).await?,
                    Some(Out::Last(node)) => {
                        ws.send(Message::binary(codec.seal(&node)?)).await?;
                        linger(&mut ws).await;
                        return Ok(());
                    }
                    None => {
                        linger(&mut ws).await;
                        return Ok(());
                    }
                },
            }
        }
    }
    .await;
    net.closed(conn);
    outcome
}

/// Closes our side and reads until the client closes its own. Dropping the socket at once
/// would make the kernel answer the client's next write with a reset, which discards what the
/// client has not read yet: the very stream error that says why the connection ends.
async fn linger(ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>) {
    let _ = ws.close(None).await;
    let _ = tokio::time::timeout(LINGER, async { while let Some(Ok(_)) = ws.next().await {} }).await;
}

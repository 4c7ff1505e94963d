//! One task per device WebSocket: reads client frames, writes queued server frames.

use std::sync::Arc;
use std::time::Duration;

use crate::control::ActionRecord;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::protocol::{ClientFrame, ErrorClass, ServerFrame};

use super::Sim;
use super::traffic::SendRequest;
use super::world::{Conn, Outbound};

/// `GET /ws`: upgrades to a device session with small buffers (idle sessions stay cheap).
pub(crate) async fn upgrade(State(sim): State<Arc<Sim>>, ws: WebSocketUpgrade) -> Response {
    let buffer = sim.config.ws_buffer_bytes;
    ws.read_buffer_size(buffer)
        .write_buffer_size(buffer)
        .max_message_size(16 << 20)
        .on_upgrade(move |socket| serve(sim, socket))
}

async fn serve(sim: Arc<Sim>, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = {
        let mut w = sim.lock();
        if w.closed {
            return;
        }
        w.next_conn += 1;
        w.counters.connections += 1;
        let id = w.next_conn;
        w.conns.insert(id, Conn { tx, token: None });
        id
    };
    async {
        let mut greeted = false;
        loop {
            tokio::select! {
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<ClientFrame>(text.as_str()) {
                        Ok(frame) => handle(&sim, id, frame, &mut greeted).await,
                        Err(err) => {
                            tracing::warn!(%err, "undecodable frame; closing");
                            break;
                        }
                    },
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
                outgoing = rx.recv() => match outgoing {
                    Some(Outbound::Frame(text)) => {
                        if socket.send(Message::Text(text.into())).await.is_err() {
                            break;
                        }
                    }
                    Some(Outbound::Close) | None => break,
                },
            }
        }
        sim.lock().remove_conn(id);
        tracing::debug!("connection closed");
    }
    .instrument(tracing::info_span!("sim_conn", conn = id))
    .await;
}

async fn handle(sim: &Arc<Sim>, conn: u64, frame: ClientFrame, greeted: &mut bool) {
    if let ClientFrame::Hello { mode } = frame {
        if std::mem::replace(greeted, true) {
            tracing::warn!("second hello ignored");
        } else {
            sim.hello(conn, mode);
        }
        return;
    }
    if let ClientFrame::Ack { id } = &frame {
        sim.ack(conn, id);
        return;
    }
    if sim.config.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(sim.config.latency_ms)).await;
    }
    match frame {
        ClientFrame::Send {
            req,
            id,
            to,
            text,
            media,
            structured,
            forwarded,
        } => sim.send(
            conn,
            SendRequest {
                req,
                id,
                to,
                text,
                media,
                structured,
                forwarded,
            },
        ),
        ClientFrame::Check { req, phones } => sim.check(conn, req, &phones),
        ClientFrame::Logout { req } => sim.logout(conn, req),
        ClientFrame::Restrictions { req } => sim.restrictions(conn, req),
        ClientFrame::UserInfo { req, phone } => sim.user_info(conn, req, &phone),
        ClientFrame::Privacy { req } => sim.privacy(conn, req),
        ClientFrame::Picture { req, phone, preview } => sim.picture(conn, req, &phone, preview),
        ClientFrame::SetPicture { req, jpeg } => sim.set_picture(conn, req, &jpeg),
        ClientFrame::BusinessProfile { req, phone } => sim.business_profile(conn, req, &phone),
        ClientFrame::Read { req, chat, ids } => sim.read(conn, req, &chat, ids),
        ClientFrame::ChatPresence { req, chat, typing } => sim.chat_presence(conn, req, &chat, typing),
        ClientFrame::PushName { req, name } => sim.push_name(conn, req, &name),
        ClientFrame::Presence { req, available } => sim.presence(conn, req, available),
        ClientFrame::ChatSetting { req, chat, setting } => sim.chat_setting(conn, req, &chat, setting),
        ClientFrame::RejectCall { req, caller, call_id } => sim.reject_call(conn, req, caller, call_id),
        ClientFrame::Disappearing { req, chat, seconds } => {
            sim.act(conn, req, &chat, ActionRecord::disappearing(&chat, seconds))
        }
        ClientFrame::React {
            req,
            chat,
            target,
            from_me: _,
            emoji,
        } => sim.act(conn, req, &chat, ActionRecord::reaction(&chat, target, emoji)),
        ClientFrame::Revoke { req, chat, target } => sim.act(conn, req, &chat, ActionRecord::revoke(&chat, target)),
        ClientFrame::Edit {
            req,
            chat,
            target,
            text,
        } => sim.act(conn, req, &chat, ActionRecord::edit(&chat, target, text)),
        ClientFrame::Hello { .. } | ClientFrame::Ack { .. } => {
            let w = sim.lock();
            let frame = ServerFrame::Error {
                req: 0,
                class: ErrorClass::Invalid,
                message: "unexpected frame".into(),
            };
            w.push(conn, &frame);
        }
    }
}

//! Turning the simulator's frames into events, and what pairing and logging out store.

use wafleet_core::link::{Ack, LinkError, LinkEvent};

use super::{Exit, Task};
use crate::client::LINK_NAME;
use crate::client::session::Command;
use crate::client::wire::{self, Credentials, Ws};
use crate::protocol::{ClientFrame, ServerFrame};

impl Task {
    /// Handles one server frame; `Some` ends serving this socket.
    pub(super) async fn on_frame(&mut self, ws: &mut Ws, frame: ServerFrame) -> Option<Exit> {
        match frame {
            ServerFrame::Qr { code, valid_for_ms } => {
                let valid_for = std::time::Duration::from_millis(valid_for_ms);
                self.emit(LinkEvent::QrCode { code, valid_for }).await;
            }
            ServerFrame::PairCode { code } => self.emit(LinkEvent::PairCode { code }).await,
            ServerFrame::Paired { jid, token } => {
                let credentials = Credentials {
                    token: token.clone(),
                    jid: jid.clone(),
                };
                if let Err(reason) = self.store(&credentials).await {
                    let _ = ws.close(None).await;
                    self.end(LinkError::Device(reason.clone()));
                    self.emit(LinkEvent::PairError { reason }).await;
                    return Some(Exit::Done);
                }
                self.token = Some(token);
                tracing::info!(%jid, "paired");
                self.emit(LinkEvent::PairSuccess { jid }).await;
            }
            ServerFrame::PairError { reason } => {
                self.end(LinkError::Device(format!("pairing failed: {reason}")));
                self.emit(LinkEvent::PairError { reason }).await;
                return Some(Exit::Done);
            }
            ServerFrame::Connected { .. } => self.emit(LinkEvent::Connected).await,
            ServerFrame::Message { message } => {
                if message.chat.is_personal() {
                    let ack = self.ack_when_durable(message.id.clone());
                    self.emit(LinkEvent::Message { message, ack }).await;
                } else if let Err(err) = wire::send(ws, &ClientFrame::Ack { id: message.id }).await {
                    // Not a personal chat: never stored, so acknowledged at once.
                    return Some(Exit::Lost(err.to_string()));
                }
            }
            ServerFrame::Receipt {
                id,
                kind,
                chat,
                ids,
                at,
            } => {
                let ack = self.ack_when_durable(id);
                self.emit(LinkEvent::Receipt {
                    kind,
                    chat,
                    message_ids: ids,
                    at,
                    ack,
                })
                .await;
            }
            ServerFrame::Call { call } => self.emit(LinkEvent::Call { call }).await,
            ServerFrame::ContactName { id, jid, name } => {
                let ack = self.ack_when_durable(id);
                self.emit(LinkEvent::ContactName { jid, name, ack }).await;
            }
            ServerFrame::LidMapping { id, lid, phone } => {
                let ack = self.ack_when_durable(id);
                self.emit(LinkEvent::LidMapping { lid, phone, ack }).await;
            }
            ServerFrame::LoggedOut { reason, banned } | ServerFrame::Refused { reason, banned } => {
                self.logged_out(reason, banned).await;
                return Some(Exit::Done);
            }
            ServerFrame::Replaced => {
                self.end(LinkError::Device("another connection took over this device".into()));
                let reason = "replaced by another connection".to_owned();
                self.emit(LinkEvent::Disconnected { reason }).await;
                return Some(Exit::Done);
            }
            ServerFrame::LogoutDone { req } => {
                self.forget().await;
                self.end(LinkError::Device("logged out".into()));
                if let Some(reply) = self.waiting.remove(&req) {
                    let _ = reply.send(Ok(ServerFrame::LogoutDone { req }));
                }
                let reason = "logged out by this device".to_owned();
                self.emit(LinkEvent::LoggedOut { reason, banned: false }).await;
                return Some(Exit::Done);
            }
            answer @ (ServerFrame::Sent { .. }
            | ServerFrame::Checked { .. }
            | ServerFrame::UserInfo { .. }
            | ServerFrame::Privacy { .. }
            | ServerFrame::Picture { .. }
            | ServerFrame::PictureSet { .. }
            | ServerFrame::BusinessProfile { .. }
            | ServerFrame::Restrictions { .. }
            | ServerFrame::Done { .. }
            | ServerFrame::Error { .. }) => {
                let req = match &answer {
                    ServerFrame::Sent { req, .. }
                    | ServerFrame::Checked { req, .. }
                    | ServerFrame::UserInfo { req, .. }
                    | ServerFrame::Privacy { req, .. }
                    | ServerFrame::Picture { req, .. }
                    | ServerFrame::PictureSet { req, .. }
                    | ServerFrame::BusinessProfile { req, .. }
                    | ServerFrame::Restrictions { req, .. }
                    | ServerFrame::Done { req }
                    | ServerFrame::Error { req, .. } => *req,
                    _ => 0,
                };
                match self.waiting.remove(&req) {
                    Some(reply) => {
                        let _ = reply.send(Ok(answer));
                    }
                    None => tracing::warn!(req, "answer to no request"),
                }
            }
        }
        None
    }

    /// An [`Ack`] that, once fired, acknowledges `id` (a message's or a receipt's) to the server.
    fn ack_when_durable(&self, id: String) -> Ack {
        let (ack, done) = Ack::new();
        let sender = self.ack_sender.clone();
        tokio::spawn(async move {
            if done.await.is_ok()
                && let Some(sender) = sender.upgrade()
            {
                let _ = sender.send(Command::Ack(id)).await;
            }
        });
        ack
    }

    async fn store(&self, credentials: &Credentials) -> Result<(), String> {
        let data = serde_json::to_string(credentials).map_err(|err| format!("encoding credentials: {err}"))?;
        // Boxed, like every rare call here: the task's future stays small for idle sessions.
        Box::pin(self.db.put_link_credentials(&self.keys, self.device, LINK_NAME, &data))
            .await
            .map_err(|err| format!("cannot store the credentials of device {}: {err}", self.device))
    }

    async fn forget(&mut self) {
        self.token = None;
        if let Err(err) = Box::pin(self.db.delete_link_credentials(self.device)).await {
            tracing::error!(%err, "cannot delete the credentials of a logged-out device");
        }
    }

    pub(super) async fn logged_out(&mut self, reason: String, banned: bool) {
        self.forget().await;
        let what = if banned { "banned" } else { "logged out" };
        self.end(LinkError::Device(format!("{what}: {reason}")));
        self.fail_waiting(what);
        tracing::info!(%reason, banned, "logged out");
        self.emit(LinkEvent::LoggedOut { reason, banned }).await;
    }
}

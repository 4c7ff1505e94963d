//! A session's task: owns the socket, turns frames into events in order, answers requests,
//! acknowledges stored messages and reconnects after drops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tracing::Instrument;
use wafleet_core::Db;
use wafleet_core::keys::KeyRing;
use wafleet_core::link::{LinkError, LinkEvent};
use wafleet_core::sync;
use wafleet_core::types::DeviceId;

mod frames;

use super::LinkOptions;
use super::session::{Command, Ended, Request, SimSession};
use super::wire::{self, Resume, Ws};
use crate::protocol::{ClientFrame, ServerFrame};

/// How serving a socket ended.
enum Exit {
    /// The connection dropped; reconnect if linked.
    Lost(String),
    /// The session is over.
    Done,
}

/// The state of one session's task.
pub(crate) struct Task {
    /// The device this session speaks for.
    device: DeviceId,
    /// The simulator's WebSocket URL, for reconnecting.
    url: String,
    /// Where credentials live.
    db: Db,
    /// Seals the credentials.
    keys: KeyRing,
    /// Timings.
    options: LinkOptions,
    /// The device token, once linked.
    token: Option<String>,
    /// The session's event stream, in order.
    events: mpsc::Sender<LinkEvent>,
    /// Calls from the session.
    commands: mpsc::Receiver<Command>,
    /// For acks fired later; weak so that dropping the session ends the task.
    ack_sender: mpsc::WeakSender<Command>,
    /// Requests waiting for their answer, by request number.
    waiting: HashMap<u64, oneshot::Sender<Result<ServerFrame, LinkError>>>,
    /// The last request number used.
    next_req: u64,
    /// Why calls fail once this task has ended.
    ended: Ended,
}

impl Task {
    /// A session and the task that will serve it.
    pub(crate) fn new(
        device: DeviceId,
        url: String,
        db: Db,
        keys: KeyRing,
        options: LinkOptions,
        token: Option<String>,
    ) -> (SimSession, Task) {
        let (events_tx, events_rx) = mpsc::channel(options.event_capacity.max(1));
        let (commands_tx, commands_rx) = mpsc::channel(64);
        let ended: Ended = Arc::new(Mutex::new(None));
        let session = SimSession {
            device,
            events: Some(events_rx),
            commands: commands_tx.clone(),
            ended: Arc::clone(&ended),
            request_timeout: options.request_timeout,
        };
        let task = Task {
            device,
            url,
            db,
            keys,
            options,
            token,
            events: events_tx,
            commands: commands_rx,
            ack_sender: commands_tx.downgrade(),
            waiting: HashMap::new(),
            next_req: 0,
            ended,
        };
        (session, task)
    }

    /// Serves `ws` in a task of its own; `connected` emits [`LinkEvent::Connected`] first.
    pub(crate) fn start(self, ws: Ws, connected: bool) {
        let span = tracing::info_span!("sim_session", device = %self.device);
        tokio::spawn(self.run(ws, connected).instrument(span));
    }

    async fn run(mut self, mut ws: Ws, connected: bool) {
        if connected {
            self.emit(LinkEvent::Connected).await;
        }
        loop {
            match self.serve(&mut ws).await {
                Exit::Done => return,
                Exit::Lost(reason) => {
                    self.fail_waiting("the connection to the simulator dropped");
                    if self.token.is_none() {
                        self.end(LinkError::Device("pairing did not finish".into()));
                        let reason = format!("connection lost during pairing: {reason}");
                        self.emit(LinkEvent::PairError { reason }).await;
                        return;
                    }
                    tracing::info!(%reason, "disconnected; reconnecting");
                    self.emit(LinkEvent::Disconnected { reason }).await;
                    match Box::pin(self.reconnect()).await {
                        Some(new) => {
                            ws = new;
                            self.emit(LinkEvent::Connected).await;
                        }
                        None => return,
                    }
                }
            }
        }
    }

    async fn emit(&self, event: LinkEvent) {
        // A consumer that dropped the receiver is not interested; the session still works.
        let _ = self.events.send(event).await;
    }

    fn end(&self, why: LinkError) {
        sync::lock(&self.ended).get_or_insert(why);
    }

    fn fail_waiting(&mut self, why: &str) {
        for (_, reply) in self.waiting.drain() {
            let _ = reply.send(Err(LinkError::Transient(why.to_owned())));
        }
    }

    async fn serve(&mut self, ws: &mut Ws) -> Exit {
        loop {
            tokio::select! {
                frame = ws.next() => match frame {
                    Some(Ok(WsMessage::Text(text))) => match serde_json::from_str::<ServerFrame>(text.as_str()) {
                        Ok(frame) => {
                            if let Some(exit) = Box::pin(self.on_frame(ws, frame)).await {
                                return exit;
                            }
                        }
                        Err(err) => tracing::warn!(%err, "undecodable frame from the simulator"),
                    },
                    Some(Ok(WsMessage::Close(_))) | None => return Exit::Lost("closed by the simulator".into()),
                    Some(Err(err)) => return Exit::Lost(err.to_string()),
                    Some(Ok(_)) => {}
                },
                command = self.commands.recv() => match command {
                    None => {
                        let _ = ws.close(None).await;
                        self.end(LinkError::Invalid("the session was dropped".into()));
                        return Exit::Done;
                    }
                    Some(Command::Close(done)) => {
                        let _ = ws.close(None).await;
                        self.end(LinkError::Invalid("the session is closed".into()));
                        self.fail_waiting("the session is closed");
                        let _ = done.send(());
                        return Exit::Done;
                    }
                    Some(Command::Ack(id)) => {
                        if let Err(err) = wire::send(ws, &ClientFrame::Ack { id }).await {
                            return Exit::Lost(err.to_string());
                        }
                    }
                    Some(Command::Request(request, reply)) => {
                        self.next_req += 1;
                        let req = self.next_req;
                        let frame = match *request {
                            Request::Send {
                                id,
                                to,
                                text,
                                media,
                                structured,
                                forwarded,
                            } => ClientFrame::Send {
                                req,
                                id: Some(id),
                                to,
                                text,
                                media,
                                structured,
                                forwarded,
                            },
                            Request::Check { phones } => ClientFrame::Check { req, phones },
                            Request::Logout => ClientFrame::Logout { req },
                            Request::Restrictions => ClientFrame::Restrictions { req },
                            Request::UserInfo { phone } => ClientFrame::UserInfo { req, phone },
                            Request::Privacy => ClientFrame::Privacy { req },
                            Request::Picture { phone, preview } => ClientFrame::Picture { req, phone, preview },
                            Request::SetPicture { jpeg } => ClientFrame::SetPicture { req, jpeg },
                            Request::BusinessProfile { phone } => ClientFrame::BusinessProfile { req, phone },
                            Request::Read { chat, ids } => ClientFrame::Read { req, chat, ids },
                            Request::ChatPresence { chat, typing } => ClientFrame::ChatPresence { req, chat, typing },
                            Request::PushName { name } => ClientFrame::PushName { req, name },
                            Request::Presence { available } => ClientFrame::Presence { req, available },
                            Request::ChatSetting { chat, setting } => ClientFrame::ChatSetting { req, chat, setting },
                            Request::Disappearing { chat, seconds } => ClientFrame::Disappearing { req, chat, seconds },
                            Request::RejectCall { caller, call_id } => ClientFrame::RejectCall { req, caller, call_id },
                            Request::React {
                                chat,
                                target,
                                from_me,
                                emoji,
                            } => ClientFrame::React {
                                req,
                                chat,
                                target,
                                from_me,
                                emoji,
                            },
                            Request::Revoke { chat, target } => ClientFrame::Revoke { req, chat, target },
                            Request::Edit { chat, target, text } => ClientFrame::Edit {
                                req,
                                chat,
                                target,
                                text,
                            },
                        };
                        if let Err(err) = wire::send(ws, &frame).await {
                            let _ = reply.send(Err(err.clone()));
                            return Exit::Lost(err.to_string());
                        }
                        self.waiting.insert(req, reply);
                    }
                },
            }
        }
    }

    /// Reconnects with backoff, answering calls meanwhile; `None` when the session is over.
    async fn reconnect(&mut self) -> Option<Ws> {
        let mut delay = self.options.backoff_initial;
        loop {
            let pause = tokio::time::sleep(delay);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    () = &mut pause => break,
                    command = self.commands.recv() => match command {
                        None => {
                            self.end(LinkError::Invalid("the session was dropped".into()));
                            return None;
                        }
                        Some(Command::Close(done)) => {
                            self.end(LinkError::Invalid("the session is closed".into()));
                            let _ = done.send(());
                            return None;
                        }
                        // Unacknowledged messages come again after reconnecting.
                        Some(Command::Ack(_)) => {}
                        Some(Command::Request(_, reply)) => {
                            let why = "disconnected from the simulator; reconnecting".to_owned();
                            let _ = reply.send(Err(LinkError::Transient(why)));
                        }
                    },
                }
            }
            let token = self.token.clone()?;
            match Box::pin(wire::resume(&self.url, &self.options, &token)).await {
                Ok(Resume::Connected(ws)) => return Some(*ws),
                Ok(Resume::Refused { reason, banned }) => {
                    self.logged_out(reason, banned).await;
                    return None;
                }
                Err(err) => {
                    tracing::debug!(%err, ?delay, "reconnection failed");
                    delay = (delay * 2).min(self.options.backoff_max);
                }
            }
        }
    }
}

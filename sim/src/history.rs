//! What WhatsApp pushes to a newly linked device (history sync), the same on the simulator's own
//! link and on its WhatsApp Web front end: `chats` personal chats from before, one an hour
//! apart (a line from the contact, the account's answer a minute later), and one message of a
//! group, which a client that keeps personal chats only must drop.

use wafleet_core::link::{IncomingMessage, Jid, MessageKind, USER_SERVER};
use wafleet_core::types::Timestamp;

/// The group whose message every history push carries.
pub(crate) const GROUP: &str = "120363198999999@g.us";

/// The number of the `i`th contact of a history push (digits).
pub(crate) fn contact(i: usize) -> String {
    format!("60198{i:06}")
}

/// The messages of a history push to a device of `account` (digits), oldest chat first; empty
/// when `chats` is 0. Each has a fresh id and is marked as history.
pub(crate) fn recent(account: &str, chats: usize) -> Vec<IncomingMessage> {
    let jid = |digits: &str| Jid(format!("{digits}@{USER_SERVER}"));
    let hours = i64::try_from(chats).unwrap_or(0);
    let start = Timestamp::now().plus_secs(-3600 * hours);
    let line = |chat: Jid, sender: Jid, text: String, sent_at: Timestamp| IncomingMessage {
        id: crate::server::message_id(),
        chat,
        sender,
        sender_alt: None,
        from_me: false,
        push_name: None,
        kind: MessageKind::Text,
        text: Some(text),
        sent_at,
        history: true,
        media: None,
    };
    let mut history = Vec::new();
    for i in 0..chats {
        let contact = jid(&contact(i));
        let at = start.plus_secs(3600 * i64::try_from(i).unwrap_or(0));
        history.push(line(contact.clone(), contact.clone(), format!("Hello again ({i})"), at));
        history.push(IncomingMessage {
            from_me: true,
            ..line(
                contact,
                jid(account),
                format!("Thanks, talk soon ({i})"),
                at.plus_secs(60),
            )
        });
    }
    if chats > 0 {
        let member = jid("60198999999");
        history.push(line(Jid(GROUP.into()), member, "Group news from before".into(), start));
    }
    history
}

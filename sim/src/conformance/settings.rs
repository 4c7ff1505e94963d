//! The account's own settings of a chat (archive, pin, star, delete for me), a chat's
//! disappearing-messages timer, and calls that ring on the account.

use wafleet_core::link::{ChatSetting, IncomingCall, Jid, LinkEvent, MessageRef, Outgoing};
use wafleet_core::testing::eventually;
use wafleet_core::types::Timestamp;

use super::support::{EVENT_TIMEOUT, contact, pair, wait_for};
use super::{Action, Contact, Harness};

/// Archiving, pinning, starring and deleting for me reach the account's synced state as the
/// phone reads it, in order, each with the chat and the message it is about; a disappearing
/// timer set and turned off reaches the chat as the messages that carry it.
pub async fn chat_settings_and_disappearing_timer(h: &dyn Harness) {
    let mut paired = pair(h).await;
    let person = contact(h, Contact::OnWhatsApp).await;
    let chat = Jid::for_phone(&person);
    let theirs = h
        .phones()
        .write(&person, &paired.phone, "is the shop open on Sunday?")
        .await
        .expect("inject");
    let LinkEvent::Message { ack, .. } = wait_for(&mut paired.events, "the message", |e| {
        matches!(e, LinkEvent::Message { .. })
    })
    .await
    else {
        unreachable!()
    };
    ack.done();
    let mine = paired
        .session
        .send(&Outgoing::text(&chat, "yes, from 10"))
        .await
        .expect("send");
    let theirs = MessageRef {
        id: theirs,
        from_me: false,
    };
    let mine = MessageRef {
        id: mine,
        from_me: true,
    };
    // WhatsApp carries a message's time in whole seconds.
    let sent_at = Timestamp(Timestamp::now().millis() / 1000 * 1000);
    let settings = [
        ChatSetting::Archived { archived: true },
        ChatSetting::Pinned { pinned: true },
        ChatSetting::Starred {
            message: theirs.clone(),
            starred: true,
        },
        ChatSetting::Starred {
            message: theirs,
            starred: false,
        },
        ChatSetting::DeletedForMe {
            message: mine,
            sent_at: Some(sent_at),
        },
        ChatSetting::Pinned { pinned: false },
        ChatSetting::Archived { archived: false },
    ];
    for setting in &settings {
        paired
            .session
            .set_chat_setting(&chat, setting)
            .await
            .unwrap_or_else(|e| panic!("{setting:?}: {e:?}"));
    }
    let expected: Vec<(Jid, ChatSetting)> = settings.iter().map(|s| (chat.clone(), s.clone())).collect();
    eventually(EVENT_TIMEOUT, "every setting reaches the account's state", || async {
        h.phones()
            .chat_settings(&paired.phone)
            .await
            .is_ok_and(|seen| seen == expected)
    })
    .await;

    for seconds in [86_400, 0] {
        paired
            .session
            .set_disappearing(&chat, seconds)
            .await
            .unwrap_or_else(|e| panic!("timer {seconds}: {e:?}"));
    }
    let timer = |seconds: &str| Action {
        chat: chat.clone(),
        kind: "disappearing".into(),
        target: String::new(),
        text: Some(seconds.into()),
    };
    let expected = [timer("86400"), timer("0")];
    eventually(EVENT_TIMEOUT, "both timers reach the chat", || async {
        h.phones()
            .actions(&paired.phone)
            .await
            .is_ok_and(|seen| seen.ends_with(&expected))
    })
    .await;
    paired.session.close().await;
}

/// A call rings on the device with its id, caller and kind, and declining it reaches the
/// network naming that call and caller.
pub async fn calls_ring_and_are_declined(h: &dyn Harness) {
    let mut paired = pair(h).await;
    let person = contact(h, Contact::OnWhatsApp).await;
    let call_id = h.phones().ring(&paired.phone, &person, true).await.expect("ring");
    let LinkEvent::Call { call } =
        wait_for(&mut paired.events, "the call", |e| matches!(e, LinkEvent::Call { .. })).await
    else {
        unreachable!()
    };
    let IncomingCall { id, from, video, .. } = &call;
    assert_eq!(id, &call_id, "{call:?}");
    assert_eq!(from, &Jid::for_phone(&person), "{call:?}");
    assert!(video, "a video call: {call:?}");
    paired.session.reject_call(from, id).await.expect("decline");
    let expected = [(call_id, Jid::for_phone(&person))];
    eventually(EVENT_TIMEOUT, "the rejection reaches the network", || async {
        h.phones()
            .rejected_calls(&paired.phone)
            .await
            .is_ok_and(|seen| seen == expected)
    })
    .await;
    paired.session.close().await;
}

//! The `Link` conformance suite (`wafleet_sim::conformance`) against the real client's adapter: the
//! unmodified client through `WaLink`, its state in wafleet's database, talking to the
//! simulator's WhatsApp Web front end over real sockets, on SQLite and on PostgreSQL. The checks
//! the front end or the client cannot support are named with the reason in
//! [`harness::UNCOVERED`], and `coverage` fails if a check is neither run nor named.

mod harness;

use wafleet_sim::conformance;

use harness::WawebHarness;

wafleet_sim::conformance_suite!(
    harness: WawebHarness,
    log: "wafleet_sim=debug,wafleet_wa=debug,whatsapp_rust=info,wacore=info",
    checks: [
        qr_pairing_with_refreshing_codes,
        pair_code_pairing,
        reconnect_from_another_link,
        incoming_message_acked_once_and_replayed_until_then,
        non_personal_chats_never_surface,
        send_text_gets_delivered_then_read,
        send_goes_out_under_the_chosen_id,
        receipt_acked_once_and_replayed_until_then,
        refusal_463,
        timelock_restricts_new_chats_only,
        image_with_caption,
        files_of_every_kind_are_sent,
        structured_messages_are_sent,
        push_name_then_presence,
        chat_settings_and_disappearing_timer,
        calls_ring_and_are_declined,
        forwarded_sends_are_marked,
        incoming_media_downloads,
        mark_read_sends_a_read_receipt,
        typing_shows_in_the_chat,
        react_edit_and_delete_for_everyone,
        check_numbers,
        user_info,
        privacy_settings,
        profile_picture,
        own_profile_picture_changes,
        business_profile,
        dropped_connection_reconnects,
        remote_logout,
        ban_after_fast_sends_to_strangers,
        unreachable_network_fails_fast,
    ],
);

/// Every check of the suite either runs above or is named as not covered, with the reason.
#[test]
fn coverage() {
    conformance::assert_coverage("WaLink against the WhatsApp Web front end", RUN, harness::UNCOVERED);
}

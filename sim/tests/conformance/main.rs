//! The `Link` conformance suite against `SimLink` and an in-process simulator over real
//! sockets on 127.0.0.1, on SQLite and on PostgreSQL (each test its own database and simulator).

use wafleet_sim::conformance::{self, SimHarness};

wafleet_sim::conformance_suite!(
    harness: SimHarness,
    log: "wafleet_sim=debug",
    checks: [
        qr_pairing_with_refreshing_codes,
        pair_code_pairing,
        reconnect_from_another_link,
        incoming_message_acked_once_and_replayed_until_then,
        non_personal_chats_never_surface,
        send_text_gets_delivered_then_read,
        send_goes_out_under_the_chosen_id,
        receipt_acked_once_and_replayed_until_then,
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
        refusal_463,
        timelock_restricts_new_chats_only,
        dropped_connection_reconnects,
        remote_logout,
        ban_after_fast_sends_to_strangers,
        unreachable_network_fails_fast,
    ],
);

/// The simulator's own link runs every check of the suite.
#[test]
fn coverage() {
    conformance::assert_coverage("SimLink", RUN, &[]);
}

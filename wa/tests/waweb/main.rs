//! The unmodified WhatsApp Web client (whatsapp-rust 0.7), through `WaLink` and `WaStore`, against the simulator's WhatsApp
//! Web front end (`wafleet_sim::waweb`) over real sockets on 127.0.0.1: the Noise handshake,
//! pairing, logging in again from stored credentials, and the rest of the protocol the link uses.
//! Every check runs on SQLite and on PostgreSQL storage.

mod chat;
#[path = "../common/mod.rs"]
mod common;
mod control;
mod dump;
mod failures;
mod keys;
mod media;
mod pairing;
mod support;
mod upkeep;

/// Declares `TESTS::sqlite::NAME` and `TESTS::postgres::NAME` for each check in `module`.
macro_rules! on_both_backends {
    ($tests:ident => $module:ident: $($name:ident),* $(,)?) => {
        mod $tests {
            mod sqlite {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        crate::$module::$name(wafleet_core::testing::Backend::Sqlite).await
                    }
                )*
            }
            mod postgres {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        crate::$module::$name(wafleet_core::testing::Backend::Postgres).await
                    }
                )*
            }
        }
    };
}

on_both_backends!(pairing_on => pairing:
    handshake_then_refreshing_qr_codes,
    qr_pairing_logs_in,
    restart_logs_in_without_pairing,
    stale_server_key_falls_back_to_xx,
    pair_code_links_and_logs_in_again,
    wrong_pair_code_links_nothing,
);

on_both_backends!(upkeep_on => upkeep: keepalive_and_prekeys, check_numbers_uses_usync);
on_both_backends!(chat_on => chat: text_both_ways_with_receipts);
on_both_backends!(failures_on => failures:
    remote_logout_while_connected,
    logged_out_while_offline_is_refused,
    replaced_connection,
    stream_error_then_reconnect,
    logout_from_wafleet_unlinks,
);
on_both_backends!(media_on => media: image_both_ways);
on_both_backends!(keys_on => keys:
    dump_holds_no_key_material,
    rotation_reseals_while_the_session_talks,
    plaintext_database_is_sealed_and_keeps_working,
);
on_both_backends!(control_on => control: control_api_links_by_qr_and_code);

//! Claiming a tick in `cron_runs`: one winner per (job, tick).

use wafleet_core::testing::{Backend, TestDb};
use wafleet_core::types::Timestamp;

async fn one_claim_wins(backend: Backend) {
    let t = TestDb::new(backend).await;
    let tick = Timestamp(1_800_000_000_000);
    let (a, b) = tokio::join!(
        t.db.claim_cron_tick("job", tick, "a"),
        t.db.claim_cron_tick("job", tick, "b")
    );
    let (a, b) = (a.expect("claim a"), b.expect("claim b"));
    assert!(a ^ b, "exactly one claim wins: a={a} b={b}");
    assert!(
        !t.db.claim_cron_tick("job", tick, "c").await.expect("late claim"),
        "a late claim loses"
    );

    // Another tick, or another job at the same tick, is a new claim.
    assert!(
        t.db.claim_cron_tick("job", tick.plus_secs(1), "a")
            .await
            .expect("next tick")
    );
    assert!(t.db.claim_cron_tick("other", tick, "b").await.expect("other job"));
    t.db.finish_cron_tick("job", tick).await.expect("finish");
}

async fn many_concurrent_claims(backend: Backend) {
    let t = TestDb::new(backend).await;
    let tick = Timestamp(1_800_000_000_000);
    let claims: Vec<_> = (0..8)
        .map(|i| {
            let db = t.db.clone();
            tokio::spawn(async move { db.claim_cron_tick("job", tick, &format!("r{i}")).await })
        })
        .collect();
    let mut won = 0;
    for claim in claims {
        if claim.await.expect("join").expect("claim") {
            won += 1;
        }
    }
    assert_eq!(won, 1);
}

async fn old_runs_are_deleted(backend: Backend) {
    let t = TestDb::new(backend).await;
    let now = Timestamp::now();
    assert!(
        t.db.claim_cron_tick("job", now.plus_secs(-8 * 24 * 3600), "a")
            .await
            .expect("old")
    );
    assert!(t.db.claim_cron_tick("job", now, "a").await.expect("new"));
    let removed =
        t.db.delete_cron_runs_before(now.plus_secs(-7 * 24 * 3600))
            .await
            .expect("delete");
    assert_eq!(removed, 1);
    assert!(
        !t.db.claim_cron_tick("job", now, "b").await.expect("kept"),
        "the recent tick is kept"
    );
}

wafleet_core::testing::on_both_backends!(one_claim_wins, many_concurrent_claims, old_runs_are_deleted);

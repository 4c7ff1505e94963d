//! The read cache across processes: what a worker announces over Redis reaches an API process's
//! cache, only for the device announced and only within the deployment's namespace, and the
//! scheduled cleanup reaches it the same way.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use wafleet_core::cache::{Invalidations, ReadCache, Topic, channel_name, follow};
use wafleet_core::shutdown;
use wafleet_core::testing::{Backend, TestDb, eventually};
use wafleet_core::types::DeviceId;

/// The cached value of `topic`, or `fresh` when it had to be loaded (and is now cached).
async fn read(cache: &ReadCache, topic: Topic, fresh: &'static str) -> Bytes {
    cache
        .get_or_load(topic, "chats".into(), async {
            Ok::<_, Infallible>(Bytes::from_static(fresh.as_bytes()))
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcements_reach_another_process_through_redis() {
    let test = TestDb::new(Backend::Postgres).await;
    let settings = test.settings.clone();
    let api_cache = ReadCache::new(Duration::from_secs(600), 1 << 20);
    let (trigger, stop) = shutdown::channel();
    let follower = tokio::spawn(follow(&settings, api_cache.clone(), stop));
    // Announcements made before the subscription are lost by design, so wait for it.
    let client = redis::Client::open(settings.redis_url.as_ref().unwrap().expose()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let channel = channel_name(&settings);
    eventually(Duration::from_secs(10), "the API process subscribes", async || {
        let (_, subscribers): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query_async(&mut conn)
            .await
            .unwrap();
        subscribers == 1
    })
    .await;
    // Once subscribed, the follower drops what it cached before (announcements made meanwhile
    // are lost), and only then applies announcements: one that arrives shows it is done.
    let worker = Invalidations::connect(&settings, ReadCache::off()).await.unwrap();
    let three = Topic::Device(DeviceId(3));
    read(&api_cache, three, "three v1").await;
    worker.device_changed(DeviceId(3)).await;
    eventually(Duration::from_secs(10), "the follower is under way", async || {
        read(&api_cache, three, "three v2").await == "three v2"
    })
    .await;

    let (one, two) = (Topic::Device(DeviceId(1)), Topic::Device(DeviceId(2)));
    assert_eq!(read(&api_cache, one, "one v1").await, "one v1");
    assert_eq!(read(&api_cache, two, "two v1").await, "two v1");
    assert_eq!(read(&api_cache, one, "unused").await, "one v1", "cached");

    // A worker of another deployment (namespace) announces device 1: nothing changes here.
    let mut elsewhere = settings.clone();
    elsewhere.queue_namespace = format!("{}-other", settings.queue_namespace);
    let other_deployment = Invalidations::connect(&elsewhere, ReadCache::off()).await.unwrap();
    other_deployment.device_changed(DeviceId(1)).await;

    // This deployment's worker announces device 2. Redis delivers in the order it publishes, so
    // once this one is heard, the other deployment's would have been too.
    worker.device_changed(DeviceId(2)).await;
    eventually(Duration::from_secs(10), "device 2's announcement arrives", async || {
        read(&api_cache, two, "two v2").await == "two v2"
    })
    .await;
    assert_eq!(
        read(&api_cache, one, "one v2").await,
        "one v1",
        "device 1 was not announced here"
    );

    // The scheduled cleanup, announced by the scheduler, frees the entry device 2 left behind.
    assert_eq!(
        api_cache.entries().await,
        5,
        "three v1 and two v1 (unreachable), three v2, one v1, two v2"
    );
    worker.clean_everywhere().await;
    // Two unreachable entries go; "three v2" too when device 3's announcement came after it.
    eventually(
        Duration::from_secs(10),
        "the cleanup reaches the API process",
        async || api_cache.entries().await <= 3,
    )
    .await;
    assert_eq!(read(&api_cache, one, "one v3").await, "one v1", "what is current stays");

    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(5), follower)
        .await
        .expect("the follower stops at shutdown")
        .unwrap();
}

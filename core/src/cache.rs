//! The read cache: a small TTL cache in front of the API's hot reads (chat lists, messages pages,
//! a device and its status, analytics), so that a dashboard opened by many people, or a client polling, costs
//! the database one query per TTL rather than one per request. It also holds who each credential
//! (session cookie or API token) belongs to ([`ReadCache::caller`]), so that a cached answer costs
//! no query at all.
//!
//! Entries are serialised responses, keyed by what they belong to (a [`Topic`]) and by what was
//! asked. Writers never touch the entries: they announce that a topic changed, which raises the
//! topic's generation, and every entry read under an older generation stops being found. A reader
//! that took the generation before the database read and stores under it can therefore never
//! store a stale page as current.
//!
//! Announcements travel with the process ([`Invalidations::Local`]) in the embedded default, where
//! the API and the workers share one cache, and over Redis pub/sub
//! ([`Invalidations::Redis`], followed by each API process with [`follow`]) in scale-out mode. A
//! follower that loses its subscription drops everything once it is back, since announcements
//! made meanwhile are gone; the TTL bounds what a missed one could cost.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::AsyncCommands;

use crate::Settings;
use crate::config::Secret;
use crate::db::Caller;
use crate::metrics as m;
use crate::shutdown::Shutdown;
use crate::sync;
use crate::types::DeviceId;

/// What a cached read belongs to: a write to it invalidates the read.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Topic {
    /// A device: its chats and messages (the flush and the sender write them), and the device row
    /// itself (status, name).
    Device(DeviceId),
    /// Every user's analytics: the roll-ups they are read from (refreshed every minute).
    Analytics,
    /// Who every credential belongs to: announced when one ends before its time (logout, a
    /// revoked API token, a password change), so that it stops working everywhere at once.
    /// Rare, so one topic for all of them: each costs every credential one lookup.
    Callers,
}

impl Topic {
    fn encode(self) -> String {
        match self {
            Topic::Device(id) => format!("d{}", id.0),
            Topic::Analytics => "a".to_owned(),
            Topic::Callers => "c".to_owned(),
        }
    }

    fn decode(text: &str) -> Option<Topic> {
        match text {
            "a" => return Some(Topic::Analytics),
            "c" => return Some(Topic::Callers),
            _ => {}
        }
        let id = text.strip_prefix('d')?.parse().ok()?;
        Some(Topic::Device(DeviceId(id)))
    }
}

/// Credentials whose account is kept at most (each entry is an account: ~200 bytes).
const MAX_CALLERS: u64 = 100_000;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Key {
    epoch: u64,
    topic: Topic,
    generation: u64,
    what: String,
}

struct Inner {
    entries: moka::future::Cache<Key, Bytes>,
    /// The account (and token) of each credential's digest, under [`Topic::Callers`].
    callers: moka::future::Cache<Key, Caller>,
    generations: Mutex<HashMap<Topic, u64>>,
    /// Raised by [`ReadCache::invalidate_all`]: every entry stored before is unreachable.
    epoch: AtomicU64,
}

/// The cache of one API process (shared with the workers in the embedded default). Cheap to clone.
#[derive(Clone)]
pub struct ReadCache(Option<Arc<Inner>>);

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(inner) => f
                .debug_struct("ReadCache")
                .field("entries", &inner.entries.entry_count())
                .finish(),
            None => f.write_str("ReadCache(off)"),
        }
    }
}

impl ReadCache {
    /// A cache whose entries live `ttl` at most, within `max_bytes` of responses. A zero `ttl`
    /// turns it off: every read goes to the loader.
    pub fn new(ttl: Duration, max_bytes: u64) -> Self {
        if ttl.is_zero() || max_bytes == 0 {
            return ReadCache(None);
        }
        let entries = moka::future::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &Key, value: &Bytes| u32::try_from(key.what.len() + value.len() + 64).unwrap_or(u32::MAX))
            .time_to_live(ttl)
            .support_invalidation_closures()
            .build();
        let callers = moka::future::Cache::builder()
            .max_capacity(MAX_CALLERS)
            .time_to_live(ttl)
            .support_invalidation_closures()
            .build();
        ReadCache(Some(Arc::new(Inner {
            entries,
            callers,
            generations: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
        })))
    }

    /// The cache `settings` ask for (`READ_CACHE_TTL_SECS`, `READ_CACHE_MIB`).
    pub fn from_settings(settings: &Settings) -> Self {
        ReadCache::new(
            Duration::from_secs(settings.read_cache_ttl_secs),
            settings.read_cache_mib.saturating_mul(1 << 20),
        )
    }

    /// A cache that never keeps anything.
    pub fn off() -> Self {
        ReadCache(None)
    }

    /// The response stored for `what` of `topic`, or `load`'s, which is stored when it succeeds.
    /// `what` must name everything the response depends on besides the topic (the caller, the
    /// route, its parameters). Concurrent misses of one key run one `load` and share its answer,
    /// error included: when a popular entry expires under load, one request goes to the database
    /// instead of every one of them at once.
    pub async fn get_or_load<E, F>(&self, topic: Topic, what: String, load: F) -> Result<Bytes, Arc<E>>
    where
        F: Future<Output = Result<Bytes, E>>,
        E: Send + Sync + 'static,
    {
        let Some(inner) = &self.0 else {
            return load.await.map_err(Arc::new);
        };
        load_through(&inner.entries, inner.key(topic, what), m::READ_CACHE, load).await
    }

    /// The account `credential` (the stored digest of a session cookie or API token) belongs to,
    /// as cached, or as `load` finds it. Only found accounts are kept: `load` fails for an
    /// unknown or ended credential, and failures are never stored. Ending a credential must
    /// announce [`Topic::Callers`]; what expires on its own (a session past its time) may still
    /// be served for up to one TTL.
    pub async fn caller<E, F>(&self, credential: &str, load: F) -> Result<Caller, Arc<E>>
    where
        F: Future<Output = Result<Caller, E>>,
        E: Send + Sync + 'static,
    {
        let Some(inner) = &self.0 else {
            return load.await.map_err(Arc::new);
        };
        let key = inner.key(Topic::Callers, credential.to_owned());
        load_through(&inner.callers, key, m::CALLER_CACHE, load).await
    }

    /// Everything cached for `topics` stops being served.
    pub fn invalidate(&self, topics: &[Topic]) {
        let Some(inner) = &self.0 else { return };
        let mut generations = sync::lock(&inner.generations);
        for topic in topics {
            *generations.entry(*topic).or_default() += 1;
        }
    }

    /// Nothing cached so far is served again.
    pub fn invalidate_all(&self) {
        if let Some(inner) = &self.0 {
            inner.epoch.fetch_add(1, Ordering::AcqRel);
            sync::lock(&inner.generations).clear();
        }
    }

    /// Scheduled cleanup: frees expired and unreachable entries now rather than when the cache
    /// next fills, and forgets generations no entry uses any more. Returns the entries left.
    pub async fn clean(&self) -> u64 {
        let Some(inner) = &self.0 else { return 0 };
        let epoch = inner.epoch.load(Ordering::Acquire);
        let current = sync::lock(&inner.generations).clone();
        // Entries of an older epoch or generation can never be found again.
        let stale = move |key: &Key| {
            key.epoch != epoch || current.get(&key.topic).copied().unwrap_or_default() != key.generation
        };
        let callers_stale = stale.clone();
        let _ = inner.entries.invalidate_entries_if(move |key, _| stale(key));
        let _ = inner.callers.invalidate_entries_if(move |key, _| callers_stale(key));
        inner.entries.run_pending_tasks().await;
        inner.callers.run_pending_tasks().await;
        let left = inner.entries.entry_count();
        metrics::gauge!(m::READ_CACHE_ENTRIES).set(left as f64);
        left
    }

    /// Entries held, unreachable ones included until a [`clean`](ReadCache::clean) drops them.
    pub async fn entries(&self) -> u64 {
        let Some(inner) = &self.0 else { return 0 };
        inner.entries.run_pending_tasks().await;
        inner.entries.entry_count()
    }
}

/// The value of `key` in `entries`, or `load`'s, stored when it succeeds; concurrent misses share
/// one load. Counts the hit or miss on `metric`.
async fn load_through<V, E, F>(
    entries: &moka::future::Cache<Key, V>,
    key: Key,
    metric: &'static str,
    load: F,
) -> Result<V, Arc<E>>
where
    V: Clone + Send + Sync + 'static,
    F: Future<Output = Result<V, E>>,
    E: Send + Sync + 'static,
{
    let mut loaded = false;
    let value = entries
        .try_get_with(key, async {
            loaded = true;
            load.await
        })
        .await;
    let result = if loaded { "miss" } else { "hit" };
    metrics::counter!(metric, "result" => result).increment(1);
    value
}

impl Inner {
    /// The key of `what` of `topic` now. The generation is taken before the database is read: a
    /// write that lands meanwhile raises it, and what this read stores is never found.
    fn key(&self, topic: Topic, what: String) -> Key {
        Key {
            epoch: self.epoch.load(Ordering::Acquire),
            topic,
            generation: self.generation(topic),
            what,
        }
    }

    fn generation(&self, topic: Topic) -> u64 {
        let generations = sync::lock(&self.generations);
        generations.get(&topic).copied().unwrap_or_default()
    }
}

/// Where writers announce what changed.
#[derive(Clone, Debug)]
pub enum Invalidations {
    /// The cache of this very process (the embedded default).
    Local(ReadCache),
    /// Every API process, through a Redis channel (scale-out mode); also this process's own cache.
    Redis {
        conn: redis::aio::ConnectionManager,
        channel: String,
        local: ReadCache,
    },
}

impl Invalidations {
    /// Announces to this process's `cache`, and over Redis when `settings` name one.
    pub async fn connect(settings: &Settings, cache: ReadCache) -> anyhow::Result<Invalidations> {
        let Some(url) = &settings.redis_url else {
            return Ok(Invalidations::Local(cache));
        };
        let client = redis::Client::open(url.expose())?;
        let conn = tokio::time::timeout(Duration::from_secs(10), client.get_connection_manager())
            .await
            .map_err(|_| anyhow::anyhow!("timed out connecting to Redis for cache invalidations"))??;
        Ok(Invalidations::Redis {
            conn,
            channel: channel_name(settings),
            local: cache,
        })
    }

    /// `topics` changed. Best effort: a lost announcement costs at most one TTL of staleness.
    pub async fn changed(&self, topics: &[Topic]) {
        if topics.is_empty() {
            return;
        }
        match self {
            Invalidations::Local(cache) => cache.invalidate(topics),
            Invalidations::Redis { local, .. } => {
                local.invalidate(topics);
                let payload = topics.iter().map(|t| t.encode()).collect::<Vec<_>>().join(",");
                self.publish(payload).await;
            }
        }
    }

    /// The scheduled cleanup: every process that follows the announcements cleans its cache.
    pub async fn clean_everywhere(&self) {
        match self {
            Invalidations::Local(cache) => {
                cache.clean().await;
            }
            Invalidations::Redis { local, .. } => {
                local.clean().await;
                self.publish(CLEAN.to_owned()).await;
            }
        }
    }

    async fn publish(&self, payload: String) {
        if let Invalidations::Redis { conn, channel, .. } = self {
            let mut conn = conn.clone();
            if let Err(err) = conn.publish::<_, _, ()>(channel, payload).await {
                tracing::warn!(error = %err, "announcing to the read caches failed");
            }
        }
    }

    /// A device's data changed.
    pub async fn device_changed(&self, device: DeviceId) {
        self.changed(&[Topic::Device(device)]).await;
    }
}

/// The announcement that asks every follower to clean its cache.
const CLEAN: &str = "clean";

/// The pub/sub channel of the deployment (`QUEUE_NAMESPACE`).
pub fn channel_name(settings: &Settings) -> String {
    format!("{}:cache-invalidations", settings.queue_namespace)
}

/// Applies the announcements of every process to `cache` until `shutdown`, when `settings` name a
/// Redis (scale-out mode; otherwise it ends at once). While unsubscribed, nothing is served from
/// the cache, since announcements made meanwhile are lost.
pub fn follow(settings: &Settings, cache: ReadCache, shutdown: Shutdown) -> impl Future<Output = ()> + Send + 'static {
    let url = settings.redis_url.clone();
    let channel = channel_name(settings);
    async move {
        if let Some(url) = url {
            follow_channel(url, channel, cache, shutdown).await;
        }
    }
}

async fn follow_channel(url: Secret, channel: String, cache: ReadCache, shutdown: Shutdown) {
    let mut wait = Duration::from_millis(200);
    loop {
        match subscribe(&url, &channel).await {
            Ok(mut pubsub) => {
                wait = Duration::from_millis(200);
                cache.invalidate_all();
                let mut messages = pubsub.on_message();
                loop {
                    tokio::select! {
                        _ = shutdown.clone().wait() => return,
                        message = messages.next() => {
                            let Some(message) = message else { break };
                            let payload: String = message.get_payload().unwrap_or_default();
                            if payload == CLEAN {
                                cache.clean().await;
                            } else {
                                let topics: Vec<Topic> = payload.split(',').filter_map(Topic::decode).collect();
                                cache.invalidate(&topics);
                            }
                        }
                    }
                }
                tracing::warn!("lost the cache invalidation channel; resubscribing");
            }
            Err(err) => tracing::warn!(error = %err, "subscribing to cache invalidations failed; retrying"),
        }
        cache.invalidate_all();
        tokio::select! {
            _ = shutdown.clone().wait() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

async fn subscribe(url: &Secret, channel: &str) -> redis::RedisResult<redis::aio::PubSub> {
    let client = redis::Client::open(url.expose())?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str) -> Result<Bytes, std::convert::Infallible> {
        Ok(Bytes::from(text.to_owned()))
    }

    #[tokio::test]
    async fn serves_what_it_stored_until_the_topic_changes() {
        let cache = ReadCache::new(Duration::from_secs(60), 1 << 20);
        let topic = Topic::Device(DeviceId(7));
        let first = cache
            .get_or_load(topic, "chats".into(), async { body("one") })
            .await
            .unwrap();
        let again = cache
            .get_or_load(topic, "chats".into(), async { body("two") })
            .await
            .unwrap();
        assert_eq!((first.as_ref(), again.as_ref()), (&b"one"[..], &b"one"[..]));
        // Another device's change leaves it; its own does not.
        cache.invalidate(&[Topic::Device(DeviceId(8))]);
        let other = cache
            .get_or_load(topic, "chats".into(), async { body("three") })
            .await
            .unwrap();
        assert_eq!(other.as_ref(), b"one");
        cache.invalidate(&[topic]);
        let fresh = cache
            .get_or_load(topic, "chats".into(), async { body("four") })
            .await
            .unwrap();
        assert_eq!(fresh.as_ref(), b"four");
    }

    #[tokio::test]
    async fn concurrent_misses_load_once_and_share_the_answer() {
        let cache = ReadCache::new(Duration::from_secs(60), 1 << 20);
        let topic = Topic::Analytics;
        let loads = AtomicU64::new(0);
        let read = || {
            cache.get_or_load(topic, "summary".into(), async {
                loads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                body("counted")
            })
        };
        let answers = futures_util::future::join_all((0..20).map(|_| read())).await;
        assert!(answers.iter().all(|a| a.as_ref().unwrap().as_ref() == b"counted"));
        assert_eq!(loads.load(Ordering::SeqCst), 1, "one load for twenty concurrent misses");

        // A failed load is shared with those waiting on it, and not stored.
        let failed = futures_util::future::join_all((0..5).map(|_| {
            cache.get_or_load(topic, "broken".into(), async {
                loads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err::<Bytes, _>("database down")
            })
        }))
        .await;
        assert!(
            failed
                .iter()
                .all(|a| a.as_ref().unwrap_err().as_ref() == &"database down")
        );
        assert_eq!(loads.load(Ordering::SeqCst), 2);
        let retried = cache.get_or_load(topic, "broken".into(), async { body("back") }).await;
        assert_eq!(retried.unwrap().as_ref(), b"back");
    }

    #[tokio::test]
    async fn a_read_that_raced_a_write_is_not_served_after_it() {
        let cache = ReadCache::new(Duration::from_secs(60), 1 << 20);
        let topic = Topic::Device(DeviceId(1));
        // The write lands while the read is under way: the read's result is stored under the old
        // generation, so the next read loads again.
        let stale = cache
            .get_or_load(topic, "chats".into(), async {
                cache.invalidate(&[topic]);
                body("before the write")
            })
            .await
            .unwrap();
        assert_eq!(stale.as_ref(), b"before the write");
        let next = cache
            .get_or_load(topic, "chats".into(), async { body("after") })
            .await
            .unwrap();
        assert_eq!(next.as_ref(), b"after");
    }

    #[tokio::test]
    async fn entries_expire_and_cleaning_drops_unreachable_ones() {
        let cache = ReadCache::new(Duration::from_millis(200), 1 << 20);
        let topic = Topic::Device(DeviceId(1));
        cache.get_or_load(topic, "a".into(), async { body("a") }).await.unwrap();
        cache.get_or_load(topic, "b".into(), async { body("b") }).await.unwrap();
        assert_eq!(cache.clean().await, 2);
        cache.invalidate(&[topic]);
        assert_eq!(cache.clean().await, 0, "entries of an old generation are dropped");
        cache.get_or_load(topic, "a".into(), async { body("a") }).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let loaded = cache
            .get_or_load(topic, "a".into(), async { body("reloaded") })
            .await
            .unwrap();
        assert_eq!(loaded.as_ref(), b"reloaded", "an expired entry is loaded again");
    }

    fn user(id: i64) -> Result<Caller, &'static str> {
        Ok(Caller {
            token: None,
            user: crate::db::User {
                id: crate::types::UserId(id),
                email: crate::types::Email::parse(&format!("u{id}@example.com")).unwrap(),
                password_hash: String::new(),
                is_admin: false,
                must_change_password: false,
                disabled_at: None,
                created_at: crate::types::Timestamp(0),
            },
        })
    }

    #[tokio::test]
    async fn a_credential_is_looked_up_once_until_callers_change() {
        let cache = ReadCache::new(Duration::from_secs(60), 1 << 20);
        let loads = AtomicU64::new(0);
        let resolve = |credential: &'static str, id: i64| {
            let loads = &loads;
            let cache = &cache;
            async move {
                cache
                    .caller(credential, async {
                        loads.fetch_add(1, Ordering::SeqCst);
                        user(id)
                    })
                    .await
                    .map(|c| c.user.id.0)
            }
        };
        assert_eq!(resolve("t1", 1).await, Ok(1));
        assert_eq!(resolve("t1", 2).await, Ok(1), "cached");
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // A device's change leaves credentials alone; the end of a credential does not.
        cache.invalidate(&[Topic::Device(DeviceId(1)), Topic::Analytics]);
        assert_eq!(resolve("t1", 2).await, Ok(1));
        cache.invalidate(&[Topic::Callers]);
        assert_eq!(resolve("t1", 2).await, Ok(2), "looked up again");
        assert_eq!(loads.load(Ordering::SeqCst), 2);

        // An unknown credential is not remembered: it is looked up every time.
        for _ in 0..2 {
            let unknown = cache
                .caller("t9", async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    Err::<Caller, _>("unknown")
                })
                .await;
            assert_eq!(unknown.map(|c| c.user.id.0).map_err(|e| *e), Err("unknown"));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn off_always_loads() {
        let cache = ReadCache::new(Duration::ZERO, 1 << 20);
        let topic = Topic::Device(DeviceId(1));
        cache
            .get_or_load(topic, "a".into(), async { body("one") })
            .await
            .unwrap();
        let second = cache
            .get_or_load(topic, "a".into(), async { body("two") })
            .await
            .unwrap();
        assert_eq!(second.as_ref(), b"two");
        assert_eq!(cache.entries().await, 0);
    }

    #[test]
    fn topics_survive_the_wire() {
        for topic in [Topic::Device(DeviceId(42)), Topic::Analytics, Topic::Callers] {
            assert_eq!(Topic::decode(&topic.encode()), Some(topic));
        }
        assert_eq!(Topic::decode("x1"), None);
        assert_eq!(Topic::decode("d"), None);
    }
}

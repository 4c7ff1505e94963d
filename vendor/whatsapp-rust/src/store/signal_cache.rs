// Re-export from wacore — the canonical implementation lives there now.
pub use wacore::store::signal_cache::SignalStoreCache;

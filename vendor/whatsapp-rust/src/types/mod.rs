// Re-export from wacore for compatibility
pub use wacore::types::*;

// Local type definitions
pub mod durability_hook;
pub mod enc_handler;
pub mod retry_admission;

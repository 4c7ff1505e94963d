//! The wa-rs adapter.

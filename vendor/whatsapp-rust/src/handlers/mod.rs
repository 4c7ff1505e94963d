pub mod basic;
pub mod call;
pub mod chatstate;
pub mod ib;
pub mod iq;
#[macro_use]
mod macros;
pub mod message;
pub mod notification;
pub mod presence;
pub mod receipt;
pub mod router;
pub mod traits;

//! Message variations: spintax and variables, so that each recipient of a campaign gets a text of
//! its own (`{Hi|Hello} {first_name}, {greeting}!`) rather than thousands of identical ones.
//!
//! A message is parsed once ([`Message::parse`], when it is saved, so that mistakes are refused
//! with their position) and rendered per recipient ([`Message::render`]) from a seed: the same
//! seed and variables always give the same text, so a send recorded again after a crash carries
//! the text it had the first time.
//!
//! Syntax:
//! - `{a|b|c}` picks one option; options may hold text, variables and further choices
//!   (`{Hi|{Good morning|Good evening}}`). An option must not be empty.
//! - `{name}`, `{first_name}`, `{phone}`, `{niche}`, `{greeting}` (see [`Variable`]); braces
//!   without `|` must name one of them (letter case and surrounding spaces do not matter).
//! - `\{`, `\}`, `\|` and `\\` stand for the character itself; a `|` outside braces is plain text.
//!
//! Positions in errors count characters (not bytes) from 1, as a person reading the text would.

mod parse;
mod render;
#[cfg(test)]
mod tests;

pub use parse::{MAX_DEPTH, Message, TextError, Variable};
pub use render::{Variables, greeting, seed};

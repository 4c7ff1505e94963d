//! Rendering a parsed message for one recipient, deterministically from a seed.

use chrono::Timelike;

use super::parse::{Message, Node, Variable};
use crate::types::Timestamp;

/// What the variables of a message stand for, for one recipient.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Variables {
    /// The lead's name (`{name}`; its first word is `{first_name}`). Empty when unknown.
    pub name: String,
    /// The recipient's number, E.164 (`{phone}`).
    pub phone: String,
    /// The lead's niche (`{niche}`). Empty when none.
    pub niche: String,
    /// The recipient's local hour, 0-23, which picks `{greeting}`.
    pub local_hour: u32,
}

impl Variables {
    /// The hour of `at` in the IANA time zone `time_zone` (UTC when the name is unknown).
    ///
    /// wafleet has no mapping from a number's country to a time zone, and a country may span
    /// several, so greetings follow the time zone the campaign was planned in (or the user's):
    /// the one its owner chose for the people it goes to.
    pub fn hour_in(at: Timestamp, time_zone: &str) -> u32 {
        let utc = at.to_datetime();
        match time_zone.parse::<chrono_tz::Tz>() {
            Ok(tz) => utc.with_timezone(&tz).hour(),
            Err(_) => utc.hour(),
        }
    }

    fn value(&self, variable: Variable) -> &str {
        match variable {
            Variable::Name => self.name.trim(),
            Variable::FirstName => self.name.split_whitespace().next().unwrap_or_default(),
            Variable::Phone => &self.phone,
            Variable::Niche => self.niche.trim(),
            Variable::Greeting => greeting(self.local_hour),
        }
    }
}

/// The greeting for a local hour: morning from 05:00, afternoon from 12:00, evening from 18:00
/// until 05:00 (nobody is wished a good night in a first message).
pub fn greeting(local_hour: u32) -> &'static str {
    match local_hour {
        5..=11 => "Good morning",
        12..=17 => "Good afternoon",
        _ => "Good evening",
    }
}

/// A seed from ids (e.g. the campaign's and the lead's): the same ids give the same seed on every
/// machine and every version, as it is computed here rather than by a library's generator, whose
/// output may change between releases.
pub fn seed(parts: &[i64]) -> u64 {
    let mut rng = Rng(0x5741_464c_4545_5431);
    for part in parts {
        rng.0 ^= *part as u64;
        rng.0 = rng.next();
    }
    rng.0
}

/// SplitMix64: small, fast, well distributed, and fixed here for good (see [`seed`]).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (> 0), by multiplying rather than `%` so every option is as likely.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}

impl Message {
    /// The text for one recipient: each choice picks one option, drawn from `seed`, and each
    /// variable is filled from `variables`. The same seed and variables give the same text.
    pub fn render(&self, variables: &Variables, seed: u64) -> String {
        let mut out = String::new();
        let mut rng = Rng(seed);
        render_into(&self.nodes, variables, &mut rng, &mut out);
        out
    }

    /// Up to `count` different renders for a preview (fewer when the message has fewer
    /// variations), the same ones each time for the same message and variables.
    pub fn samples(&self, variables: &Variables, count: usize) -> Vec<String> {
        let mut found: Vec<String> = Vec::with_capacity(count);
        let wanted = count.min(usize::try_from(self.variations()).unwrap_or(usize::MAX));
        // Drawing at random finds most variations quickly; a bound keeps a message whose options
        // are very unevenly likely from looping long.
        for n in 0..(count as i64 * 20) {
            if found.len() >= wanted {
                break;
            }
            let text = self.render(variables, seed(&[n]));
            if !found.contains(&text) {
                found.push(text);
            }
        }
        found
    }
}

fn render_into(nodes: &[Node], variables: &Variables, rng: &mut Rng, out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Var(variable) => out.push_str(variables.value(*variable)),
            Node::Choice(options) => {
                let option = &options[rng.below(options.len())];
                render_into(option, variables, rng, out);
            }
        }
    }
}

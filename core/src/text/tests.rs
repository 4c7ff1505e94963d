use std::collections::HashMap;

use super::*;

fn ana() -> Variables {
    Variables {
        name: "Ana Lim".into(),
        phone: "+60123456789".into(),
        niche: "bakery".into(),
        local_hour: 9,
    }
}

/// Every text `text` renders to over many seeds, with how often.
fn spread(text: &str, seeds: i64) -> HashMap<String, u32> {
    let message = Message::parse(text).unwrap();
    let mut seen = HashMap::new();
    for n in 0..seeds {
        *seen.entry(message.render(&ana(), seed(&[n]))).or_default() += 1;
    }
    seen
}

fn error(text: &str) -> TextError {
    Message::parse(text).expect_err(text)
}

#[test]
fn plain_text_renders_as_written() {
    let message = Message::parse("Fresh bread today! 50% off | while it lasts").unwrap();
    assert_eq!(message.render(&ana(), 1), "Fresh bread today! 50% off | while it lasts");
    assert_eq!(message.variations(), 1);
    assert_eq!(Message::parse("").unwrap().render(&ana(), 1), "");
}

#[test]
fn variables_are_filled_per_recipient() {
    let message = Message::parse("{greeting} {first_name} ({name}, {phone}), news for {niche} shops").unwrap();
    assert_eq!(
        message.render(&ana(), 7),
        "Good morning Ana (Ana Lim, +60123456789), news for bakery shops"
    );
    let upper = Message::parse("Hi { First_Name }!").unwrap();
    assert_eq!(upper.render(&ana(), 7), "Hi Ana!", "case and spaces do not matter");
    let nobody = Variables::default();
    assert_eq!(Message::parse("Hi {first_name}").unwrap().render(&nobody, 1), "Hi ");
}

#[test]
fn greetings_follow_the_local_hour() {
    assert_eq!(greeting(4), "Good evening");
    assert_eq!(greeting(5), "Good morning");
    assert_eq!(greeting(11), "Good morning");
    assert_eq!(greeting(12), "Good afternoon");
    assert_eq!(greeting(17), "Good afternoon");
    assert_eq!(greeting(18), "Good evening");
    assert_eq!(greeting(23), "Good evening");
    // 2026-03-14T01:00Z is 09:00 in Kuala Lumpur; an unknown zone reads as UTC.
    let at = crate::types::Timestamp(1_773_450_000_000);
    assert_eq!(Variables::hour_in(at, "Asia/Kuala_Lumpur"), 9);
    assert_eq!(Variables::hour_in(at, "UTC"), 1);
    assert_eq!(Variables::hour_in(at, "Mars/Olympus"), 1);
}

#[test]
fn every_option_is_used_about_as_often() {
    let seen = spread("{Hello|Hi|Good day}", 3000);
    assert_eq!(seen.len(), 3, "{seen:?}");
    for (text, n) in &seen {
        assert!((800..1200).contains(n), "{text}: {n} of 3000");
    }
}

#[test]
fn nested_choices_reach_every_leaf() {
    let seen = spread("{Hi|{Good morning|Good evening}} {first_name}", 2000);
    let mut texts: Vec<_> = seen.keys().cloned().collect();
    texts.sort();
    assert_eq!(texts, ["Good evening Ana", "Good morning Ana", "Hi Ana"]);
    // The outer choice is even: "Hi" about half the time, each inner option a quarter.
    assert!((850..1150).contains(&seen["Hi Ana"]), "{seen:?}");
    let message = Message::parse("{a|{b|c{d|e}}} and {x|y}").unwrap();
    assert_eq!(message.variations(), 8);
    assert_eq!(spread("{a|{b|c{d|e}}} and {x|y}", 2000).len(), 8);
}

#[test]
fn variables_work_inside_options() {
    let seen = spread("{Hi {first_name}|Hello {name}}!", 500);
    assert_eq!(seen.len(), 2);
    assert!(seen.contains_key("Hi Ana!") && seen.contains_key("Hello Ana Lim!"));
}

#[test]
fn the_same_seed_renders_the_same_text() {
    let message = Message::parse("{Hi|Hello|Hey} {there|friend|{first_name}}, {a|b|c|d|e}").unwrap();
    let first = seed(&[42, 7]);
    assert_eq!(first, seed(&[42, 7]));
    assert_ne!(first, seed(&[7, 42]), "order matters");
    assert_ne!(first, seed(&[42, 8]));
    let text = message.render(&ana(), first);
    for _ in 0..10 {
        assert_eq!(message.render(&ana(), first), text);
    }
    // Fixed for good: a send recorded again after an upgrade must carry the same text.
    assert_eq!(seed(&[1, 2]), seed(&[1, 2]));
    assert_eq!(seed(&[]), 0x5741_464c_4545_5431);
    let recipients: std::collections::HashSet<String> =
        (0..50).map(|lead| message.render(&ana(), seed(&[42, lead]))).collect();
    assert!(recipients.len() > 10, "recipients get different texts: {recipients:?}");
}

#[test]
fn samples_are_distinct_and_stable() {
    let message = Message::parse("{Hi|Hello|Hey} {first_name}").unwrap();
    let samples = message.samples(&ana(), 3);
    assert_eq!(samples.len(), 3);
    let mut sorted = samples.clone();
    sorted.sort();
    assert_eq!(sorted, ["Hello Ana", "Hey Ana", "Hi Ana"]);
    assert_eq!(message.samples(&ana(), 3), samples);
    assert_eq!(message.samples(&ana(), 10).len(), 3, "no more than there are");
    assert_eq!(Message::parse("Just this").unwrap().samples(&ana(), 3), ["Just this"]);
}

#[test]
fn escapes_stand_for_the_character() {
    let message = Message::parse(r"Use \{code\} or \| pipes, a \\ and a \n stays").unwrap();
    assert_eq!(message.render(&ana(), 1), r"Use {code} or | pipes, a \ and a \n stays");
    let inside = Message::parse(r"{a\|b|c\}}").unwrap();
    assert_eq!(inside.variations(), 2);
    let mut seen: Vec<_> = spread(r"{a\|b|c\}}", 200).into_keys().collect();
    seen.sort();
    assert_eq!(seen, ["a|b", "c}"]);
    assert_eq!(
        Message::parse("ends with \\").unwrap().render(&ana(), 1),
        "ends with \\"
    );
}

#[test]
fn unbalanced_braces_name_their_position() {
    assert_eq!(error("Hello there {Hi|Hello"), TextError::Unclosed(13));
    assert_eq!(
        error("Hello there {Hi|Hello").to_string(),
        "Unbalanced braces: `{` at position 13 is never closed; add `}` or write `\\{` for a literal brace"
    );
    assert_eq!(error("{a|{b|c}"), TextError::Unclosed(1));
    assert_eq!(error("{a|b} and {c|{d|e}"), TextError::Unclosed(11));
    assert_eq!(error("Hi}"), TextError::Unopened(3));
    assert_eq!(error("{a|b}}"), TextError::Unopened(6));
    assert!(
        error("x}")
            .to_string()
            .starts_with("Unbalanced braces: `}` at position 2")
    );
    // Positions count characters, not bytes.
    assert_eq!(error("Olá 👋 {Hi|Hey"), TextError::Unclosed(7));
}

#[test]
fn empty_options_and_braces_are_refused() {
    assert_eq!(error("{a||b}"), TextError::EmptyOption { position: 4, open: 1 });
    assert_eq!(error("x {|a}"), TextError::EmptyOption { position: 4, open: 3 });
    assert_eq!(error("{a|}"), TextError::EmptyOption { position: 4, open: 1 });
    assert_eq!(error("{}"), TextError::EmptyBraces(1));
    assert_eq!(error("{  }"), TextError::EmptyBraces(1));
    assert!(error("{a||b}").to_string().contains("Empty option at position 4"));
    assert_eq!(error("ab {a||b}").position(), 7);
}

#[test]
fn unknown_variables_are_named_with_their_position() {
    let err = error("Hi {frist_name}, {Hi|Hello}");
    assert_eq!(
        err,
        TextError::UnknownVariable {
            name: "frist_name".into(),
            position: 4
        }
    );
    let text = err.to_string();
    assert!(
        text.starts_with("Unknown variable `{frist_name}` at position 4"),
        "{text}"
    );
    assert!(
        text.contains("{name}, {first_name}, {phone}, {niche}, {greeting}"),
        "{text}"
    );
    // A lone word in braces is not a choice of one.
    assert_eq!(error("{Hello}").position(), 1);
    assert_eq!(error("{a|{b}}").position(), 4);
    assert!(matches!(error(r#"{"json": 1}"#), TextError::UnknownVariable { .. }));
}

#[test]
fn nesting_is_bounded() {
    let deep = format!("{}x{}", "{a|".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
    assert_eq!(Message::parse(&deep).unwrap().variations(), MAX_DEPTH as u64 + 1);
    let deeper = format!("{}x{}", "{a|".repeat(MAX_DEPTH + 1), "}".repeat(MAX_DEPTH + 1));
    assert_eq!(error(&deeper), TextError::TooDeep(3 * MAX_DEPTH + 1));
    // Hostile input fails fast rather than overflowing the stack.
    assert!(Message::parse(&"{".repeat(100_000)).is_err());
}

#[test]
fn variations_saturate() {
    let huge = "{a|b|c|d|e|f|g|h|i|j}".repeat(40);
    assert_eq!(Message::parse(&huge).unwrap().variations(), u64::MAX);
    assert_eq!(Message::literal("{not parsed}").render(&ana(), 1), "{not parsed}");
}

proptest::proptest! {
    #[test]
    fn parsing_never_panics_and_errors_point_inside(text in "[{}|\\\\a-z ]{0,40}") {
        match Message::parse(&text) {
            Ok(message) => {
                let rendered = message.render(&ana(), 3);
                proptest::prop_assert!(rendered.chars().count() <= text.chars().count() + 40);
            }
            Err(err) => {
                let position = err.position();
                proptest::prop_assert!(position >= 1 && position <= text.chars().count() + 1, "{err}");
            }
        }
    }

    #[test]
    fn text_without_special_characters_is_itself(text in "[^{}\\\\]{0,60}") {
        let message = Message::parse(&text).unwrap();
        proptest::prop_assert_eq!(message.render(&ana(), 9), text);
    }
}

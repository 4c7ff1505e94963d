//! Parsing a message into text, variables and choices, refusing mistakes with their position.

use std::fmt;

/// Most levels of choices inside choices; deeper nesting is refused (it is never meant, and
/// parsing and rendering recurse once per level).
pub const MAX_DEPTH: usize = 16;

/// A value filled in per recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variable {
    /// The lead's name as saved.
    Name,
    /// The first word of the lead's name.
    FirstName,
    /// The recipient's number, E.164 (`+60123456789`).
    Phone,
    /// The lead's niche.
    Niche,
    /// `Good morning`, `Good afternoon` or `Good evening` by the local hour (see [`crate::text::greeting`]).
    Greeting,
}

impl Variable {
    /// Every variable, in the order the documentation lists them.
    pub const ALL: [Variable; 5] = [
        Variable::Name,
        Variable::FirstName,
        Variable::Phone,
        Variable::Niche,
        Variable::Greeting,
    ];

    /// The name written between braces.
    pub fn as_str(self) -> &'static str {
        match self {
            Variable::Name => "name",
            Variable::FirstName => "first_name",
            Variable::Phone => "phone",
            Variable::Niche => "niche",
            Variable::Greeting => "greeting",
        }
    }

    /// The variable named `raw`, ignoring letter case and surrounding spaces.
    fn find(raw: &str) -> Option<Variable> {
        let raw = raw.trim();
        Variable::ALL.into_iter().find(|v| v.as_str().eq_ignore_ascii_case(raw))
    }

    /// `{name}, {first_name}, …` for messages.
    fn listing() -> String {
        Variable::ALL
            .iter()
            .map(|v| format!("{{{}}}", v.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What is wrong with a message, and where (character positions counted from 1).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// A `{` with no `}` after it.
    #[error("Unbalanced braces: `{{` at position {0} is never closed; add `}}` or write `\\{{` for a literal brace")]
    Unclosed(usize),
    /// A `}` with no `{` before it.
    #[error(
        "Unbalanced braces: `}}` at position {0} has no `{{` before it; remove it or write `\\}}` for a literal brace"
    )]
    Unopened(usize),
    /// `{a||b}`, `{|a}` or `{a|}`.
    #[error(
        "Empty option at position {position} in the choice opened at position {open}: write text between each `|`, \
         or remove the extra `|`"
    )]
    EmptyOption {
        /// Where the empty option is (the `|` or `}` that ends it).
        position: usize,
        /// Where its choice opens.
        open: usize,
    },
    /// `{}`.
    #[error("Empty braces at position {0}: write options such as {{Hi|Hello}} or a variable such as {{first_name}}")]
    EmptyBraces(usize),
    /// Braces without `|` that name no variable.
    #[error("Unknown variable `{{{name}}}` at position {position}: the variables are {known}; separate the options of a choice with `|`, or write `\\{{` for a literal brace", known = Variable::listing())]
    UnknownVariable {
        /// What was written between the braces.
        name: String,
        /// Where its `{` is.
        position: usize,
    },
    /// More than [`MAX_DEPTH`] levels of choices.
    #[error("Too deeply nested: the `{{` at position {0} opens more than {MAX_DEPTH} levels of choices")]
    TooDeep(usize),
}

impl TextError {
    /// The character position (from 1) the error is about.
    pub fn position(&self) -> usize {
        match self {
            TextError::Unclosed(p) | TextError::Unopened(p) | TextError::EmptyBraces(p) | TextError::TooDeep(p) => *p,
            TextError::EmptyOption { position, .. } | TextError::UnknownVariable { position, .. } => *position,
        }
    }
}

/// One piece of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Node {
    /// Text as it is sent (escapes already resolved).
    Text(String),
    /// A value of the recipient.
    Var(Variable),
    /// One option is picked per render.
    Choice(Vec<Vec<Node>>),
}

/// A parsed message, ready to render per recipient.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    pub(super) nodes: Vec<Node>,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("variations", &self.variations())
            .finish()
    }
}

impl Message {
    /// Parses `text`, or says what is wrong with it and where.
    pub fn parse(text: &str) -> Result<Message, TextError> {
        let mut parser = Parser {
            chars: text.chars().collect(),
            at: 0,
        };
        let nodes = parser.sequence(0, false)?;
        Ok(Message { nodes })
    }

    /// `text` sent exactly as written, braces and all: for messages saved before variations
    /// existed, which may not parse and must still go out as their owner wrote them.
    pub fn literal(text: &str) -> Message {
        Message {
            nodes: vec![Node::Text(text.to_owned())],
        }
    }

    /// How many different texts the choices can make (saturating at `u64::MAX`); variables
    /// count once.
    pub fn variations(&self) -> u64 {
        fn count(nodes: &[Node]) -> u64 {
            nodes.iter().fold(1u64, |total, node| match node {
                Node::Choice(options) => {
                    total.saturating_mul(options.iter().fold(0u64, |sum, o| sum.saturating_add(count(o))))
                }
                _ => total,
            })
        }
        count(&self.nodes)
    }
}

struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    /// Text, variables and choices up to the end, or (`inside` a choice) up to its next `|` or `}`.
    fn sequence(&mut self, depth: usize, inside: bool) -> Result<Vec<Node>, TextError> {
        let mut nodes = Vec::new();
        let mut text = String::new();
        while let Some(&c) = self.chars.get(self.at) {
            match c {
                '\\' => match self.chars.get(self.at + 1) {
                    Some(&next @ ('{' | '}' | '|' | '\\')) => {
                        text.push(next);
                        self.at += 2;
                    }
                    _ => {
                        text.push('\\');
                        self.at += 1;
                    }
                },
                '{' => {
                    if !text.is_empty() {
                        nodes.push(Node::Text(std::mem::take(&mut text)));
                    }
                    nodes.push(self.braces(depth + 1)?);
                }
                '}' | '|' if inside => break,
                '}' => return Err(TextError::Unopened(self.at + 1)),
                _ => {
                    text.push(c);
                    self.at += 1;
                }
            }
        }
        if !text.is_empty() {
            nodes.push(Node::Text(text));
        }
        Ok(nodes)
    }

    /// A choice or a variable, starting at the `{` under the cursor, at nesting level `depth`.
    fn braces(&mut self, depth: usize) -> Result<Node, TextError> {
        let open = self.at;
        if depth > MAX_DEPTH {
            return Err(TextError::TooDeep(open + 1));
        }
        self.at += 1;
        let mut options = Vec::new();
        loop {
            let start = self.at;
            let option = self.sequence(depth, true)?;
            let Some(&end) = self.chars.get(self.at) else {
                return Err(TextError::Unclosed(open + 1));
            };
            if end == '}' && options.is_empty() {
                let raw: String = self.chars[open + 1..self.at].iter().collect();
                self.at += 1;
                if raw.trim().is_empty() {
                    return Err(TextError::EmptyBraces(open + 1));
                }
                return Variable::find(&raw).map(Node::Var).ok_or(TextError::UnknownVariable {
                    name: raw,
                    position: open + 1,
                });
            }
            if start == self.at {
                return Err(TextError::EmptyOption {
                    position: self.at + 1,
                    open: open + 1,
                });
            }
            options.push(option);
            self.at += 1;
            if end == '}' {
                return Ok(Node::Choice(options));
            }
        }
    }
}

impl std::str::FromStr for Message {
    type Err = TextError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Message::parse(text)
    }
}

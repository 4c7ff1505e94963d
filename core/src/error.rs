//! The error type of the shared crate.

/// What can go wrong in storage and domain logic.
///
/// Callers map these to their own surface (HTTP status codes in the API, retries in workers).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The row does not exist, or belongs to someone else (the two are deliberately not told apart).
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was violated; the message names what clashed.
    #[error("{0}")]
    Conflict(String),
    /// Input that parsed but breaks a rule of the domain.
    #[error("{0}")]
    Invalid(String),
    /// A worker wrote for a device whose lease another worker has claimed since (stale fencing token).
    #[error("the device's lease is held by another worker")]
    Fenced,
    /// The database failed or could not be reached.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// Anything else; carries its context chain.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::RowNotFound => Error::NotFound,
            other => Error::Database(other),
        }
    }
}

impl Error {
    /// Turns a unique-constraint violation into [`Error::Conflict`] with `message`; other errors pass through.
    pub fn on_unique_violation(err: sqlx::Error, message: impl Into<String>) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => Error::Conflict(message.into()),
            _ => err.into(),
        }
    }
}

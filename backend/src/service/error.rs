//! [`ServiceError`]: every outcome a caller of the service layer must tell apart, and the bounded
//! retry that turns database conflicts into a second attempt instead of an error.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

/// Why a service call did not do what was asked. Each user-facing outcome has its own variant so
/// the bot can show its own message; `Unavailable` and `Internal` are the only "something broke".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The Telegram user has no account yet (call `register_user` first).
    #[error("you are not registered")]
    NotRegistered,
    /// Registration mode is `closed` and the user is not registered.
    #[error("registration is closed")]
    RegistrationClosed,
    /// Registration mode is `invite` and no invite code was given.
    #[error("an invite code is required to register")]
    InviteRequired,
    /// The invite code does not exist, is used up, or has expired.
    #[error("this invite code is not valid")]
    InvalidInvite,
    /// The user is banned.
    #[error("your access is blocked")]
    Banned,
    /// The user's access expired (`users.access_expires_at` is in the past).
    #[error("your access has expired")]
    AccessExpired,
    /// The user already has `limit` active devices.
    #[error("device limit of {limit} reached")]
    DeviceLimitReached { limit: u32 },
    /// No region with that code (or it is disabled, i.e. hidden).
    #[error("no such region")]
    RegionNotFound,
    /// The region exists but takes no new devices (draining, or every node disabled).
    #[error("this region takes no new devices right now")]
    RegionUnavailable,
    /// Every active node of the region is at capacity.
    #[error("this region is full")]
    RegionFull,
    /// No such device among the caller's active devices (also when it belongs to someone else).
    #[error("no such device")]
    DeviceNotFound,
    /// Admin lookup (`@name` or id) found nobody.
    #[error("no such user")]
    UserNotFound,
    /// Admin operation named a node that does not exist.
    #[error("no such node")]
    NodeNotFound,
    /// Input that fails validation; the message says what is wrong and is safe to show.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The request contradicts existing state (e.g. re-adding a node with another subnet).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database (or another dependency) is down or overloaded: try again later.
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected database answer. Logged where it happens.
    #[error("internal error: {0}")]
    Internal(String),
    /// A serialization failure, deadlock or unique-index race: retried by `retry`, never
    /// returned to callers (after the last attempt it becomes [`ServiceError::Unavailable`]).
    #[doc(hidden)]
    #[error("transaction conflict, retrying")]
    Contention,
}

/// SQLSTATE codes that mean "the same transaction may succeed if run again".
const RETRYABLE: &[&str] = &[
    "40001", // serialization_failure
    "40P01", // deadlock_detected
    "23505", // unique_violation (two grants raced for an address; the loser takes the next one)
    "55P03", // lock_not_available
];

impl From<sqlx::Error> for ServiceError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.code().is_some_and(|c| RETRYABLE.contains(&&*c)) => {
                ServiceError::Contention
            }
            _ if crate::db::is_unreachable(&err) => ServiceError::Unavailable(err.to_string()),
            _ => {
                tracing::error!(error = %err, "unexpected database error");
                ServiceError::Internal(err.to_string())
            }
        }
    }
}

/// How often a conflicting transaction is attempted in total.
pub const MAX_ATTEMPTS: u32 = 8;

/// Runs `attempt` until it succeeds or fails with something other than
/// [`ServiceError::Contention`], at most [`MAX_ATTEMPTS`] times, with a short jittered pause.
pub(crate) async fn retry<T, F, Fut>(mut attempt: F) -> Result<T, ServiceError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ServiceError>>,
{
    for n in 1..=MAX_ATTEMPTS {
        match attempt().await {
            Err(ServiceError::Contention) if n < MAX_ATTEMPTS => {
                let pause = rand::thread_rng().gen_range(1..=5 * u64::from(n));
                tracing::debug!(attempt = n, "transaction conflict, retrying");
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            Err(ServiceError::Contention) => {
                return Err(ServiceError::Unavailable(
                    "the database kept reporting conflicts".into(),
                ));
            }
            other => return other,
        }
    }
    Err(ServiceError::Unavailable(
        "the database kept reporting conflicts".into(),
    ))
}

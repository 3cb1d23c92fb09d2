//! Polling with deadlines: tests wait for conditions, never for fixed times.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// How often conditions are checked.
pub const POLL: Duration = Duration::from_millis(50);

/// Calls `check` every [`POLL`] until it returns `Some`, failing after `limit` with a
/// message naming `what` and the last value `describe` gave (what was seen instead).
///
/// # Errors
/// An error from `check`, or the deadline.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Outcome<T>>>,
{
    let start = Instant::now();
    loop {
        let last = match check().await? {
            Outcome::Done(v) => return Ok(v),
            Outcome::NotYet(seen) => seen,
        };
        if start.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What one check of [`eventually`] found.
#[derive(Debug)]
pub enum Outcome<T> {
    /// The condition holds; the value to return.
    Done(T),
    /// Not yet; a description of what was seen instead.
    NotYet(String),
}

impl<T> Outcome<T> {
    /// `Done(value)` if `value` is `Some`, otherwise `NotYet(seen)`.
    pub fn from_option(value: Option<T>, seen: impl FnOnce() -> String) -> Outcome<T> {
        match value {
            Some(v) => Outcome::Done(v),
            None => Outcome::NotYet(seen()),
        }
    }
}

//! "Run while elected": campaign, hand each term of leadership to the component, and
//! campaign again when it is lost, until shutdown.

use std::future::Future;
use std::time::Duration;

use sdp_config::backoff::Backoff;
use sdp_config::{Config, Error, Guard, Leadership};
use tokio_util::sync::CancellationToken;

/// One term of leadership, as the component sees it.
#[derive(Clone, Debug)]
pub struct Term {
    /// Make writes conditional on still leading ([`sdp_config::Txn::require`]).
    pub guard: Guard,
    /// Cancelled when leadership is lost (another replica may already lead).
    pub lost: CancellationToken,
    /// The etcd lease backing this term: unique to it, and gone once the term has ended
    /// (expired or revoked), as [`Config::lease_exists`] tells anyone later.
    pub lease: i64,
}

/// Campaign in election `name` as `identity` and run `term` for each term of
/// leadership. `term` must return when its [`Term::lost`] or `shutdown` fires (on
/// shutdown after finishing what it must). Returns the leadership still held at
/// shutdown, for the caller to [`resign`] once its in-flight work is done, or `None`
/// when shutdown came while standing by.
///
/// Transient campaign errors (etcd unreachable) are retried with backoff for ever.
///
/// # Errors
/// A campaign error that retrying cannot fix (settings, permissions).
pub async fn run_while_elected<F, Fut>(
    db: &Config,
    name: &str,
    identity: &str,
    ttl: Duration,
    shutdown: &CancellationToken,
    mut term: F,
) -> Result<Option<Leadership>, Error>
where
    F: FnMut(Term) -> Fut,
    Fut: Future<Output = ()>,
{
    let election = db.election(name);
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        tracing::info!(
            election = name,
            candidate = identity,
            "campaigning; standing by"
        );
        let leadership = match election.campaign(identity, ttl, shutdown).await {
            Ok(l) => l,
            Err(Error::Cancelled) => return Ok(None),
            Err(e) if e.is_transient() => {
                let delay = backoff.next_delay();
                tracing::warn!(election = name, error = %e, retry_in_ms = delay.as_millis() as u64, "campaign failed; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(None),
                    () = tokio::time::sleep(delay) => continue,
                }
            }
            Err(e) => return Err(e),
        };
        backoff.reset();
        tracing::info!(election = name, candidate = identity, "leading");
        let lost = CancellationToken::new();
        let current = Term {
            guard: leadership.guard(),
            lost: lost.clone(),
            lease: leadership.lease().id(),
        };
        {
            let body = term(current);
            tokio::pin!(body);
            tokio::select! {
                () = &mut body => {}
                () = leadership.lost() => {
                    lost.cancel();
                    body.await;
                }
            }
        }
        if shutdown.is_cancelled() {
            return Ok(Some(leadership));
        }
        if leadership.is_lost() {
            tracing::warn!(election = name, "leadership lost; campaigning again");
        } else {
            tracing::warn!(
                election = name,
                "the term ended while still leading; resigning and campaigning again"
            );
            resign(leadership).await;
        }
    }
}

/// Give up leadership at once (a standby takes over without waiting for the TTL).
pub async fn resign(leadership: Leadership) {
    match leadership.resign().await {
        Ok(()) => tracing::info!("resigned leadership"),
        Err(e) => tracing::warn!(error = %e, "could not resign; leadership ends with its lease"),
    }
}

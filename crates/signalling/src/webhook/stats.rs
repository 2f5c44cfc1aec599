//! Counters of what the webhook did with the requests it handled, for a metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

use super::auth::{AuthError, TokenProblem};

/// Why the webhook refused a request: a fixed set, each with a stable label for metrics
/// and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalReason {
    /// 403: no `Authorization` header, not a bearer token, or a header over the size limit.
    MissingToken,
    /// 403: the token is not a well-formed RS256 JWT with a `kid`, its signature does not
    /// verify, or a required claim is missing or malformed.
    BadToken,
    /// 403: expired, or not valid yet (beyond the leeway): often a clock off.
    Expired,
    /// 403: issued for another app.
    WrongAudience,
    /// 403: issued by someone other than the calling service.
    WrongIssuer,
    /// 403: for another tenant, or no tenant claim.
    WrongTenant,
    /// 403: no signing key has the token's `kid`, even after a refresh.
    UnknownKey,
    /// 403: the signing keys could not be fetched.
    KeysUnavailable,
    /// 400: the body is not UTF-8 JSON notifications.
    BadBody,
    /// 413: the body is larger than [`super::MAX_NOTIFICATION_BYTES`].
    BodyTooLarge,
    /// 503: a call's notification queue is full (or too many calls are open).
    Overloaded,
}

impl RefusalReason {
    /// Every reason, in a fixed order.
    pub const ALL: [RefusalReason; 11] = [
        RefusalReason::MissingToken,
        RefusalReason::BadToken,
        RefusalReason::Expired,
        RefusalReason::WrongAudience,
        RefusalReason::WrongIssuer,
        RefusalReason::WrongTenant,
        RefusalReason::UnknownKey,
        RefusalReason::KeysUnavailable,
        RefusalReason::BadBody,
        RefusalReason::BodyTooLarge,
        RefusalReason::Overloaded,
    ];

    /// The label of the reason in metrics and logs (`snake_case`, stable).
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::MissingToken => "missing_token",
            RefusalReason::BadToken => "bad_token",
            RefusalReason::Expired => "expired",
            RefusalReason::WrongAudience => "wrong_audience",
            RefusalReason::WrongIssuer => "wrong_issuer",
            RefusalReason::WrongTenant => "wrong_tenant",
            RefusalReason::UnknownKey => "unknown_key",
            RefusalReason::KeysUnavailable => "keys_unavailable",
            RefusalReason::BadBody => "bad_body",
            RefusalReason::BodyTooLarge => "body_too_large",
            RefusalReason::Overloaded => "overloaded",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&AuthError> for RefusalReason {
    fn from(e: &AuthError) -> Self {
        match e {
            AuthError::Missing | AuthError::NotBearer | AuthError::TooLarge => {
                RefusalReason::MissingToken
            }
            AuthError::UnknownKey => RefusalReason::UnknownKey,
            AuthError::Keys { .. } => RefusalReason::KeysUnavailable,
            AuthError::MissingTenant | AuthError::WrongTenant => RefusalReason::WrongTenant,
            AuthError::Invalid { kind } => match kind {
                TokenProblem::Expired | TokenProblem::NotYetValid => RefusalReason::Expired,
                TokenProblem::Audience => RefusalReason::WrongAudience,
                TokenProblem::Issuer => RefusalReason::WrongIssuer,
                _ => RefusalReason::BadToken,
            },
            _ => RefusalReason::BadToken,
        }
    }
}

/// Refused requests, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefusalCounts([u64; RefusalReason::ALL.len()]);

impl RefusalCounts {
    /// Requests refused for `reason`.
    pub fn get(&self, reason: RefusalReason) -> u64 {
        self.0[reason.index()]
    }

    /// Requests refused for any reason.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Every reason with its count (zeros included), in [`RefusalReason::ALL`]'s order.
    pub fn iter(&self) -> impl Iterator<Item = (RefusalReason, u64)> + '_ {
        RefusalReason::ALL.iter().map(|r| (*r, self.get(*r)))
    }
}

/// What the webhook did since it was made: counts that only grow (a metrics endpoint
/// exports them as counters). Requests that never reached the webhook's handler (another
/// path, another method) are not counted, nor notifications a bot hands to the sink itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebhookStats {
    /// Requests answered 202: authenticated, parsed and handed to the calls.
    pub accepted: u64,
    /// Requests refused (403, 400, 413, 503), by reason.
    pub refused: RefusalCounts,
    /// Notifications in the accepted requests, each handed to its call's queue (those of
    /// a request refused as [`RefusalReason::Overloaded`] are not counted: the service
    /// sends that request again).
    pub notifications_dispatched: u64,
    /// Calls that notifications told of but no handle of this client claimed: not placed
    /// by it, not offered to the bot as incoming. Typically calls of an earlier run of this
    /// instance (same callback URL, media gone) that the service still reports on. Each is
    /// counted once, when it has gone unclaimed for the client's request timeout or ended;
    /// no keepAlive is ever sent for it. Counted from the dispatcher, so notifications a
    /// bot hands to [`crate::CommunicationsClient::notification_sink`] itself count too.
    pub unclaimed_calls: u64,
}

/// The live counters behind [`WebhookStats`]; shared by the routers that count into them.
#[derive(Debug, Default)]
pub struct WebhookCounters {
    accepted: AtomicU64,
    refused: [AtomicU64; RefusalReason::ALL.len()],
    notifications_dispatched: AtomicU64,
    unclaimed_calls: AtomicU64,
}

impl WebhookCounters {
    /// The counts now.
    pub fn stats(&self) -> WebhookStats {
        let mut refused = RefusalCounts::default();
        for (count, counter) in refused.0.iter_mut().zip(&self.refused) {
            *count = counter.load(Ordering::Relaxed);
        }
        WebhookStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            refused,
            notifications_dispatched: self.notifications_dispatched.load(Ordering::Relaxed),
            unclaimed_calls: self.unclaimed_calls.load(Ordering::Relaxed),
        }
    }

    pub(super) fn accepted(&self, notifications: usize) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.notifications_dispatched.fetch_add(
            u64::try_from(notifications).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub(super) fn refused(&self, reason: RefusalReason) {
        self.refused[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn unclaimed_call(&self) {
        self.unclaimed_calls.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_have_distinct_labels_and_indices() {
        let labels: std::collections::HashSet<_> =
            RefusalReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), RefusalReason::ALL.len());
        for (i, r) in RefusalReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r}");
        }
    }

    #[test]
    fn auth_errors_map_to_reasons() {
        let cases = [
            (AuthError::Missing, RefusalReason::MissingToken),
            (AuthError::Malformed, RefusalReason::BadToken),
            (AuthError::MissingKeyId, RefusalReason::BadToken),
            (AuthError::UnknownKey, RefusalReason::UnknownKey),
            (
                AuthError::Keys { problem: "down" },
                RefusalReason::KeysUnavailable,
            ),
            (
                AuthError::Invalid {
                    kind: TokenProblem::Audience,
                },
                RefusalReason::WrongAudience,
            ),
            (
                AuthError::Invalid {
                    kind: TokenProblem::NotYetValid,
                },
                RefusalReason::Expired,
            ),
            (
                AuthError::Invalid {
                    kind: TokenProblem::Signature,
                },
                RefusalReason::BadToken,
            ),
            (AuthError::WrongTenant, RefusalReason::WrongTenant),
        ];
        for (e, reason) in cases {
            assert_eq!(RefusalReason::from(&e), reason, "{e}");
        }
    }

    #[test]
    fn counters_add_up() {
        let c = WebhookCounters::default();
        c.accepted(3);
        c.accepted(1);
        c.refused(RefusalReason::Overloaded);
        c.refused(RefusalReason::BadToken);
        c.refused(RefusalReason::BadToken);
        let s = c.stats();
        assert_eq!((s.accepted, s.notifications_dispatched), (2, 4));
        assert_eq!(s.refused.get(RefusalReason::BadToken), 2);
        assert_eq!(s.refused.get(RefusalReason::Overloaded), 1);
        assert_eq!(s.refused.total(), 3);
        assert_eq!(s.refused.iter().count(), RefusalReason::ALL.len());
    }
}

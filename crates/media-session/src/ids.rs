use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// The id of one media session: a random UUID that works as a capability (whoever knows it
/// can connect media to the session), so `Debug` and `Display` show only its first 8 hex
/// digits. Use [`MediaSessionId::expose`] where the full id is needed on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MediaSessionId(Uuid);

impl MediaSessionId {
    /// A fresh id from the operating system's random source.
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    /// Wraps a UUID read from elsewhere.
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The full UUID, for the blob and the media endpoint's URL only.
    pub fn expose(&self) -> &Uuid {
        &self.0
    }

    /// The shortened form used in logs.
    pub fn redacted(&self) -> String {
        let s = self.0.simple().to_string();
        format!("{}…", &s[..8])
    }
}

impl fmt::Debug for MediaSessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MediaSessionId({})", self.redacted())
    }
}

impl fmt::Display for MediaSessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl FromStr for MediaSessionId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// The id of one render (received) or source (sent) context of a media session. It is the
/// `a=msid` track id of the matching m-line at the media endpoint.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContextId(Uuid);

impl ContextId {
    /// A fresh random context id.
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    /// Wraps a UUID read from elsewhere.
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Debug for ContextId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContextId({})", self.0)
    }
}

impl fmt::Display for ContextId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for ContextId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_is_redacted_in_debug_and_display() {
        let id = MediaSessionId::random();
        let full = id.expose().to_string();
        let shown = format!("{id:?} {id}");
        assert!(!shown.contains(&full), "{shown}");
        assert!(shown.contains(&full.replace('-', "")[..8]), "{shown}");
    }

    #[test]
    fn fresh_ids_differ() {
        assert_ne!(MediaSessionId::random(), MediaSessionId::random());
        assert_ne!(ContextId::random(), ContextId::random());
    }
}

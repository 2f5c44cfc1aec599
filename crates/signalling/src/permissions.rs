//! The application permissions the create-call API asks for (the spec's permission table and
//! each example's note).

use std::fmt;
use std::str::FromStr;

/// An application permission of the calling API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Permission {
    /// `Calls.JoinGroupCallsasGuest.All`: join meetings as a guest.
    JoinGroupCallsAsGuest,
    /// `Calls.JoinGroupCalls.All`: join meetings and group calls.
    JoinGroupCalls,
    /// `Calls.Initiate.All`: place one-to-one calls (VoIP and PSTN).
    Initiate,
    /// `Calls.InitiateGroupCalls.All`: place group calls.
    InitiateGroupCalls,
    /// `Calls.AccessMedia.All`: access the media of a call (app-hosted media).
    AccessMedia,
}

impl Permission {
    /// Every permission, least privileged first (the spec's table order), then media access.
    pub const ALL: [Permission; 5] = [
        Permission::JoinGroupCallsAsGuest,
        Permission::JoinGroupCalls,
        Permission::Initiate,
        Permission::InitiateGroupCalls,
        Permission::AccessMedia,
    ];

    /// The name as the spec's permission table spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::JoinGroupCallsAsGuest => "Calls.JoinGroupCallsasGuest.All",
            Permission::JoinGroupCalls => "Calls.JoinGroupCalls.All",
            Permission::Initiate => "Calls.Initiate.All",
            Permission::InitiateGroupCalls => "Calls.InitiateGroupCalls.All",
            Permission::AccessMedia => "Calls.AccessMedia.All",
        }
    }

    /// Other spellings met in the wild: the directory's singular names
    /// (`Calls.JoinGroupCall.All`, ...) and the example notes' `...AsGuest...`.
    fn aliases(self) -> &'static [&'static str] {
        match self {
            Permission::JoinGroupCallsAsGuest => &[
                "Calls.JoinGroupCallsAsGuest.All",
                "Calls.JoinGroupCallAsGuest.All",
            ],
            Permission::JoinGroupCalls => &["Calls.JoinGroupCall.All"],
            Permission::Initiate => &[],
            Permission::InitiateGroupCalls => &["Calls.InitiateGroupCall.All"],
            Permission::AccessMedia => &[],
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a calling permission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a calling permission")]
pub struct UnknownPermission {
    /// The name given.
    pub name: String,
}

impl FromStr for Permission {
    type Err = UnknownPermission;

    /// Case-insensitive; accepts the table's names and the aliases above.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Permission::ALL
            .into_iter()
            .find(|p| {
                p.as_str().eq_ignore_ascii_case(s)
                    || p.aliases().iter().any(|a| a.eq_ignore_ascii_case(s))
            })
            .ok_or_else(|| UnknownPermission { name: s.to_owned() })
    }
}

/// The permissions a request needs: **at least one** of `any_of` **and** every one of
/// `all_of`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PermissionRequirement {
    /// Alternatives: holding any one of them is enough (least privileged first).
    pub any_of: Vec<Permission>,
    /// Each of these is needed as well (`Calls.AccessMedia.All` for app-hosted media).
    pub all_of: Vec<Permission>,
}

impl PermissionRequirement {
    /// True when `granted` (e.g. a token's `roles`) satisfies the requirement. Unknown names in
    /// `granted` are ignored.
    pub fn is_satisfied_by<S: AsRef<str>>(&self, granted: &[S]) -> bool {
        self.missing(granted).is_empty()
    }

    /// What `granted` lacks: `all_of` entries not granted, plus the whole `any_of` list when
    /// none of it is granted. Empty when satisfied.
    pub fn missing<S: AsRef<str>>(&self, granted: &[S]) -> Vec<Permission> {
        let held: Vec<Permission> = granted
            .iter()
            .filter_map(|g| g.as_ref().parse().ok())
            .collect();
        let mut missing = Vec::new();
        if !self.any_of.is_empty() && !self.any_of.iter().any(|p| held.contains(p)) {
            missing.extend(self.any_of.iter().copied());
        }
        missing.extend(self.all_of.iter().filter(|p| !held.contains(p)).copied());
        missing
    }

    /// The least privileged set that satisfies the requirement: the first of `any_of` plus
    /// all of `all_of`.
    pub fn minimal(&self) -> Vec<Permission> {
        self.any_of
            .first()
            .into_iter()
            .chain(self.all_of.iter())
            .copied()
            .collect()
    }
}

impl fmt::Display for PermissionRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |list: &[Permission]| {
            list.iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (self.any_of.is_empty(), self.all_of.is_empty()) {
            (true, true) => f.write_str("no permission"),
            (false, true) => write!(f, "one of [{}]", join(&self.any_of)),
            (true, false) => write!(f, "all of [{}]", join(&self.all_of)),
            (false, false) => write!(
                f,
                "one of [{}] and all of [{}]",
                join(&self.any_of),
                join(&self.all_of)
            ),
        }
    }
}

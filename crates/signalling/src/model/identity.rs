//! `identity` and `identitySet`.

use std::fmt;

use serde_json::Value;

use crate::model::core::{FromJson, Path, ToJson, graph_object, odata_type_is};
use crate::model::{EndpointType, ModelError};

/// The `id` of an identity. For a phone identity it is a phone number, so `Debug` shows only
/// its last two characters.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct IdentityId(pub String);

impl IdentityId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IdentityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let looks_like_phone = self.0.starts_with('+') || self.0.starts_with("tel:");
        if looks_like_phone {
            let tail: String = {
                let chars: Vec<char> = self.0.chars().collect();
                chars[chars.len().saturating_sub(2)..].iter().collect()
            };
            write!(f, "IdentityId(\"…{tail}\")")
        } else {
            f.debug_tuple("IdentityId").field(&self.0).finish()
        }
    }
}

impl FromJson for IdentityId {
    fn from_json(value: Value, at: &Path<'_>) -> Result<Self, ModelError> {
        String::from_json(value, at).map(IdentityId)
    }
}

impl ToJson for IdentityId {
    fn to_json(&self) -> Value {
        Value::String(self.0.clone())
    }
}

impl From<&str> for IdentityId {
    fn from(value: &str) -> Self {
        IdentityId(value.to_owned())
    }
}

graph_object! {
    /// `identity` and its communications subtypes (`communicationsUserIdentity`,
    /// `communicationsApplicationIdentity`, `communicationsGuestIdentity`, ...): one struct
    /// carrying the union of their properties; [`Identity::kind`] tells which it is.
    pub struct Identity {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// The object id (a user, an application, a phone number in E.164 form, ...).
        "id" => id: IdentityId,
        /// Display name.
        "displayName" => display_name: String,
        /// Tenant of the identity.
        "tenantId" => tenant_id: String,
        /// `communicationsApplicationIdentity`: the kind of application.
        "applicationType" => application_type: String,
        /// Application and application-instance identities: hidden from the roster.
        "hidden" => hidden: bool,
        /// `communicationsGuestIdentity` / `emailIdentity`: e-mail address.
        "email" => email: String,
        /// `azureCommunicationServicesUserIdentity`: the ACS resource.
        "azureCommunicationServicesResourceId" => azure_communication_services_resource_id: String,
        /// `teamworkUserIdentity`: the kind of user.
        "userIdentityType" => user_identity_type: String,
        /// `userIdentity`: user principal name.
        "userPrincipalName" => user_principal_name: String,
    }
}

/// Which identity type an [`Identity`]'s `@odata.type` names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdentityKind {
    /// `#microsoft.graph.identity`, or no `@odata.type`.
    Identity,
    /// `#microsoft.graph.communicationsUserIdentity`.
    CommunicationsUser,
    /// `#microsoft.graph.communicationsApplicationIdentity`.
    CommunicationsApplication,
    /// `#microsoft.graph.communicationsApplicationInstanceIdentity`.
    CommunicationsApplicationInstance,
    /// `#microsoft.graph.communicationsGuestIdentity`.
    CommunicationsGuest,
    /// `#microsoft.graph.communicationsPhoneIdentity`.
    CommunicationsPhone,
    /// `#microsoft.graph.communicationsEncryptedIdentity`.
    CommunicationsEncrypted,
    /// `#microsoft.graph.azureCommunicationServicesUserIdentity`.
    AzureCommunicationServicesUser,
    /// `#microsoft.graph.teamworkUserIdentity`.
    TeamworkUser,
    /// `#microsoft.graph.teamworkApplicationIdentity`.
    TeamworkApplication,
    /// `#microsoft.graph.emailIdentity`.
    Email,
    /// `#microsoft.graph.userIdentity`.
    User,
    /// Another type, as read.
    Other(String),
}

const IDENTITY_KINDS: &[(&str, IdentityKind)] = &[
    ("microsoft.graph.identity", IdentityKind::Identity),
    (
        "microsoft.graph.communicationsUserIdentity",
        IdentityKind::CommunicationsUser,
    ),
    (
        "microsoft.graph.communicationsApplicationIdentity",
        IdentityKind::CommunicationsApplication,
    ),
    (
        "microsoft.graph.communicationsApplicationInstanceIdentity",
        IdentityKind::CommunicationsApplicationInstance,
    ),
    (
        "microsoft.graph.communicationsGuestIdentity",
        IdentityKind::CommunicationsGuest,
    ),
    (
        "microsoft.graph.communicationsPhoneIdentity",
        IdentityKind::CommunicationsPhone,
    ),
    (
        "microsoft.graph.communicationsEncryptedIdentity",
        IdentityKind::CommunicationsEncrypted,
    ),
    (
        "microsoft.graph.azureCommunicationServicesUserIdentity",
        IdentityKind::AzureCommunicationServicesUser,
    ),
    (
        "microsoft.graph.teamworkUserIdentity",
        IdentityKind::TeamworkUser,
    ),
    (
        "microsoft.graph.teamworkApplicationIdentity",
        IdentityKind::TeamworkApplication,
    ),
    ("microsoft.graph.emailIdentity", IdentityKind::Email),
    ("microsoft.graph.userIdentity", IdentityKind::User),
];

impl Identity {
    /// An identity with an id and a display name, typed `#microsoft.graph.identity`.
    pub fn new(id: &str, display_name: Option<&str>) -> Self {
        Identity {
            odata_type: "#microsoft.graph.identity".to_owned().into(),
            id: IdentityId::from(id).into(),
            display_name: display_name.map(str::to_owned).into(),
            ..Identity::default()
        }
    }

    /// The identity type named by `@odata.type`.
    pub fn kind(&self) -> IdentityKind {
        let Some(raw) = self.odata_type.get() else {
            return IdentityKind::Identity;
        };
        IDENTITY_KINDS
            .iter()
            .find(|(name, _)| odata_type_is(raw, name))
            .map_or_else(
                || IdentityKind::Other(raw.clone()),
                |(_, kind)| kind.clone(),
            )
    }
}

/// The role an identity plays in an [`IdentitySet`]: the key it sits under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdentityRole {
    /// `application`: a bot or other application.
    Application,
    /// `applicationInstance`: an application instance (a bot with a phone number).
    ApplicationInstance,
    /// `user`: a directory user.
    User,
    /// `guest`: a guest with no directory account.
    Guest,
    /// `phone`: a PSTN number.
    Phone,
    /// `device`.
    Device,
    /// `encrypted`: an encrypted identity.
    Encrypted,
    /// `onPremises`: an on-premises user.
    OnPremises,
    /// `azureCommunicationServicesUser`.
    AzureCommunicationServicesUser,
    /// `assertedIdentity`.
    AssertedIdentity,
}

impl IdentityRole {
    /// The property name in an identity set.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityRole::Application => "application",
            IdentityRole::ApplicationInstance => "applicationInstance",
            IdentityRole::User => "user",
            IdentityRole::Guest => "guest",
            IdentityRole::Phone => "phone",
            IdentityRole::Device => "device",
            IdentityRole::Encrypted => "encrypted",
            IdentityRole::OnPremises => "onPremises",
            IdentityRole::AzureCommunicationServicesUser => "azureCommunicationServicesUser",
            IdentityRole::AssertedIdentity => "assertedIdentity",
        }
    }
}

impl fmt::Display for IdentityRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

graph_object! {
    /// `identitySet` (and `communicationsIdentitySet`): who a participant is, by role.
    pub struct IdentitySet {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// An application (bot).
        "application" => application: Box<Identity>,
        /// An application instance.
        "applicationInstance" => application_instance: Box<Identity>,
        /// A directory user.
        "user" => user: Box<Identity>,
        /// A guest.
        "guest" => guest: Box<Identity>,
        /// A phone number.
        "phone" => phone: Box<Identity>,
        /// A device.
        "device" => device: Box<Identity>,
        /// An encrypted identity.
        "encrypted" => encrypted: Box<Identity>,
        /// An on-premises user.
        "onPremises" => on_premises: Box<Identity>,
        /// An Azure Communication Services user.
        "azureCommunicationServicesUser" => azure_communication_services_user: Box<Identity>,
        /// The identity asserted by the caller.
        "assertedIdentity" => asserted_identity: Box<Identity>,
        /// `communicationsIdentitySet`: the endpoint type.
        "endpointType" => endpoint_type: EndpointType,
    }
}

impl IdentitySet {
    /// A set with one identity in `role`, typed `#microsoft.graph.identitySet`.
    pub fn with(role: IdentityRole, identity: Identity) -> Self {
        let mut set = IdentitySet {
            odata_type: "#microsoft.graph.identitySet".to_owned().into(),
            ..IdentitySet::default()
        };
        *set.slot_mut(role) = Box::new(identity).into();
        set
    }

    /// The identity in `role`, if it has a value.
    pub fn get(&self, role: IdentityRole) -> Option<&Identity> {
        self.slot(role).get().map(|b| &**b)
    }

    fn slot(&self, role: IdentityRole) -> &crate::model::Field<Box<Identity>> {
        match role {
            IdentityRole::Application => &self.application,
            IdentityRole::ApplicationInstance => &self.application_instance,
            IdentityRole::User => &self.user,
            IdentityRole::Guest => &self.guest,
            IdentityRole::Phone => &self.phone,
            IdentityRole::Device => &self.device,
            IdentityRole::Encrypted => &self.encrypted,
            IdentityRole::OnPremises => &self.on_premises,
            IdentityRole::AzureCommunicationServicesUser => &self.azure_communication_services_user,
            IdentityRole::AssertedIdentity => &self.asserted_identity,
        }
    }

    fn slot_mut(&mut self, role: IdentityRole) -> &mut crate::model::Field<Box<Identity>> {
        match role {
            IdentityRole::Application => &mut self.application,
            IdentityRole::ApplicationInstance => &mut self.application_instance,
            IdentityRole::User => &mut self.user,
            IdentityRole::Guest => &mut self.guest,
            IdentityRole::Phone => &mut self.phone,
            IdentityRole::Device => &mut self.device,
            IdentityRole::Encrypted => &mut self.encrypted,
            IdentityRole::OnPremises => &mut self.on_premises,
            IdentityRole::AzureCommunicationServicesUser => {
                &mut self.azure_communication_services_user
            }
            IdentityRole::AssertedIdentity => &mut self.asserted_identity,
        }
    }

    /// Every identity that has a value, with its role, in [`IdentityRole`] order.
    pub fn identities(&self) -> impl Iterator<Item = (IdentityRole, &Identity)> {
        const ROLES: [IdentityRole; 10] = [
            IdentityRole::Application,
            IdentityRole::ApplicationInstance,
            IdentityRole::User,
            IdentityRole::Guest,
            IdentityRole::Phone,
            IdentityRole::Device,
            IdentityRole::Encrypted,
            IdentityRole::OnPremises,
            IdentityRole::AzureCommunicationServicesUser,
            IdentityRole::AssertedIdentity,
        ];
        ROLES
            .into_iter()
            .filter_map(|role| self.get(role).map(|identity| (role, identity)))
    }
}

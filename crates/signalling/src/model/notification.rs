//! `commsNotifications` / `commsNotification`: what the service POSTs to a bot's callback.

use serde_json::Value;

use crate::model::core::{FromJson, Path, ToJson, graph_object, graph_type_impls, odata_type_is};
use crate::model::{Call, ChangeType, CommsOperation, ModelError, Participant};

graph_object! {
    /// `commsNotifications`: the body of a callback.
    pub struct CommsNotifications {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// The notifications.
        "value" => value: Vec<CommsNotification>,
    }
}

graph_object! {
    /// `commsNotification`: one change of one resource.
    pub struct CommsNotification {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// Created, updated or deleted.
        "changeType" => change_type: ChangeType,
        /// The resource that changed (`/communications/calls/{id}`, `.../participants`, ...).
        "resourceUrl" => resource_url: String,
        /// The resource that changed, legacy name of `resourceUrl`.
        "resource" => resource: String,
        /// The resource's new state.
        "resourceData" => resource_data: ResourceData,
        /// The callback the notification was sent to.
        "callbackUri" => callback_uri: String,
    }
}

impl CommsNotification {
    /// The resource that changed: `resourceUrl`, or else the legacy `resource`.
    pub fn resource_path(&self) -> Option<&str> {
        self.resource_url
            .get()
            .or_else(|| self.resource.get())
            .map(String::as_str)
    }
}

/// `resourceData` of a notification, dispatched on `@odata.type`: a call, a participant, an
/// operation, or an array of them (a roster update carries an array of participants).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ResourceData {
    /// `#microsoft.graph.call`.
    Call(Box<Call>),
    /// `#microsoft.graph.participant`.
    Participant(Box<Participant>),
    /// A `commsOperation` or one of its subtypes.
    Operation(Box<CommsOperation>),
    /// An array: each element dispatched on its own.
    Collection(Vec<ResourceData>),
    /// An object with another or no `@odata.type`, kept as read.
    Unknown(Value),
}

impl ResourceData {
    /// The call, if this is one.
    pub fn call(&self) -> Option<&Call> {
        match self {
            ResourceData::Call(c) => Some(c),
            _ => None,
        }
    }

    /// The participants this carries: itself, or the participants of a collection.
    pub fn participants(&self) -> Vec<&Participant> {
        match self {
            ResourceData::Participant(p) => vec![p],
            ResourceData::Collection(items) => items
                .iter()
                .filter_map(|item| match item {
                    ResourceData::Participant(p) => Some(&**p),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl FromJson for ResourceData {
    fn from_json(value: Value, at: &Path<'_>) -> Result<Self, ModelError> {
        match value {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| ResourceData::from_json(item, &at.index(i)))
                .collect::<Result<Vec<_>, _>>()
                .map(ResourceData::Collection),
            Value::Object(ref map) => {
                let odata_type = match map.get("@odata.type") {
                    Some(Value::String(s)) => s.as_str(),
                    _ => return Ok(ResourceData::Unknown(value)),
                };
                if odata_type_is(odata_type, "microsoft.graph.call") {
                    Call::from_json(value, at).map(|c| ResourceData::Call(Box::new(c)))
                } else if odata_type_is(odata_type, "microsoft.graph.participant") {
                    Participant::from_json(value, at)
                        .map(|p| ResourceData::Participant(Box::new(p)))
                } else if CommsOperation::is_operation_type(odata_type) {
                    CommsOperation::from_json(value, at)
                        .map(|o| ResourceData::Operation(Box::new(o)))
                } else {
                    Ok(ResourceData::Unknown(value))
                }
            }
            other => Err(ModelError::wrong_type(at, "an object or an array", &other)),
        }
    }
}

impl ToJson for ResourceData {
    fn to_json(&self) -> Value {
        match self {
            ResourceData::Call(c) => c.to_json(),
            ResourceData::Participant(p) => p.to_json(),
            ResourceData::Operation(o) => o.to_json(),
            ResourceData::Collection(items) => {
                Value::Array(items.iter().map(ToJson::to_json).collect())
            }
            ResourceData::Unknown(v) => v.clone(),
        }
    }
}

graph_type_impls!(ResourceData);

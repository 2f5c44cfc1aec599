//! The Microsoft Graph calling model, create-call validation and permissions, and the
//! bot side of the calling service: REST client, token provider, notification webhook and
//! call state.
//!
//! - [`model`]: the beta `call` resource and everything it references, participants,
//!   operations and `commsNotifications`. Unknown properties and explicit `null`s survive a
//!   parse/serialize round trip.
//! - [`parse_call`], [`parse_notifications`], [`parse`]: JSON text to model, in
//!   [`ParseMode::Strict`] (RFC 8259, no duplicated keys) or [`ParseMode::Tolerant`] (also
//!   trailing commas and duplicated keys, last wins), with bounded size and depth and errors
//!   that name a line and column or a JSON path.
//! - [`validate_create_call`]: the service's checks of a create-call request, the scenario it
//!   asks for and the [`PermissionRequirement`] it needs; errors come as a [`GraphError`] that
//!   serializes to Graph's error envelope.
//! - [`client`]: the Graph calling REST API ([`client::GraphClient`]) with a fresh
//!   `client-request-id` per request, typed errors, retries and timeouts.
//! - [`token`]: OAuth2 client credentials, cached and refreshed; static tokens for tests.
//! - [`webhook`]: the axum router that checks callback JWTs, hands notifications on, logs one
//!   line per request and counts outcomes ([`CommunicationsClient::webhook_stats`]).
//! - [`calls`]: the bot-facing API: [`CommunicationsClient`], [`CallRequest`] builders,
//!   incoming calls, and per-call events from a sans-IO [`calls::CallStateMachine`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use signalling::calls::CallEvent;
//! use signalling::token::SecretString;
//! use signalling::{CallRequest, CommunicationsClient, CommunicationsSettings, Credentials};
//!
//! let settings = CommunicationsSettings::new(
//!     "app-id",
//!     "tenant-id",
//!     Credentials::Secret(SecretString::new("app secret")),
//!     "https://bot.contoso.com/callback",
//! );
//! let client = CommunicationsClient::new(settings)?;
//! let app = client.webhook_router(); // serve it with axum at the callback URL
//! # let _ = app;
//! let mut call = client
//!     .calls()
//!     .create(&CallRequest::peer_to_peer("112f7296-5fa4-42ca-bae8-6a692b15d4b8", None))
//!     .await?;
//! while let Some(event) = call.next_event().await {
//!     if let CallEvent::Terminated { result } = event {
//!         println!("ended: {result:?}");
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! ```
//! use signalling::{ParseMode, Permission, Scenario, parse_call, validate_create_call};
//!
//! let body = r##"{
//!   "@odata.type": "#microsoft.graph.call",
//!   "callbackUri": "https://bot.contoso.com/callback",
//!   "targets": [{
//!     "@odata.type": "#microsoft.graph.invitationParticipantInfo",
//!     "identity": { "user": { "id": "112f7296-5fa4-42ca-bae8-6a692b15d4b8", "displayName": "John" } }
//!   }],
//!   "requestedModalities": ["audio"],
//!   "mediaConfig": { "@odata.type": "#microsoft.graph.serviceHostedMediaConfig" },
//!   "x-custom": null
//! }"##;
//! let call = parse_call(body, ParseMode::Strict)?;
//! let request = validate_create_call(&call)?;
//! assert_eq!(request.scenario, Scenario::PeerToPeer);
//! assert!(request.required_permissions.is_satisfied_by(&["Calls.Initiate.All"]));
//! assert!(!request.required_permissions.any_of.contains(&Permission::JoinGroupCalls));
//!
//! // Unknown properties and nulls are kept.
//! use signalling::model::GraphType;
//! assert_eq!(call.to_json_value()["x-custom"], serde_json::Value::Null);
//!
//! // A trailing comma: refused by the strict parser, accepted by the tolerant one.
//! let sloppy = "{\"callbackUri\": \"https://bot.contoso.com/cb\",\n}";
//! let err = parse_call(sloppy, ParseMode::Strict).unwrap_err();
//! assert_eq!(err.to_string(), "trailing comma (accepted only in tolerant mode) at line 1 column 45");
//! assert!(parse_call(sloppy, ParseMode::Tolerant).is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod calls;
pub mod client;
mod error;
mod ids;
pub mod model;
mod parse;
mod permissions;
pub mod token;
mod validate;
pub mod webhook;

pub use calls::{
    Call, CallEvent, CallHandle, CallRequest, CommunicationsClient, CommunicationsSettings,
    Credentials, IncomingCall,
};
pub use error::{ErrorReason, GraphError, RequestError, UriProblem};
pub use ids::{CallId, OperationId, ParticipantId};
pub use parse::{
    Document, MAX_DEPTH, MAX_INPUT_BYTES, ParseError, ParseMode, Position, SyntaxError, parse,
    parse_call, parse_document, parse_notification, parse_notifications, parse_participant,
    parse_value, parse_value_bytes, to_json_pretty,
};
pub use permissions::{Permission, PermissionRequirement, UnknownPermission};
pub use validate::{
    MAX_E164_DIGITS, MAX_GROUP_TARGETS, MediaHosting, MeetingKind, Scenario, ValidatedRequest,
    check_call, check_callback_uri, is_e164, validate_create_call,
};

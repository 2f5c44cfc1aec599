//! What a Graph request can fail with.

use std::fmt;
use std::sync::Arc;

use crate::token::TokenError;

/// A Graph error response, as parsed from its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphApiError {
    /// HTTP status.
    pub status: u16,
    /// `error.code` (`Forbidden`, `BadRequest`, ...); empty when the body had no envelope.
    pub code: String,
    /// `error.message`; empty when the body had no envelope.
    pub message: String,
    /// `innerError.request-id` (or the `request-id` header), when the service sent one.
    pub request_id: Option<String>,
    /// The `client-request-id` this client sent with the request.
    pub client_request_id: String,
}

impl fmt::Display for GraphApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if !self.code.is_empty() {
            write!(f, " {}", self.code)?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request-id {id})")?;
        }
        Ok(())
    }
}

/// Why a Graph request failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The service answered with an error status.
    #[error("Graph refused the request: {0}")]
    Graph(Box<GraphApiError>),
    /// No access token could be had.
    #[error("no access token: {0}")]
    Token(#[from] TokenError),
    /// The request did not reach the service or its answer was cut.
    #[error("transport error (client-request-id {client_request_id}): {source}")]
    Transport {
        /// What the HTTP client said.
        #[source]
        source: Arc<reqwest::Error>,
        /// The request's `client-request-id`.
        client_request_id: String,
    },
    /// No answer within the request timeout.
    #[error("no answer within {timeout_ms} ms (client-request-id {client_request_id})")]
    Timeout {
        /// The timeout.
        timeout_ms: u64,
        /// The request's `client-request-id`.
        client_request_id: String,
    },
    /// The service answered 2xx with a body that does not fit what was asked.
    #[error("unusable response (HTTP {status}): {problem}")]
    BadResponse {
        /// HTTP status.
        status: u16,
        /// What is wrong.
        problem: &'static str,
    },
    /// An argument cannot be sent (an empty id, an empty list).
    #[error("invalid argument `{name}`: {problem}")]
    InvalidArgument {
        /// The argument.
        name: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
}

impl ApiError {
    /// The Graph error, if the service answered with one.
    pub fn graph(&self) -> Option<&GraphApiError> {
        match self {
            ApiError::Graph(e) => Some(e),
            _ => None,
        }
    }

    /// HTTP status of a service answer, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Graph(e) => Some(e.status),
            ApiError::BadResponse { status, .. } => Some(*status),
            _ => None,
        }
    }
}

//! The local calling service: Graph calling API, tokens, notifications and participants.

pub mod identity;
pub mod scenario;
pub mod wav;

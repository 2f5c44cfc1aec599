//! The media session and its serialized blob.

//! botmedia: an app-hosted real-time media engine for calling bots.

//! Mixing N sources, per-source levels, active and dominant speakers.

//! Resampling any rate to and from 16 kHz.

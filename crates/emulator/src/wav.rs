//! WAV files (prompts, voices, recordings): the audio pipeline's reader and writer.

pub use audio_pipeline::wav::*;

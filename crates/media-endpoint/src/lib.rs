//! WebRTC media endpoint at a media session's `mpUri`, bridged to the audio pipeline.

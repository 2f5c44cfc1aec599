//! Tone detection on 16 kHz frames, for the demo's and the load tool's probes.

/// Relative power of `hz` in a 16 kHz frame (Goertzel), 0..=1 of the frame's energy;
/// 0 when the frame's energy (sum of squared samples) is below `silence_below`.
pub(crate) fn tone_share(pcm: &[i16], hz: f32, silence_below: f32) -> f32 {
    let w = 2.0 * std::f32::consts::PI * hz / 16_000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2, mut energy) = (0f32, 0f32, 0f32);
    for &x in pcm {
        let x = f32::from(x);
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
        energy += x * x;
    }
    if energy < silence_below {
        return 0.0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    (2.0 * power / (pcm.len() as f32 * energy)).min(1.0)
}

//! The `leg_datagrams` fuzz target's seed corpus and a few hundred pseudo-random inputs,
//! run as a normal test so CI exercises the leg's datagram handling without cargo-fuzz.

use std::path::Path;

use media_endpoint::fuzzing::leg_datagrams;

#[test]
fn the_seed_corpus_runs_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/leg_datagrams");
    let mut seeds = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus directory") {
        let path = entry.expect("a corpus entry").path();
        leg_datagrams(&std::fs::read(&path).expect("a seed"));
        seeds += 1;
    }
    assert!(seeds >= 5, "{seeds} seeds in {}", dir.display());
}

/// SplitMix64: the inputs are the same on every run.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn pseudo_random_inputs_run_clean() {
    let mut state = 0x5eed;
    for _ in 0..INPUTS {
        let len = (next(&mut state) % 600) as usize;
        let input: Vec<u8> = (0..len).map(|_| next(&mut state) as u8).collect();
        leg_datagrams(&input);
    }
}

const INPUTS: usize = 200;

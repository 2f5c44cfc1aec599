//! Seeded network impairments applied to what the far end sends towards the engine: random
//! loss, bursty loss (a two-state Gilbert-Elliott channel) and jitter (each packet held back
//! by a uniform random delay, so packets reorder). The same seed gives the same losses and
//! delays, so a condition can be repeated exactly against two engines.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What happens to the packets sent towards the engine.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Impairment {
    /// Long-run share of packets lost, in percent (0..100).
    pub loss_percent: f64,
    /// Mean length of a loss burst in packets. `None` (or <= 1) loses packets independently;
    /// with a value the losses come in bursts of that mean length (Gilbert-Elliott), at the
    /// same long-run `loss_percent`.
    pub mean_burst: Option<f64>,
    /// Each packet is delayed by a uniform random 0..`jitter_ms` ms before it is sent.
    pub jitter_ms: u32,
    /// Seed of the random choices.
    pub seed: u64,
}

/// SplitMix64: small, fast and good enough to draw losses and delays reproducibly.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform draw in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Decides, packet by packet, which are lost and how long each of the others is held back.
#[derive(Clone, Debug)]
pub struct Impairer {
    loss: f64,
    /// Gilbert-Elliott transition probabilities good->bad and bad->good; `None` for
    /// independent loss.
    burst: Option<(f64, f64)>,
    bad: bool,
    jitter: Duration,
    loss_rng: Rng,
    jitter_rng: Rng,
}

impl Impairer {
    /// An impairer for `imp`. Loss and jitter draw from separate streams, so changing the
    /// jitter leaves the lost packets the same.
    pub fn new(imp: &Impairment) -> Self {
        let loss = (imp.loss_percent / 100.0).clamp(0.0, 1.0);
        // Gilbert channel (every packet in the bad state is lost): a burst's length is
        // geometric with mean 1/p_bg; the stationary bad share p_gb/(p_gb+p_bg) is the loss.
        let burst = imp
            .mean_burst
            .filter(|&b| b > 1.0 && loss > 0.0 && loss < 1.0)
            .map(|b| {
                let p_bg = 1.0 / b;
                let p_gb = (loss * p_bg / (1.0 - loss)).min(1.0);
                (p_gb, p_bg)
            });
        Impairer {
            loss,
            burst,
            bad: false,
            jitter: Duration::from_millis(u64::from(imp.jitter_ms)),
            loss_rng: Rng::new(imp.seed),
            jitter_rng: Rng::new(imp.seed ^ 0xA5A5_5A5A_DEAD_BEEF),
        }
    }

    /// Whether the next packet is lost.
    pub fn lose(&mut self) -> bool {
        match self.burst {
            None => self.loss > 0.0 && self.loss_rng.unit() < self.loss,
            Some((p_gb, p_bg)) => {
                let u = self.loss_rng.unit();
                self.bad = if self.bad { u >= p_bg } else { u < p_gb };
                self.bad
            }
        }
    }

    /// How long the next packet is held back before it is sent.
    pub fn delay(&mut self) -> Duration {
        if self.jitter.is_zero() {
            return Duration::ZERO;
        }
        self.jitter.mul_f64(self.jitter_rng.unit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn losses(imp: &Impairment, n: usize) -> Vec<bool> {
        let mut i = Impairer::new(imp);
        (0..n).map(|_| i.lose()).collect()
    }

    fn mean_run(l: &[bool]) -> f64 {
        let (mut runs, mut lost, mut prev) = (0, 0, false);
        for &x in l {
            if x {
                lost += 1;
                if !prev {
                    runs += 1;
                }
            }
            prev = x;
        }
        f64::from(lost) / f64::from(runs.max(1))
    }

    #[test]
    fn random_loss_has_its_rate_and_no_bursts() {
        let imp = Impairment {
            loss_percent: 10.0,
            seed: 7,
            ..Default::default()
        };
        let l = losses(&imp, 100_000);
        let rate = l.iter().filter(|&&x| x).count() as f64 / l.len() as f64;
        assert!((rate - 0.10).abs() < 0.005, "{rate}");
        assert!(mean_run(&l) < 1.2, "{}", mean_run(&l));
        assert_eq!(l, losses(&imp, 100_000), "same seed, same losses");
    }

    #[test]
    fn burst_loss_has_its_rate_and_mean_burst() {
        let imp = Impairment {
            loss_percent: 10.0,
            mean_burst: Some(3.0),
            seed: 11,
            ..Default::default()
        };
        let l = losses(&imp, 200_000);
        let rate = l.iter().filter(|&&x| x).count() as f64 / l.len() as f64;
        assert!((rate - 0.10).abs() < 0.01, "{rate}");
        assert!((mean_run(&l) - 3.0).abs() < 0.2, "{}", mean_run(&l));
    }

    #[test]
    fn jitter_stays_in_range() {
        let mut i = Impairer::new(&Impairment {
            jitter_ms: 40,
            seed: 3,
            ..Default::default()
        });
        let d: Vec<Duration> = (0..10_000).map(|_| i.delay()).collect();
        assert!(d.iter().all(|d| *d < Duration::from_millis(40)));
        let mean = d.iter().sum::<Duration>() / 10_000;
        assert!(mean > Duration::from_millis(18) && mean < Duration::from_millis(22));
    }
}

//! The media clock: 100 ns ticks of the monotonic clock.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};

/// A point or a span on the media clock, in 100 ns units (the anchor platform's unit).
///
/// Points come from [`now`]; they are monotonic and never go back. Arithmetic saturates
/// at zero rather than wrapping, so a span computed from two points in the wrong order
/// reads as zero instead of as 58 000 years.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ticks(pub u64);

impl Ticks {
    /// Zero ticks.
    pub const ZERO: Ticks = Ticks(0);
    /// Ticks in one millisecond.
    pub const PER_MILLI: u64 = 10_000;
    /// Ticks in one second.
    pub const PER_SECOND: u64 = 10_000_000;

    /// A span of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Ticks {
        Ticks(ms * Self::PER_MILLI)
    }

    /// A span of `us` microseconds.
    pub const fn from_micros(us: u64) -> Ticks {
        Ticks(us.saturating_mul(10))
    }

    /// A span of `ns` nanoseconds (rounded down to 100 ns).
    pub const fn from_nanos(ns: u64) -> Ticks {
        Ticks(ns / 100)
    }

    /// This span in whole microseconds.
    pub const fn as_micros(self) -> u64 {
        self.0 / 10
    }

    /// This span in whole milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.0 / Self::PER_MILLI
    }

    /// This span in nanoseconds.
    pub const fn as_nanos(self) -> u64 {
        self.0 * 100
    }

    /// `self - earlier`, or zero when `earlier` is later.
    pub const fn saturating_sub(self, earlier: Ticks) -> Ticks {
        Ticks(self.0.saturating_sub(earlier.0))
    }

    /// This span as a [`std::time::Duration`].
    pub const fn to_duration(self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.as_nanos())
    }
}

impl Add for Ticks {
    type Output = Ticks;
    fn add(self, rhs: Ticks) -> Ticks {
        Ticks(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign for Ticks {
    fn add_assign(&mut self, rhs: Ticks) {
        *self = *self + rhs;
    }
}

impl Sub for Ticks {
    type Output = Ticks;
    fn sub(self, rhs: Ticks) -> Ticks {
        self.saturating_sub(rhs)
    }
}

impl fmt::Debug for Ticks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:04}ms",
            self.0 / Self::PER_MILLI,
            self.0 % Self::PER_MILLI
        )
    }
}

/// The duration of one frame: 20 ms.
pub const FRAME_DURATION: Ticks = Ticks::from_millis(20);

/// The media clock now: the system's monotonic clock (`CLOCK_MONOTONIC` on Linux, which
/// is also what the pipeline threads sleep against), in 100 ns ticks.
///
/// Allocation-free and lock-free; callable from any thread.
pub fn now() -> Ticks {
    Ticks::from_nanos(monotonic_nanos())
}

#[cfg(unix)]
fn monotonic_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on unix.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(not(unix))]
fn monotonic_nanos() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    epoch.elapsed().as_nanos() as u64
}

/// Sleeps until the media clock reads `deadline` (an absolute deadline, so sleeping
/// in a loop does not accumulate drift). Returns at once when `deadline` has passed.
pub(crate) fn sleep_until(deadline: Ticks) {
    #[cfg(target_os = "linux")]
    {
        let nanos = deadline.as_nanos();
        let ts = libc::timespec {
            tv_sec: (nanos / 1_000_000_000) as libc::time_t,
            tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
        };
        loop {
            // SAFETY: `ts` is a valid timespec; a null remainder is allowed with TIMER_ABSTIME.
            let rc = unsafe {
                libc::clock_nanosleep(
                    libc::CLOCK_MONOTONIC,
                    libc::TIMER_ABSTIME,
                    &ts,
                    std::ptr::null_mut(),
                )
            };
            // EINTR: a signal woke us early; the deadline is absolute, so just sleep again.
            if rc != libc::EINTR {
                return;
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let left = deadline.saturating_sub(now());
        if left > Ticks::ZERO {
            std::thread::sleep(left.to_duration());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_monotonic_and_sleeps_to_deadline() {
        let a = now();
        let deadline = a + Ticks::from_millis(3);
        sleep_until(deadline);
        let b = now();
        assert!(b >= deadline, "woke at {b:?} before {deadline:?}");
        assert!(now() >= b);
    }

    #[test]
    fn units_convert() {
        assert_eq!(Ticks::from_micros(1_500), Ticks::from_nanos(1_500_000));
        assert_eq!(Ticks::from_micros(1_000), Ticks::from_millis(1));
        assert_eq!(Ticks::from_micros(7).as_micros(), 7);
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Ticks(5) - Ticks(9), Ticks::ZERO);
        assert_eq!(Ticks::from_millis(20).as_micros(), 20_000);
        assert_eq!(format!("{:?}", Ticks(200_123)), "20.0123ms");
    }
}

//! Real-time scheduling and core pinning of pipeline threads, best effort.

use crate::config::Realtime;
use std::sync::atomic::{AtomicBool, Ordering};

static WARNED: AtomicBool = AtomicBool::new(false);

/// Asks for SCHED_FIFO and pins the calling thread; returns whether real-time
/// scheduling was granted. Warns once per process when refused.
pub(crate) fn apply(index: usize, policy: Realtime) -> bool {
    let Realtime::Try {
        priority,
        pin_cores,
    } = policy
    else {
        return false;
    };
    let (fifo, pinned) = imp::apply(index, priority, pin_cores);
    if (!fifo || (pin_cores && !pinned)) && !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            realtime = fifo,
            pinned,
            "audio pipeline threads run without {}: the process may not change it \
             (needs CAP_SYS_NICE or an RLIMIT_RTPRIO); ticks may run late under load",
            if fifo {
                "core pinning"
            } else {
                "SCHED_FIFO real-time priority"
            }
        );
    }
    fifo
}

#[cfg(target_os = "linux")]
mod imp {
    pub(super) fn apply(index: usize, priority: u8, pin: bool) -> (bool, bool) {
        let param = libc::sched_param {
            sched_priority: i32::from(priority.clamp(1, 99)),
        };
        // SAFETY: pthread_self() is the calling thread; `param` is a valid sched_param.
        let fifo =
            unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) }
                == 0;
        let pinned = pin && pin_to_allowed_core(index);
        (fifo, pinned)
    }

    fn pin_to_allowed_core(index: usize) -> bool {
        // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
        let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: `allowed` is a writable cpu_set_t of `size` bytes; pid 0 is this thread.
        if unsafe { libc::sched_getaffinity(0, size, &mut allowed) } != 0 {
            return false;
        }
        // SAFETY (closure): `cpu` < CPU_SETSIZE, the bound of the set.
        let is_allowed = |cpu: &usize| unsafe { libc::CPU_ISSET(*cpu, &allowed) };
        let count = (0..libc::CPU_SETSIZE as usize).filter(is_allowed).count();
        if count == 0 {
            return false;
        }
        let Some(chosen) = (0..libc::CPU_SETSIZE as usize)
            .filter(is_allowed)
            .nth(index % count)
        else {
            return false;
        };
        // SAFETY: as above, zeroed cpu_set_t is the empty set.
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `chosen` came from CPU_ISSET over 0..CPU_SETSIZE, so it is in bounds.
        unsafe { libc::CPU_SET(chosen, &mut one) };
        // SAFETY: `one` is a valid cpu_set_t of `size` bytes; pid 0 is this thread.
        unsafe { libc::sched_setaffinity(0, size, &one) == 0 }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub(super) fn apply(_index: usize, _priority: u8, _pin: bool) -> (bool, bool) {
        (false, false)
    }
}

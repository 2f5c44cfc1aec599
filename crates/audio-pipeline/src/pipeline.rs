//! The platform: pipeline threads ticking every call on absolute 20 ms deadlines.

use crate::call::{Call, CallId, CallState};
use crate::config::{CallConfig, ConfigError, HealthThresholds, PipelineConfig};
use crate::error::{AdmissionError, StartError};
use crate::rt;
use crate::stats::{Capacity, PlatformHealth, ThreadLoad, ThreadLoadCell, health_to_u64, set};
use crate::time::{FRAME_DURATION, Ticks, now, sleep_until};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Waker;
use std::thread::JoinHandle;

/// Ticks per health window: one second.
const WINDOW_TICKS: u64 = 50;
/// Distinct network drivers a pipeline thread wakes once per tick (more are woken per call).
const WAKE_SET: usize = 8;
/// Ticks in a window that must exceed a lateness limit for it to count.
const LATE_TICKS_FOR_HEALTH: u64 = 5;
/// Falling further behind than this skips deadlines instead of catching up.
const MAX_CATCH_UP: Ticks = Ticks::from_millis(100);

struct WorkerControl {
    commands: rtrb::Producer<Box<CallState>>,
    garbage: rtrb::Consumer<Box<CallState>>,
}

struct Shared {
    control: Mutex<Vec<WorkerControl>>,
    loads: Vec<Arc<ThreadLoadCell>>,
    /// Calls assigned to each thread, including ones awaiting removal.
    assigned: Vec<AtomicU64>,
    shutdown: AtomicBool,
    next_id: AtomicU64,
}

impl Shared {
    fn collect_garbage(&self) {
        let mut control = self.control.lock().unwrap_or_else(PoisonError::into_inner);
        for (i, w) in control.iter_mut().enumerate() {
            while let Ok(call) = w.garbage.pop() {
                drop(call);
                self.assigned[i].fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// The media platform's audio engine: a fixed set of pipeline threads.
///
/// Dropping it stops the threads (after their current tick) and frees every call.
pub struct Pipeline {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    reaper: Option<JoinHandle<()>>,
    max_calls_per_thread: usize,
    thresholds: HealthThresholds,
    interval: Ticks,
    admit_by_load: bool,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("threads", &self.workers.len())
            .field("calls", &self.calls())
            .field("health", &self.health())
            .finish()
    }
}

impl Pipeline {
    /// Starts the pipeline threads.
    pub fn start(config: PipelineConfig) -> Result<Pipeline, StartError> {
        if config.threads == 0 {
            return Err(ConfigError::ZeroCapacity { which: "threads" }.into());
        }
        if config.tick_interval == Ticks::ZERO {
            return Err(ConfigError::ZeroCapacity {
                which: "tick_interval",
            }
            .into());
        }
        if config.max_calls_per_thread == 0 {
            return Err(ConfigError::ZeroCapacity {
                which: "max_calls_per_thread",
            }
            .into());
        }
        let n = config.threads;
        let per = config.max_calls_per_thread;
        let mut controls = Vec::with_capacity(n);
        let mut ends = Vec::with_capacity(n);
        for _ in 0..n {
            let (cmd_tx, cmd_rx) = rtrb::RingBuffer::new(per);
            let (gc_tx, gc_rx) = rtrb::RingBuffer::new(per);
            controls.push(WorkerControl {
                commands: cmd_tx,
                garbage: gc_rx,
            });
            ends.push((cmd_rx, gc_tx));
        }
        let shared = Arc::new(Shared {
            control: Mutex::new(controls),
            loads: (0..n)
                .map(|_| Arc::new(ThreadLoadCell::default()))
                .collect(),
            assigned: (0..n).map(|_| AtomicU64::new(0)).collect(),
            shutdown: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
        });
        let mut pipeline = Pipeline {
            shared: Arc::clone(&shared),
            workers: Vec::with_capacity(n),
            reaper: None,
            max_calls_per_thread: per,
            thresholds: config.health,
            interval: config.tick_interval,
            admit_by_load: config.admit_by_load,
        };
        for (index, (commands, garbage)) in ends.into_iter().enumerate() {
            let worker = Worker {
                index,
                calls: Vec::with_capacity(per),
                commands,
                garbage,
                load: Arc::clone(&shared.loads[index]),
                shared: Arc::clone(&shared),
                thresholds: config.health,
                interval: config.tick_interval,
                hook: None,
            };
            let realtime = config.realtime;
            let hook = config.on_thread_start.clone();
            let handle = std::thread::Builder::new()
                .name(format!("audio-pipeline-{index}"))
                .spawn(move || {
                    let mut worker = worker;
                    let granted = rt::apply(index, realtime);
                    set(&worker.load.realtime, u64::from(granted));
                    if let Some(hook) = hook.as_ref() {
                        hook(index);
                    }
                    worker.hook = hook;
                    worker.run();
                })
                .map_err(|source| StartError::Spawn { index, source })?;
            pipeline.workers.push(handle);
        }
        let reaper_shared = Arc::clone(&shared);
        let reaper = std::thread::Builder::new()
            .name("audio-pipeline-reaper".into())
            .spawn(move || {
                while !reaper_shared.shutdown.load(Ordering::Acquire) {
                    std::thread::park_timeout(std::time::Duration::from_millis(50));
                    reaper_shared.collect_garbage();
                }
            })
            .map_err(|source| StartError::Spawn { index: n, source })?;
        pipeline.reaper = Some(reaper);
        Ok(pipeline)
    }

    /// Adds a call to the least loaded thread. All its buffers, codecs and queues are
    /// allocated here, on the calling thread. Refused when a thread measured
    /// [`PlatformHealth::Overloaded`] over its last second, when one more call would take
    /// every thread past its admission budget at the measured cost per call
    /// ([`AdmissionError::AtCapacity`], see [`Pipeline::capacity`]), or when every thread
    /// is full; the other calls are never stalled (the hand-over is a wait-free queue
    /// the thread drains at its tick).
    pub fn add_call(&self, config: CallConfig) -> Result<Call, AdmissionError> {
        if self.shared.shutdown.load(Ordering::Acquire) {
            return Err(AdmissionError::ShutDown);
        }
        if self.admit_by_load && self.measured_health() == PlatformHealth::Overloaded {
            return Err(AdmissionError::Overloaded);
        }
        self.shared.collect_garbage();
        let (call_cost, _) = self.call_cost();
        let per_thread = if self.admit_by_load {
            self.calls_per_thread(call_cost)
        } else {
            self.max_calls_per_thread
        };
        let id = CallId(self.shared.next_id.fetch_add(1, Ordering::Relaxed));
        let halves = CallState::create(id, config)?;
        let mut control = self
            .shared
            .control
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Under the lock: concurrent admissions see each other's calls in `assigned`.
        let chosen = (0..control.len())
            .min_by_key(|&i| self.shared.assigned[i].load(Ordering::Relaxed))
            .filter(|&i| self.shared.assigned[i].load(Ordering::Relaxed) < per_thread as u64);
        let Some(i) = chosen else {
            if per_thread < self.max_calls_per_thread {
                return Err(AdmissionError::AtCapacity {
                    calls: self.calls(),
                    call_cost_us: call_cost.as_micros(),
                    budget_us: self.budget_per_thread().as_micros(),
                });
            }
            return Err(AdmissionError::Full {
                threads: control.len(),
                per_thread: self.max_calls_per_thread,
            });
        };
        // Cannot be full: the queue holds max_calls_per_thread and `assigned` counts
        // every call queued or running on this thread.
        if control[i].commands.push(halves.state).is_err() {
            return Err(AdmissionError::Full {
                threads: control.len(),
                per_thread: self.max_calls_per_thread,
            });
        }
        self.shared.assigned[i].fetch_add(1, Ordering::Relaxed);
        Ok(halves.call)
    }

    /// The media clock now (same as [`crate::now`]).
    pub fn now(&self) -> Ticks {
        now()
    }

    /// The platform health: the worst of its threads' over their last second and of
    /// the projection admission makes. Projected, it is
    /// [`PlatformHealth::Overloaded`] when no thread has room for one more call and
    /// [`PlatformHealth::HeavilyLoaded`] when even the least loaded thread's calls are
    /// projected past [`HealthThresholds::heavy_busy_fraction`] of the tick.
    pub fn health(&self) -> PlatformHealth {
        let (call_cost, _) = self.call_cost();
        let per_thread = self.calls_per_thread(call_cost) as u64;
        let least = self
            .shared
            .assigned
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        let projected = if least >= per_thread {
            PlatformHealth::Overloaded
        } else if least as f64 * call_cost.0 as f64
            > f64::from(self.thresholds.heavy_busy_fraction) * self.interval.0 as f64
        {
            PlatformHealth::HeavilyLoaded
        } else {
            PlatformHealth::Normal
        };
        self.measured_health().max(projected)
    }

    /// Health as the threads measured it over their last second.
    fn measured_health(&self) -> PlatformHealth {
        self.shared
            .loads
            .iter()
            .map(|l| l.snapshot().health)
            .max()
            .unwrap_or(PlatformHealth::Normal)
    }

    /// The cost of one call per tick used by admission, and whether it was measured.
    fn call_cost(&self) -> (Ticks, bool) {
        let measured = self
            .shared
            .loads
            .iter()
            .map(|l| l.snapshot().call_cost)
            .max()
            .unwrap_or(Ticks::ZERO);
        if measured > Ticks::ZERO {
            (measured, true)
        } else {
            (self.thresholds.assumed_call_cost, false)
        }
    }

    fn budget_per_thread(&self) -> Ticks {
        let fraction = f64::from(self.thresholds.admission_busy_fraction.max(0.0));
        Ticks((self.interval.0 as f64 * fraction) as u64)
    }

    /// Calls one thread may hold at `call_cost` each: the budget's worth, at most
    /// `max_calls_per_thread`, at least one (a call that alone exceeds the budget still
    /// runs on an empty thread: the measured health guards that case).
    fn calls_per_thread(&self, call_cost: Ticks) -> usize {
        let fit = self.budget_per_thread().0 / call_cost.0.max(1);
        (fit as usize).clamp(1, self.max_calls_per_thread)
    }

    /// What admission sees now: cost per call, budget per thread, calls and room left.
    pub fn capacity(&self) -> Capacity {
        let (call_cost, measured) = self.call_cost();
        let per_thread = self.calls_per_thread(call_cost) as u64;
        let room = self
            .shared
            .assigned
            .iter()
            .map(|a| per_thread.saturating_sub(a.load(Ordering::Relaxed)) as usize)
            .sum();
        Capacity {
            call_cost,
            measured,
            budget_per_thread: self.budget_per_thread(),
            calls: self.calls(),
            room,
        }
    }

    /// Load figures per thread.
    pub fn thread_loads(&self) -> Vec<ThreadLoad> {
        self.shared.loads.iter().map(|l| l.snapshot()).collect()
    }

    /// Calls on the platform (including removed ones not yet freed).
    pub fn calls(&self) -> usize {
        self.shared
            .assigned
            .iter()
            .map(|a| a.load(Ordering::Relaxed) as usize)
            .sum()
    }

    /// Number of pipeline threads.
    pub fn threads(&self) -> usize {
        self.workers.len()
    }

    /// Stops the threads and frees every call (also done on drop).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        for w in self.workers.drain(..) {
            // A worker that panicked has nothing left to clean up; its calls were
            // dropped during unwinding.
            let _ = w.join();
        }
        if let Some(r) = self.reaper.take() {
            r.thread().unpark();
            let _ = r.join();
        }
        self.shared.collect_garbage();
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Worker {
    index: usize,
    calls: Vec<Box<CallState>>,
    commands: rtrb::Consumer<Box<CallState>>,
    garbage: rtrb::Producer<Box<CallState>>,
    load: Arc<ThreadLoadCell>,
    shared: Arc<Shared>,
    thresholds: HealthThresholds,
    interval: Ticks,
    /// Kept until the thread ends: dropping what may be the last reference to the hook
    /// would free memory on this thread after setup.
    hook: Option<crate::config::ThreadStartHook>,
}

#[derive(Default)]
struct Window {
    ticks: u64,
    max_lateness: Ticks,
    max_busy: Ticks,
    busy_sum: u64,
    /// Sum over ticks of the calls that were sending (their encoder ran).
    sending_call_ticks: u64,
    over_heavy: u64,
    over_overloaded: u64,
}

impl Worker {
    fn run(mut self) {
        let _ = self.index;
        // Deadlines are computed from the start and the tick count, never by adding up
        // sleeps, so they do not drift however long the thread runs.
        let start = now() + self.interval;
        let mut tick: u64 = 0;
        let mut window = Window::default();
        let mut late_ticks = 0u64;
        let mut skipped = 0u64;
        let mut ran = 0u64;
        loop {
            let deadline = start + Ticks(tick * self.interval.0);
            let media_time = start + Ticks(tick * FRAME_DURATION.0);
            sleep_until(deadline);
            if self.shared.shutdown.load(Ordering::Acquire) {
                break;
            }
            let woke = now();
            let lateness = woke.saturating_sub(deadline);
            self.admit_and_remove();
            let late = lateness >= self.thresholds.late_tick;
            // Every call's received frame first, then every call's encoding: the bot's
            // frames are not held back behind the other calls' encoders (most of a
            // tick's work), so the last call's frame is handed over after the receive
            // work of the calls before it only.
            let mut sending = 0u64;
            for call in self.calls.iter_mut() {
                call.receive_tick(media_time, late);
            }
            // The network drivers of the calls that queued packets, each woken once, after
            // the whole tick: a driver woken early would wake again for the next call.
            let mut wake: [Option<&Waker>; WAKE_SET] = [None; WAKE_SET];
            for call in self.calls.iter_mut() {
                sending += u64::from(call.shared.send_active.load(Ordering::Relaxed));
                if call.send_tick(media_time)
                    && let Some(w) = call.shared.outbound_waker.get()
                    && !wake.iter().flatten().any(|k| k.will_wake(w))
                {
                    match wake.iter_mut().find(|s| s.is_none()) {
                        Some(free) => *free = Some(w),
                        // More distinct drivers than the set holds: woken as they come.
                        None => w.wake_by_ref(),
                    }
                }
            }
            for w in wake.iter().flatten() {
                w.wake_by_ref();
            }
            let busy = now().saturating_sub(woke);

            ran += 1;
            late_ticks += u64::from(late);
            window.ticks += 1;
            window.max_lateness = window.max_lateness.max(lateness);
            window.max_busy = window.max_busy.max(busy);
            window.busy_sum += busy.0;
            window.sending_call_ticks += sending;
            window.over_heavy += u64::from(lateness > self.thresholds.heavy_lateness);
            window.over_overloaded += u64::from(lateness > self.thresholds.overloaded_lateness);
            if window.ticks >= WINDOW_TICKS {
                self.publish(&window, ran, late_ticks, skipped);
                window = Window::default();
            }

            tick += 1;
            let next = start + Ticks(tick * self.interval.0);
            let behind = now().saturating_sub(next);
            let max_catch_up = Ticks(self.interval.0 * (MAX_CATCH_UP.0 / FRAME_DURATION.0));
            if behind > max_catch_up {
                // Too far behind to catch up with a burst of ticks: skip those deadlines
                // (the pacer and jitter buffer see the gap in media time).
                let n = behind.0 / self.interval.0;
                tick += n;
                skipped += n;
            }
        }
        // Calls still here are dropped with `self` on this thread at shutdown: the
        // real-time phase is over.
    }

    fn admit_and_remove(&mut self) {
        while self.calls.len() < self.calls.capacity() {
            match self.commands.pop() {
                Ok(call) => self.calls.push(call),
                Err(_) => break,
            }
        }
        let mut i = 0;
        while i < self.calls.len() {
            if !self.calls[i].shared.removed.load(Ordering::Acquire) {
                i += 1;
                continue;
            }
            if self.garbage.is_full() {
                // Freed on a later tick, once the reaper has emptied the queue.
                break;
            }
            let call = self.calls.swap_remove(i);
            // Checked not full above and this thread is the only producer.
            let _ = self.garbage.push(call);
        }
        set(&self.load.calls, self.calls.len() as u64);
    }

    fn publish(&self, w: &Window, total: u64, late: u64, skipped: u64) {
        let l = &self.load;
        let mean_busy = w.busy_sum / w.ticks.max(1);
        let busy_fraction = mean_busy as f32 / self.interval.0 as f32;
        let t = &self.thresholds;
        let health = if busy_fraction > t.overloaded_busy_fraction
            || w.over_overloaded >= LATE_TICKS_FOR_HEALTH
        {
            PlatformHealth::Overloaded
        } else if busy_fraction > t.heavy_busy_fraction || w.over_heavy >= LATE_TICKS_FOR_HEALTH {
            PlatformHealth::HeavilyLoaded
        } else {
            PlatformHealth::Normal
        };
        set(&l.ticks, total);
        set(&l.max_lateness, w.max_lateness.0);
        set(&l.max_busy, w.max_busy.0);
        set(&l.mean_busy, mean_busy);
        set(&l.late_ticks, late);
        set(&l.skipped_ticks, skipped);
        set(&l.health, health_to_u64(health));
        if w.sending_call_ticks >= WINDOW_TICKS {
            // At least a call's worth of sending over the window: enough to measure.
            // Busy time includes the receive side and the thread's own overhead, so
            // this over-estimates a call slightly, which admission wants. Peaks are
            // taken at once and forgotten slowly (an eighth per window).
            let cost = w.busy_sum / w.sending_call_ticks;
            let old = l.call_cost.load(Ordering::Relaxed);
            let held = if cost >= old || old == 0 {
                cost
            } else {
                old - (old - cost) / 8
            };
            set(&l.call_cost, held);
        }
    }
}

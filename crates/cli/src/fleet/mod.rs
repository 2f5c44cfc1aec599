//! `botmedia fleet`: several `botmedia serve` instances on one machine behind one front,
//! the way a Kubernetes StatefulSet and its ingress run them (see `deploy/`).
//!
//! Each instance is a child process with its own id (`botmedia-0`, `botmedia-1`, ...), its
//! own API, webhook and media listeners, and its own callback URL on the front
//! (`{front}/callback/{id}`), so every notification about a call reaches the instance that
//! hosts its media. The front plays the ingress and a fleet-wide API:
//!
//! | request | what the front does |
//! |---|---|
//! | `/callback/{id}` | passes the notification to instance `id`'s webhook |
//! | `/callback` | the app's shared webhook (new incoming calls): passes it to the ready instance with the fewest calls, or, when none is ready, to a running one, which rejects the call busy |
//! | `POST /calls` | places the call on the ready instance with the fewest calls (the next one when it refuses); 503 when none takes it |
//! | `GET /calls`, `GET /calls/{id}`, `DELETE /calls/{id}` | the instances' calls, each with its `instance` |
//! | `GET /instances` | every instance: pid, state, readiness, calls, restarts |
//! | `POST /instances/{id}/drain`, `POST /instances/{id}/kill` | SIGTERM (a drain) or SIGKILL (a failure) |
//! | `GET /healthz`, `GET /readyz` | the front runs; some instance is ready |
//!
//! Readiness is each instance's own `/readyz`, polled every [`POLL_INTERVAL`]: an instance
//! draining, heavily loaded, overloaded or at `max_calls` takes no new call. With
//! `restart`, an instance that dies (a signal or a non-zero exit) is started again with the
//! same id and ports, as a StatefulSet would, and learns nothing of its predecessor's calls:
//! the service ends those when their media stops.

pub mod load;
mod router;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// How often each instance's readiness is read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// The most instances one fleet runs.
pub const MAX_INSTANCES: usize = 32;
/// Pause before an instance that died is started again.
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// What to run.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FleetOptions {
    /// How many instances.
    pub instances: usize,
    /// The front's address (port 0: any free port).
    pub listen: SocketAddr,
    /// The `serve` config file every instance reads.
    pub config: Option<PathBuf>,
    /// The local emulator every instance uses (`BOTMEDIA_EMULATOR`), when set.
    pub emulator: Option<String>,
    /// A UDP port range for ICE, split evenly between the instances (`BOTMEDIA_ICE_PORTS`).
    pub ice_ports: Option<(u16, u16)>,
    /// Start an instance that died again (same id and ports).
    pub restart: bool,
    /// The `botmedia` binary the instances run.
    pub binary: PathBuf,
}

impl FleetOptions {
    /// Options for `instances` instances of `binary` behind a front on `listen`.
    pub fn new(instances: usize, listen: SocketAddr, binary: PathBuf) -> Self {
        Self {
            instances,
            listen,
            config: None,
            emulator: None,
            ice_ports: None,
            restart: false,
            binary,
        }
    }
}

/// Why the fleet could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// The options cannot work.
    #[error("{0}")]
    Options(String),
    /// A listener or a process could not start.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

/// Where an instance is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// Its process runs but its API has not answered yet.
    Starting,
    /// Its API answers.
    Running,
    /// It was sent SIGTERM and is draining.
    Draining,
    /// Its process ended; it will be started again.
    Restarting,
    /// Its process ended for good.
    Stopped,
}

/// What the front knows of one instance.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    /// Its id, also its callback path's last segment.
    pub id: String,
    /// Its process, while it runs.
    pub pid: Option<u32>,
    /// Where it is in its life.
    pub phase: Phase,
    /// Whether it admits new calls (its `/readyz` said 200 at the last poll).
    pub ready: bool,
    /// Its `/readyz` status: `ready`, `draining`, `atCapacity`, `heavilyLoaded`, ...
    pub status: String,
    /// Its running calls at the last poll.
    pub calls: u64,
    /// Its API.
    pub api: String,
    /// Its webhook, where the front passes its notifications.
    pub webhook: String,
    /// The callback URL the service is given for its calls.
    pub callback_url: String,
    /// Times it was started again.
    pub restarts: u32,
    /// How its last process ended (`exit 0`, `signal 9`), once one did.
    pub last_exit: Option<String>,
}

/// One instance: fixed identity and ports, changing state.
#[derive(Debug)]
pub(crate) struct Instance {
    pub(crate) id: String,
    pub(crate) api: SocketAddr,
    pub(crate) webhook: SocketAddr,
    callback_url: String,
    ice_ports: Option<(u16, u16)>,
    state: Mutex<InstanceState>,
    restarts: AtomicU32,
}

#[derive(Debug)]
struct InstanceState {
    pid: Option<u32>,
    phase: Phase,
    ready: bool,
    status: String,
    calls: u64,
    /// Calls placed or offered through the front since the last poll (spreads a burst).
    pending: u64,
    /// Calls being placed or offered on it right now.
    reserved: u64,
    last_exit: Option<String>,
    /// SIGTERM was sent through the front: its clean exit is the end of a drain.
    drain_requested: bool,
}

impl Instance {
    pub(crate) fn view(&self) -> InstanceView {
        let s = lock(&self.state);
        InstanceView {
            id: self.id.clone(),
            pid: s.pid,
            phase: s.phase,
            ready: s.ready,
            status: s.status.clone(),
            calls: s.calls,
            api: format!("http://{}", self.api),
            webhook: format!("http://{}", self.webhook),
            callback_url: self.callback_url.clone(),
            restarts: self.restarts.load(Ordering::Relaxed),
            last_exit: s.last_exit.clone(),
        }
    }

    /// Whether its process runs.
    pub(crate) fn is_running(&self) -> bool {
        lock(&self.state).pid.is_some()
    }

    /// Whether it admitted calls at the last poll.
    pub(crate) fn is_ready(&self) -> bool {
        lock(&self.state).ready
    }

    /// Calls it runs plus those sent its way since the last poll or on their way now.
    fn load(&self) -> (bool, bool, u64) {
        let s = lock(&self.state);
        (s.ready, s.pid.is_some(), s.calls + s.pending + s.reserved)
    }

    /// A call or an incoming call's notification has been passed on to it: `taken` when it
    /// took the call (counted until the next poll sees it), not when it refused.
    pub(crate) fn release(&self, taken: bool) {
        let mut s = lock(&self.state);
        s.reserved = s.reserved.saturating_sub(1);
        if taken {
            s.pending += 1;
        }
    }

    /// Marks it not ready until the next poll (it refused a call).
    fn refused(&self, status: &str) {
        let mut s = lock(&self.state);
        s.ready = false;
        status.clone_into(&mut s.status);
    }

    /// Sends `signal` to its process; false when it has none.
    pub(crate) fn signal(&self, signal: libc::c_int) -> bool {
        let mut s = lock(&self.state);
        let Some(pid) = s.pid else {
            return false;
        };
        if signal == libc::SIGTERM {
            s.drain_requested = true;
            s.phase = Phase::Draining;
            s.ready = false;
            "draining".clone_into(&mut s.status);
        }
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: kill(2) with a pid this fleet started and still holds (reaped only by
        // its supervisor, which clears `pid` first under the same lock).
        unsafe { libc::kill(pid, signal) == 0 }
    }
}

/// The fleet: its instances and the client the front talks to them with.
#[derive(Debug)]
pub(crate) struct Fleet {
    pub(crate) instances: Vec<Arc<Instance>>,
    pub(crate) http: reqwest::Client,
    stopping: AtomicBool,
    /// Held while a placement is chosen and reserved, so concurrent ones spread.
    placing: Mutex<()>,
}

impl Fleet {
    pub(crate) fn get(&self, id: &str) -> Option<&Arc<Instance>> {
        self.instances.iter().find(|i| i.id == id)
    }

    /// The best instance for a new call not in `tried`, reserved for it (release it with
    /// [`Instance::release`]): the ready one with the least load, or (when `fallback`) a
    /// running one that is not ready, which refuses the call cleanly.
    pub(crate) fn reserve(&self, tried: &[String], fallback: bool) -> Option<Arc<Instance>> {
        let _placing = lock(&self.placing);
        let inst = self
            .placement(fallback)
            .into_iter()
            .find(|i| !tried.contains(&i.id))?;
        lock(&inst.state).reserved += 1;
        Some(inst)
    }

    /// Instances to try for a new call, best first: ready ones by load, then (when
    /// `fallback`) running ones that are not ready, which refuse cleanly.
    fn placement(&self, fallback: bool) -> Vec<Arc<Instance>> {
        let mut ready: Vec<(u64, usize, Arc<Instance>)> = Vec::new();
        let mut running: Vec<(u64, usize, Arc<Instance>)> = Vec::new();
        for (i, inst) in self.instances.iter().enumerate() {
            let (is_ready, is_running, load) = inst.load();
            if is_ready {
                ready.push((load, i, inst.clone()));
            } else if is_running {
                running.push((load, i, inst.clone()));
            }
        }
        ready.sort_by_key(|(load, i, _)| (*load, *i));
        running.sort_by_key(|(load, i, _)| (*load, *i));
        let mut out: Vec<Arc<Instance>> = ready.into_iter().map(|(_, _, i)| i).collect();
        if fallback {
            out.extend(running.into_iter().map(|(_, _, i)| i));
        }
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A free loopback TCP port (bound, read, released: the instance binds it right after).
fn free_port() -> Result<SocketAddr, FleetError> {
    let l = StdListener::bind("127.0.0.1:0").map_err(|source| FleetError::Io {
        what: "finding a free port".into(),
        source,
    })?;
    l.local_addr().map_err(|source| FleetError::Io {
        what: "finding a free port".into(),
        source,
    })
}

/// The `i`th of `n` even parts of `low..=high`.
fn port_share(range: (u16, u16), i: usize, n: usize) -> Option<(u16, u16)> {
    let (low, high) = (usize::from(range.0), usize::from(range.1));
    let size = (high + 1 - low) / n;
    if size == 0 {
        return None;
    }
    let start = low + i * size;
    let end = start + size - 1;
    Some((u16::try_from(start).ok()?, u16::try_from(end).ok()?))
}

/// Runs the fleet until SIGTERM or Ctrl-C, then drains every instance and returns.
/// `started` gets the front's address once it listens.
pub async fn run(
    options: FleetOptions,
    started: impl FnOnce(SocketAddr, &[InstanceView]),
) -> Result<(), FleetError> {
    if options.instances == 0 || options.instances > MAX_INSTANCES {
        return Err(FleetError::Options(format!(
            "--instances must be 1 to {MAX_INSTANCES}, not {}",
            options.instances
        )));
    }
    if let Some((low, high)) = options.ice_ports
        && port_share((low, high), 0, options.instances).is_none()
    {
        return Err(FleetError::Options(format!(
            "the ICE port range {low}-{high} is smaller than one port per instance"
        )));
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| FleetError::Io {
            what: "listening for SIGTERM".into(),
            source,
        })?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| FleetError::Io {
            what: format!("listening on {}", options.listen),
            source,
        })?;
    let front = listener.local_addr().map_err(|source| FleetError::Io {
        what: "reading the front's address".into(),
        source,
    })?;
    let mut instances = Vec::with_capacity(options.instances);
    for i in 0..options.instances {
        let id = format!("botmedia-{i}");
        instances.push(Arc::new(Instance {
            callback_url: format!("http://{front}/callback/{id}"),
            id,
            api: free_port()?,
            webhook: free_port()?,
            ice_ports: options
                .ice_ports
                .and_then(|r| port_share(r, i, options.instances)),
            state: Mutex::new(InstanceState {
                pid: None,
                phase: Phase::Starting,
                ready: false,
                status: "starting".into(),
                calls: 0,
                pending: 0,
                reserved: 0,
                last_exit: None,
                drain_requested: false,
            }),
            restarts: AtomicU32::new(0),
        }));
    }
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| FleetError::Options(format!("cannot build the HTTP client: {e}")))?;
    let fleet = Arc::new(Fleet {
        instances,
        http,
        stopping: AtomicBool::new(false),
        placing: Mutex::new(()),
    });

    let shared_callback = format!("http://{front}/callback");
    let mut supervisors = Vec::new();
    for inst in &fleet.instances {
        supervisors.push(tokio::spawn(supervise(
            fleet.clone(),
            inst.clone(),
            options.clone(),
            shared_callback.clone(),
        )));
    }
    let poller = tokio::spawn(poll(fleet.clone()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = router::router(fleet.clone());
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stop_rx.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "the fleet's front stopped");
        }
    });
    let views: Vec<InstanceView> = fleet.instances.iter().map(|i| i.view()).collect();
    started(front, &views);
    tracing::info!(front = %front, instances = fleet.instances.len(), "fleet running");

    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping: draining every instance");
    fleet.stopping.store(true, Ordering::Release);
    for inst in &fleet.instances {
        inst.signal(libc::SIGTERM);
    }
    for s in supervisors {
        let _ = s.await;
    }
    poller.abort();
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    tracing::info!("fleet stopped");
    Ok(())
}

/// Runs one instance's process, again after it dies when `restart` is on.
async fn supervise(
    fleet: Arc<Fleet>,
    inst: Arc<Instance>,
    options: FleetOptions,
    shared_callback: String,
) {
    loop {
        let mut cmd = Command::new(&options.binary);
        cmd.arg("serve");
        if let Some(config) = &options.config {
            cmd.arg("--config").arg(config);
        }
        cmd.env("BOTMEDIA_INSTANCE_ID", &inst.id)
            .env("BOTMEDIA_API_LISTEN", inst.api.to_string())
            .env("BOTMEDIA_WEBHOOK_LISTEN", inst.webhook.to_string())
            .env("BOTMEDIA_CALLBACK_URL", &inst.callback_url)
            .env("BOTMEDIA_SHARED_CALLBACK_URL", &shared_callback)
            .env("BOTMEDIA_MEDIA_LISTEN", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(url) = &options.emulator {
            cmd.env("BOTMEDIA_EMULATOR", url);
        }
        if let Some((low, high)) = inst.ice_ports {
            cmd.env("BOTMEDIA_ICE_PORTS", format!("{low}-{high}"));
        }
        // SAFETY: the closure runs in the child between fork and exec and only makes one
        // async-signal-safe system call. An instance outliving its fleet (killed outright)
        // gets SIGTERM and drains instead of running on unsupervised.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(instance = %inst.id, error = %e, "cannot start the instance");
                let mut s = lock(&inst.state);
                s.phase = Phase::Stopped;
                s.last_exit = Some(format!("not started: {e}"));
                return;
            }
        };
        {
            let mut s = lock(&inst.state);
            s.pid = child.id();
            s.phase = Phase::Starting;
            s.ready = false;
            "starting".clone_into(&mut s.status);
            s.drain_requested = false;
        }
        tracing::info!(instance = %inst.id, pid = child.id(), "instance started");
        if let Some(out) = child.stdout.take() {
            tokio::spawn(relay(inst.id.clone(), BufReader::new(out)));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(relay(inst.id.clone(), BufReader::new(err)));
        }
        let status = child.wait().await;
        let (exit, clean) = match &status {
            Ok(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(s)) {
                (Some(code), _) => (format!("exit {code}"), code == 0),
                (None, Some(sig)) => (format!("signal {sig}"), false),
                (None, None) => ("ended".to_owned(), false),
            },
            Err(e) => (format!("unknown: {e}"), false),
        };
        let drained = {
            let mut s = lock(&inst.state);
            s.pid = None;
            s.ready = false;
            s.calls = 0;
            s.pending = 0;
            s.reserved = 0;
            s.last_exit = Some(exit.clone());
            s.drain_requested
        };
        let again = options.restart && !clean && !fleet.stopping.load(Ordering::Acquire);
        tracing::info!(instance = %inst.id, exit, drained, restart = again, "instance ended");
        if !again {
            let mut s = lock(&inst.state);
            s.phase = Phase::Stopped;
            "stopped".clone_into(&mut s.status);
            return;
        }
        {
            let mut s = lock(&inst.state);
            s.phase = Phase::Restarting;
            "restarting".clone_into(&mut s.status);
        }
        tokio::time::sleep(RESTART_DELAY).await;
        if fleet.stopping.load(Ordering::Acquire) {
            lock(&inst.state).phase = Phase::Stopped;
            return;
        }
        inst.restarts.fetch_add(1, Ordering::Relaxed);
    }
}

/// Copies an instance's output lines to the fleet's standard error, led by its id.
async fn relay<R: tokio::io::AsyncRead + Unpin>(id: String, reader: BufReader<R>) {
    use std::io::Write;
    let mut lines = reader.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let _ = writeln!(std::io::stderr().lock(), "[{id}] {line}");
    }
}

/// Reads every running instance's `/readyz` every [`POLL_INTERVAL`].
async fn poll(fleet: Arc<Fleet>) {
    loop {
        let reads = fleet.instances.iter().map(|inst| {
            let inst = inst.clone();
            let http = fleet.http.clone();
            async move {
                if lock(&inst.state).pid.is_none() {
                    return;
                }
                let url = format!("http://{}/readyz", inst.api);
                let answer = http.get(&url).timeout(Duration::from_secs(1)).send().await;
                let read = match answer {
                    Ok(r) => {
                        let ok = r.status().is_success();
                        let body: serde_json::Value = r.json().await.unwrap_or_default();
                        Some((
                            ok,
                            body["status"].as_str().unwrap_or("unknown").to_owned(),
                            body["calls"].as_u64().unwrap_or(0),
                        ))
                    }
                    Err(_) => None,
                };
                let mut s = lock(&inst.state);
                if s.pid.is_none() {
                    return;
                }
                match read {
                    Some((ok, status, calls)) => {
                        if s.phase == Phase::Starting {
                            s.phase = Phase::Running;
                        }
                        if status == "draining" {
                            s.phase = Phase::Draining;
                        }
                        s.ready = ok && s.phase == Phase::Running;
                        s.status = status;
                        s.calls = calls;
                        s.pending = 0;
                    }
                    None => {
                        s.ready = false;
                        if s.phase != Phase::Starting && s.phase != Phase::Draining {
                            "unreachable".clone_into(&mut s.status);
                        }
                    }
                }
            }
        });
        join_all(reads).await;
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Awaits every future (a small join_all: the instances are few).
async fn join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    for h in handles {
        let _ = h.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_shares_are_disjoint_and_inside() {
        let a = port_share((40000, 40299), 0, 3).unwrap();
        let b = port_share((40000, 40299), 1, 3).unwrap();
        let c = port_share((40000, 40299), 2, 3).unwrap();
        assert_eq!(a, (40000, 40099));
        assert_eq!(b, (40100, 40199));
        assert_eq!(c, (40200, 40299));
        assert_eq!(port_share((40000, 40001), 0, 3), None);
        assert_eq!(port_share((65535, 65535), 0, 1), Some((65535, 65535)));
    }
}

//! State shared by the emulator's handlers and tasks.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;

use crate::calls::CallEntry;
use crate::identity::Identity;
use crate::scenario::Scenario;

/// Entries kept in the event log.
const LOG_CAPACITY: usize = 500;
/// Ended calls kept for GET and the dashboard.
const ENDED_CALLS_KEPT: usize = 200;

/// What an event log entry is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum LogKind {
    /// An API request.
    Request,
    /// A notification delivered.
    Notification,
    /// Something failed.
    Error,
    /// Media events.
    Media,
}

/// One event of the log the dashboard shows.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u128,
    /// What it is about.
    pub kind: LogKind,
    /// The call, if any.
    pub call_id: Option<String>,
    /// A one-line description.
    pub text: String,
    /// The notification body, for notifications.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

pub(crate) struct Shared {
    pub scenario: Scenario,
    pub identity: Identity,
    pub base_url: OnceLock<String>,
    pub calls: Mutex<BTreeMap<String, Arc<CallEntry>>>,
    pub ended: Mutex<VecDeque<String>>,
    pub log: Mutex<VecDeque<LogEntry>>,
    pub http: reqwest::Client,
    /// App-hosted media: the pipeline and conference threads, started on first use.
    pub media: crate::media::MediaHub,
    /// Recordings of recordResponse operations.
    pub recordings: crate::recordings::Recordings,
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it: every critical
/// section here leaves the data consistent at each step.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(scenario: Scenario, identity: Identity) -> Self {
        // reqwest is built without a default TLS provider (the workspace uses ring, not
        // aws-lc); install ring unless the process already chose one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let scenario_unmixed = scenario.settings.unmixed_audio;
        Self {
            scenario,
            identity,
            base_url: OnceLock::new(),
            calls: Mutex::new(BTreeMap::new()),
            recordings: crate::recordings::Recordings::default(),
            ended: Mutex::new(VecDeque::new()),
            log: Mutex::new(VecDeque::new()),
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_default(),
            media: {
                let hub = crate::media::MediaHub::new();
                hub.set_unmixed_audio(scenario_unmixed);
                hub
            },
        }
    }

    pub fn base_url(&self) -> &str {
        self.base_url
            .get()
            .map_or("http://127.0.0.1", String::as_str)
    }

    /// A duration of emulated time, in real time.
    pub fn scaled(&self, d: Duration) -> Duration {
        d.div_f64(self.scenario.settings.time_scale)
    }

    pub fn call(&self, id: &str) -> Option<Arc<CallEntry>> {
        lock(&self.calls).get(id).cloned()
    }

    /// Remembers that a call ended; the oldest ended calls are forgotten.
    pub fn retire(&self, id: &str) {
        let mut ended = lock(&self.ended);
        ended.push_back(id.to_owned());
        while ended.len() > ENDED_CALLS_KEPT {
            if let Some(old) = ended.pop_front() {
                lock(&self.calls).remove(&old);
            }
        }
    }

    pub fn log(&self, kind: LogKind, call_id: Option<&str>, text: String) {
        self.push(LogEntry {
            at_ms: now_ms(),
            kind,
            call_id: call_id.map(str::to_owned),
            text,
            body: None,
        });
    }

    pub fn log_notification(
        &self,
        call_id: &str,
        summary: &str,
        body: &Value,
        status: u16,
        attempts: u32,
    ) {
        self.push(LogEntry {
            at_ms: now_ms(),
            kind: LogKind::Notification,
            call_id: Some(call_id.to_owned()),
            text: format!("{summary} → {status} (attempt {attempts})"),
            body: Some(body.clone()),
        });
    }

    fn push(&self, entry: LogEntry) {
        let mut log = lock(&self.log);
        log.push_back(entry);
        while log.len() > LOG_CAPACITY {
            log.pop_front();
        }
    }
}

pub(crate) fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

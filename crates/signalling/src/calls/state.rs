//! The state of one call, driven by its notifications (sans-IO: no clock, no network; `now`
//! comes in, events and actions come out).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::ids::{CallId, OperationId, ParticipantId};
use crate::model::{
    Call, CallState, ChangeType, CommsNotification, CommsOperation, GraphType, OperationStatus,
    Participant, ResourceData, ResultInfo, ToneInfo,
};

/// Default interval of automatic keepAlive requests on an established call.
pub const DEFAULT_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// Tone sequence ids remembered to drop duplicated tone notifications.
const TONES_REMEMBERED: usize = 64;
/// Operations remembered per call.
const OPERATIONS_REMEMBERED: usize = 1024;
/// Participants kept in a roster; more are ignored (a hostile roster cannot grow memory).
pub const MAX_ROSTER: usize = 10_000;

/// What changed in a roster.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct RosterDiff {
    /// Participants who joined.
    pub added: Vec<Participant>,
    /// Participants whose state changed (mute, lobby, streams, ...), as they are now.
    pub updated: Vec<Participant>,
    /// Participants who left, as they were last seen.
    pub removed: Vec<Participant>,
    /// Who waits in the lobby now.
    pub in_lobby: Vec<ParticipantId>,
}

impl RosterDiff {
    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.updated.is_empty() && self.removed.is_empty()
    }
}

/// Something that happened to a call.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CallEvent {
    /// The call moved to another state.
    StateChanged {
        /// The state before (`None` for the first one seen).
        from: Option<CallState>,
        /// The state now.
        to: CallState,
    },
    /// The roster changed.
    RosterChanged(RosterDiff),
    /// A DTMF tone was received.
    Tone(ToneInfo),
    /// An operation moved on (running, completed or failed).
    OperationUpdated {
        /// Its id.
        id: OperationId,
        /// Its status now.
        status: OperationStatus,
        /// The operation as notified.
        operation: Box<CommsOperation>,
    },
    /// The call ended; nothing follows.
    Terminated {
        /// Why, when the service said.
        result: Option<ResultInfo>,
    },
}

/// Something the driver of a [`CallStateMachine`] must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallAction {
    /// Send `POST .../keepAlive`.
    SendKeepAlive,
}

/// Where a state sits in a call's life: notifications that would move a call back to an
/// earlier phase arrived late and are ignored (establishing after established, say).
fn phase(state: &CallState) -> u8 {
    match state {
        CallState::Incoming => 0,
        CallState::Establishing => 1,
        CallState::Ringing => 2,
        CallState::Terminating => 4,
        CallState::Terminated => 5,
        // established, hold, transferring, transferAccepted, redirecting and unknown values
        // can follow one another in any order.
        _ => 3,
    }
}

/// One call's state, roster and operations.
#[derive(Debug)]
pub struct CallStateMachine {
    id: CallId,
    resource: Value,
    state: Option<CallState>,
    roster: BTreeMap<ParticipantId, Participant>,
    roster_sequence: Option<i64>,
    operations: HashMap<OperationId, OperationStatus>,
    operation_order: VecDeque<OperationId>,
    tones_seen: VecDeque<i64>,
    keep_alive_interval: Duration,
    next_keep_alive: Option<Instant>,
    result: Option<ResultInfo>,
}

impl CallStateMachine {
    /// A call known by its id only.
    pub fn new(id: CallId, keep_alive_interval: Duration) -> Self {
        CallStateMachine {
            id,
            resource: Value::Object(Default::default()),
            state: None,
            roster: BTreeMap::new(),
            roster_sequence: None,
            operations: HashMap::new(),
            operation_order: VecDeque::new(),
            tones_seen: VecDeque::new(),
            keep_alive_interval,
            next_keep_alive: None,
            result: None,
        }
    }

    /// The call's id.
    pub fn id(&self) -> &CallId {
        &self.id
    }

    /// The current state (`None` until one is known).
    pub fn state(&self) -> Option<&CallState> {
        self.state.as_ref()
    }

    /// True once the call is terminated.
    pub fn is_terminated(&self) -> bool {
        self.state == Some(CallState::Terminated)
    }

    /// The call resource as last known: every property notified so far merged.
    pub fn call(&self) -> Call {
        Call::from_json_value(self.resource.clone()).unwrap_or_default()
    }

    /// The roster.
    pub fn roster(&self) -> impl Iterator<Item = &Participant> {
        self.roster.values()
    }

    /// Who waits in the lobby.
    pub fn lobby(&self) -> Vec<ParticipantId> {
        self.roster
            .iter()
            .filter(|(_, p)| p.is_in_lobby.get() == Some(&true))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// How the call ended, once it has.
    pub fn result(&self) -> Option<&ResultInfo> {
        self.result.as_ref()
    }

    /// The status of an operation, if known.
    pub fn operation_status(&self, id: &OperationId) -> Option<&OperationStatus> {
        self.operations.get(id)
    }

    /// Takes in the call resource returned by the API (create call, get call).
    pub fn apply_resource(&mut self, call: &Call, now: Instant) -> Vec<CallEvent> {
        let mut events = Vec::new();
        self.apply_call(call, false, now, &mut events);
        events
    }

    /// Records an operation the bot started, from the API's answer.
    pub fn track_operation(&mut self, operation: &CommsOperation, now: Instant) -> Vec<CallEvent> {
        let mut events = Vec::new();
        self.apply_operation(operation, now, &mut events);
        events
    }

    /// Applies one notification about this call. Duplicates and stale notifications give no
    /// events; after `terminated`, nothing does.
    pub fn apply(&mut self, notification: &CommsNotification, now: Instant) -> Vec<CallEvent> {
        let mut events = Vec::new();
        if self.is_terminated() {
            return events;
        }
        let path = notification.resource_path().unwrap_or("");
        let change = notification.change_type.get();
        let Some(data) = notification.resource_data.get() else {
            // A deleted call with no data still ends it.
            if change == Some(&ChangeType::Deleted)
                && !path.contains("/participants")
                && !path.contains("/operations/")
            {
                self.terminate(None, &mut events);
            }
            return events;
        };
        if path.contains("/participants") {
            self.apply_roster(change, data, &mut events);
            return events;
        }
        match data {
            ResourceData::Call(call) => {
                let deleted = change == Some(&ChangeType::Deleted);
                self.apply_call(call, deleted, now, &mut events);
            }
            ResourceData::Operation(op) => self.apply_operation(op, now, &mut events),
            ResourceData::Participant(_) => self.apply_roster(change, data, &mut events),
            ResourceData::Collection(items) => {
                if !data.participants().is_empty() {
                    self.apply_roster(change, data, &mut events);
                } else {
                    for item in items {
                        if let ResourceData::Operation(op) = item {
                            self.apply_operation(op, now, &mut events);
                        }
                    }
                }
            }
            // An object of a type this model does not know, or none: nothing to apply.
            _ => {}
        }
        events
    }

    fn merge_resource(&mut self, call: &Call) {
        let Value::Object(update) = call.to_json_value() else {
            return;
        };
        if let Value::Object(current) = &mut self.resource {
            for (k, v) in update {
                current.insert(k, v);
            }
        }
    }

    fn apply_call(
        &mut self,
        call: &Call,
        deleted: bool,
        now: Instant,
        events: &mut Vec<CallEvent>,
    ) {
        if self.is_terminated() {
            return;
        }
        let new_state = call.state.get().cloned();
        let stale = match (&self.state, &new_state) {
            (Some(current), Some(new)) => phase(new) < phase(current),
            _ => false,
        };
        if !stale {
            self.merge_resource(call);
        }
        if let Some(tone) = call.tone_info.get() {
            let duplicate = tone
                .sequence_id
                .get()
                .is_some_and(|seq| self.tones_seen.contains(seq));
            if !duplicate {
                if let Some(seq) = tone.sequence_id.get() {
                    if self.tones_seen.len() == TONES_REMEMBERED {
                        self.tones_seen.pop_front();
                    }
                    self.tones_seen.push_back(*seq);
                }
                events.push(CallEvent::Tone(tone.clone()));
            }
        }
        match new_state {
            Some(CallState::Terminated) => {
                self.terminate(call.result_info.get().cloned(), events);
            }
            Some(new) if !stale && self.state.as_ref() != Some(&new) => {
                let from = self.state.replace(new.clone());
                if new == CallState::Established && self.next_keep_alive.is_none() {
                    self.next_keep_alive = Some(now + self.keep_alive_interval);
                }
                events.push(CallEvent::StateChanged { from, to: new });
            }
            _ => {}
        }
        if deleted && !self.is_terminated() {
            self.terminate(call.result_info.get().cloned(), events);
        }
    }

    fn terminate(&mut self, result: Option<ResultInfo>, events: &mut Vec<CallEvent>) {
        let from = self.state.replace(CallState::Terminated);
        self.next_keep_alive = None;
        self.result = result.clone();
        events.push(CallEvent::StateChanged {
            from,
            to: CallState::Terminated,
        });
        if !self.roster.is_empty() {
            let removed: Vec<Participant> =
                std::mem::take(&mut self.roster).into_values().collect();
            events.push(CallEvent::RosterChanged(RosterDiff {
                removed,
                ..RosterDiff::default()
            }));
        }
        events.push(CallEvent::Terminated { result });
    }

    fn apply_roster(
        &mut self,
        change: Option<&ChangeType>,
        data: &ResourceData,
        events: &mut Vec<CallEvent>,
    ) {
        let incoming: Vec<&Participant> = data
            .participants()
            .into_iter()
            .filter(|p| p.id.get().is_some_and(|id| !id.is_empty()))
            .collect();
        let mut diff = RosterDiff::default();
        if change == Some(&ChangeType::Deleted) {
            for p in incoming {
                let id = ParticipantId::new(p.id.get().map(String::as_str).unwrap_or(""));
                if let Some(gone) = self.roster.remove(&id) {
                    diff.removed.push(gone);
                }
            }
        } else {
            // A roster sequence number lower than one already applied: a late update.
            let sequence = incoming
                .iter()
                .map(|p| p.roster_sequence_number.get().copied())
                .collect::<Option<Vec<i64>>>()
                .and_then(|s| s.into_iter().max());
            if let (Some(seen), Some(new)) = (self.roster_sequence, sequence)
                && new < seen
            {
                return;
            }
            if sequence.is_some() {
                self.roster_sequence = sequence;
            }
            let full = matches!(data, ResourceData::Collection(_));
            let mut present = std::collections::BTreeSet::new();
            for p in incoming {
                let id = ParticipantId::new(p.id.get().map(String::as_str).unwrap_or(""));
                present.insert(id.clone());
                match self.roster.get(&id) {
                    Some(known) if known == p => {}
                    Some(_) => {
                        diff.updated.push(p.clone());
                        self.roster.insert(id, p.clone());
                    }
                    None if self.roster.len() < MAX_ROSTER => {
                        diff.added.push(p.clone());
                        self.roster.insert(id, p.clone());
                    }
                    None => {}
                }
            }
            // Graph sends the whole roster in a collection: whoever is missing has left.
            if full {
                let gone: Vec<ParticipantId> = self
                    .roster
                    .keys()
                    .filter(|id| !present.contains(*id))
                    .cloned()
                    .collect();
                for id in gone {
                    if let Some(p) = self.roster.remove(&id) {
                        diff.removed.push(p);
                    }
                }
            }
        }
        if !diff.is_empty() {
            diff.in_lobby = self.lobby();
            events.push(CallEvent::RosterChanged(diff));
        }
    }

    fn apply_operation(&mut self, op: &CommsOperation, _now: Instant, events: &mut Vec<CallEvent>) {
        let Some(id) = operation_id(op) else {
            return;
        };
        let Some(status) = op.status().cloned() else {
            return;
        };
        let done =
            |s: &OperationStatus| matches!(s, OperationStatus::Completed | OperationStatus::Failed);
        match self.operations.get(&id) {
            Some(known) if *known == status || done(known) => return,
            Some(_) => {}
            None => {
                if self.operation_order.len() == OPERATIONS_REMEMBERED
                    && let Some(old) = self.operation_order.pop_front()
                {
                    self.operations.remove(&old);
                }
                self.operation_order.push_back(id.clone());
            }
        }
        self.operations.insert(id.clone(), status.clone());
        events.push(CallEvent::OperationUpdated {
            id,
            status,
            operation: Box::new(op.clone()),
        });
    }

    /// When the driver must call [`Self::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_keep_alive
    }

    /// Lets time pass; says what is due.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<CallAction> {
        let due = self.next_keep_alive.filter(|at| *at <= now)?;
        // Scheduled from the due time, not from `now`, so a late wake-up does not drift.
        let mut next = due + self.keep_alive_interval;
        if next <= now {
            next = now + self.keep_alive_interval;
        }
        self.next_keep_alive = Some(next);
        Some(CallAction::SendKeepAlive)
    }
}

/// The id of an operation, whatever its type.
pub(crate) fn operation_id(op: &CommsOperation) -> Option<OperationId> {
    let id = match op {
        CommsOperation::PlayPrompt(o) => o.id.get(),
        CommsOperation::Record(o) => o.id.get(),
        CommsOperation::SendDtmfTones(o) => o.id.get(),
        CommsOperation::InviteParticipants(o) => o.id.get(),
        CommsOperation::Other(o) => o.id.get(),
        CommsOperation::Unknown(v) => {
            return v.get("id").and_then(Value::as_str).map(OperationId::from);
        }
    };
    id.filter(|s| !s.is_empty())
        .map(|s| OperationId::new(s.clone()))
}

/// The call id a resource path names: `/communications/calls/{id}...` or `/app/calls/{id}...`,
/// with or without a version prefix or host.
pub fn call_id_of(resource_path: &str) -> Option<CallId> {
    let rest = resource_path.split_once("/calls/").map(|(_, rest)| rest)?;
    let id = rest.split(['/', '?', '#']).next()?;
    (!id.is_empty() && id.len() <= 256).then(|| CallId::new(id))
}

//! The call state machine in simulated time: order, duplicates, roster diffs, operations,
//! tones, termination and keepAlive scheduling.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use signalling::calls::{CallAction, CallEvent, CallStateMachine, call_id_of};
use signalling::model::{CallState, CommsNotification, GraphType, OperationStatus};
use signalling::{CallId, OperationId, ParticipantId};

const CALL: &str = "/communications/calls/421f1100-f3a0-4b53-a2d0-0ed0a3f5e4f1";

fn note(change: &str, url: &str, data: Value) -> CommsNotification {
    CommsNotification::from_json_value(json!({
        "@odata.type": "#microsoft.graph.commsNotification",
        "changeType": change,
        "resourceUrl": url,
        "resourceData": data,
    }))
    .unwrap()
}

fn state(s: &str) -> CommsNotification {
    note(
        "updated",
        CALL,
        json!({ "@odata.type": "#microsoft.graph.call", "state": s }),
    )
}

fn participant(id: &str, muted: bool, lobby: bool) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.participant",
        "id": id,
        "info": { "identity": { "user": { "id": format!("user-{id}") } } },
        "isMuted": muted,
        "isInLobby": lobby,
    })
}

fn roster(list: Vec<Value>) -> CommsNotification {
    note(
        "updated",
        &format!("{CALL}/participants"),
        Value::Array(list),
    )
}

fn machine() -> CallStateMachine {
    CallStateMachine::new(
        CallId::from("421f1100-f3a0-4b53-a2d0-0ed0a3f5e4f1"),
        Duration::from_secs(900),
    )
}

fn states(events: &[CallEvent]) -> Vec<CallState> {
    events
        .iter()
        .filter_map(|e| match e {
            CallEvent::StateChanged { to, .. } => Some(to.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn established_before_establishing_is_not_undone() {
    let now = Instant::now();
    let mut m = machine();
    let e = m.apply(&state("established"), now);
    assert_eq!(states(&e), [CallState::Established]);
    assert!(m.apply(&state("establishing"), now).is_empty());
    assert!(m.apply(&state("established"), now).is_empty(), "duplicate");
    assert_eq!(m.state(), Some(&CallState::Established));
    // hold and back are both fine mid-call.
    assert_eq!(states(&m.apply(&state("hold"), now)), [CallState::Hold]);
    assert_eq!(
        states(&m.apply(&state("established"), now)),
        [CallState::Established]
    );
}

#[test]
fn every_state_of_the_life_of_a_call_is_followed() {
    let now = Instant::now();
    let mut m = machine();
    let mut seen = Vec::new();
    for s in [
        "incoming",
        "establishing",
        "ringing",
        "established",
        "hold",
        "established",
        "transferring",
        "transferAccepted",
        "terminating",
    ] {
        seen.extend(states(&m.apply(&state(s), now)));
    }
    assert_eq!(seen.len(), 9, "{seen:?}");
    let end = note(
        "deleted",
        CALL,
        json!({ "@odata.type": "#microsoft.graph.call", "state": "terminated",
                "resultInfo": { "code": 200, "subcode": 7015, "message": "transferred" } }),
    );
    let e = m.apply(&end, now);
    assert!(
        matches!(e.last(), Some(CallEvent::Terminated { result: Some(r) })
        if r.subcode.get().and_then(|c| c.as_i64()) == Some(7015))
    );
    assert!(m.is_terminated());
    // Nothing after terminated: not a state, not a duplicate of terminated, not a roster.
    assert!(m.apply(&end, now).is_empty());
    assert!(m.apply(&state("established"), now).is_empty());
    assert!(
        m.apply(&roster(vec![participant("a", false, false)]), now)
            .is_empty()
    );
}

#[test]
fn a_deleted_call_without_state_still_ends() {
    let now = Instant::now();
    let mut m = machine();
    m.apply(&state("established"), now);
    let e = m.apply(
        &note(
            "deleted",
            CALL,
            json!({ "@odata.type": "#microsoft.graph.call" }),
        ),
        now,
    );
    assert!(matches!(
        e.last(),
        Some(CallEvent::Terminated { result: None })
    ));
}

#[test]
fn roster_updates_become_diffs_and_duplicates_none() {
    let now = Instant::now();
    let mut m = machine();
    let e = m.apply(
        &roster(vec![
            participant("a", false, false),
            participant("b", false, true),
        ]),
        now,
    );
    let [CallEvent::RosterChanged(d)] = e.as_slice() else {
        panic!("{e:?}")
    };
    assert_eq!(d.added.len(), 2);
    assert_eq!(d.in_lobby, [ParticipantId::from("b")]);
    // Same roster again: nothing.
    assert!(
        m.apply(
            &roster(vec![
                participant("a", false, false),
                participant("b", false, true)
            ]),
            now
        )
        .is_empty()
    );
    // b admitted, a muted, c joins.
    let e = m.apply(
        &roster(vec![
            participant("a", true, false),
            participant("b", false, false),
            participant("c", false, false),
        ]),
        now,
    );
    let [CallEvent::RosterChanged(d)] = e.as_slice() else {
        panic!("{e:?}")
    };
    assert_eq!((d.added.len(), d.updated.len(), d.removed.len()), (1, 2, 0));
    assert!(d.in_lobby.is_empty());
    // A full roster without a: a removed.
    let e = m.apply(
        &roster(vec![
            participant("b", false, false),
            participant("c", false, false),
        ]),
        now,
    );
    let [CallEvent::RosterChanged(d)] = e.as_slice() else {
        panic!("{e:?}")
    };
    assert_eq!(d.removed.len(), 1);
    assert_eq!(d.removed[0].id.get().unwrap(), "a");
    // A deleted notification for c.
    let e = m.apply(
        &note(
            "deleted",
            &format!("{CALL}/participants"),
            json!([participant("c", false, false)]),
        ),
        now,
    );
    assert!(matches!(e.as_slice(), [CallEvent::RosterChanged(d)] if d.removed.len() == 1));
    assert_eq!(m.roster().count(), 1);
}

#[test]
fn stale_rosters_by_sequence_number_are_ignored() {
    let now = Instant::now();
    let mut m = machine();
    let mut p = participant("a", false, false);
    p["rosterSequenceNumber"] = json!(5);
    m.apply(&roster(vec![p.clone()]), now);
    let mut old = participant("a", true, false);
    old["rosterSequenceNumber"] = json!(3);
    assert!(m.apply(&roster(vec![old]), now).is_empty());
    let mut newer = participant("a", true, false);
    newer["rosterSequenceNumber"] = json!(6);
    assert_eq!(m.apply(&roster(vec![newer]), now).len(), 1);
}

#[test]
fn operations_complete_once() {
    let now = Instant::now();
    let mut m = machine();
    let op = |status: &str| {
        note(
            "deleted",
            &format!("{CALL}/operations/op-1"),
            json!({ "@odata.type": "#microsoft.graph.playPromptOperation", "id": "op-1",
                    "status": status, "completionReason": "completedSuccessfully" }),
        )
    };
    assert_eq!(m.apply(&op("running"), now).len(), 1);
    let e = m.apply(&op("completed"), now);
    assert!(matches!(
        e.as_slice(),
        [CallEvent::OperationUpdated {
            status: OperationStatus::Completed,
            ..
        }]
    ));
    assert!(m.apply(&op("completed"), now).is_empty(), "duplicate");
    assert!(m.apply(&op("running"), now).is_empty(), "late running");
    assert_eq!(
        m.operation_status(&OperationId::from("op-1")),
        Some(&OperationStatus::Completed)
    );
}

#[test]
fn tones_are_delivered_once_per_sequence_id() {
    let now = Instant::now();
    let mut m = machine();
    let tone = |seq: i64, t: &str| {
        note(
            "updated",
            CALL,
            json!({ "@odata.type": "#microsoft.graph.call",
                    "toneInfo": { "sequenceId": seq, "tone": t } }),
        )
    };
    assert_eq!(m.apply(&tone(1, "tone5"), now).len(), 1);
    assert!(m.apply(&tone(1, "tone5"), now).is_empty());
    let e = m.apply(&tone(2, "pound"), now);
    assert!(
        matches!(e.as_slice(), [CallEvent::Tone(t)] if t.tone.get().unwrap().as_str() == "pound")
    );
}

#[test]
fn keep_alive_is_due_every_interval_once_established() {
    let t0 = Instant::now();
    let mut m = machine();
    m.apply(&state("establishing"), t0);
    assert_eq!(m.poll_timeout(), None);
    m.apply(&state("established"), t0);
    let due = m.poll_timeout().unwrap();
    assert_eq!(due, t0 + Duration::from_secs(900));
    assert_eq!(m.handle_timeout(due - Duration::from_secs(1)), None);
    assert_eq!(m.handle_timeout(due), Some(CallAction::SendKeepAlive));
    assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(1800)));
    // A very late wake-up schedules from now, not a burst of catch-ups.
    let late = t0 + Duration::from_secs(10_000);
    assert_eq!(m.handle_timeout(late), Some(CallAction::SendKeepAlive));
    assert_eq!(m.handle_timeout(late), None);
    m.apply(&state("terminated"), late);
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn call_ids_come_from_resource_paths() {
    assert_eq!(
        call_id_of("/communications/calls/abc/participants").unwrap(),
        CallId::from("abc")
    );
    assert_eq!(
        call_id_of("https://graph.microsoft.com/v1.0/app/calls/x-1/operations/2").unwrap(),
        CallId::from("x-1")
    );
    assert_eq!(call_id_of("/communications/calls/"), None);
    assert_eq!(call_id_of("/something/else"), None);
}

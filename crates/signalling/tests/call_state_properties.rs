//! Properties of the call state machine under any order of any notifications, duplicated:
//! no panic, `terminated` is final and reported once, the roster diffs replay to the roster,
//! a call never goes back to an earlier phase, an operation completes at most once.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::{Value, json};
use signalling::calls::{CallEvent, CallStateMachine};
use signalling::model::{CallState, CommsNotification, GraphType, OperationStatus};
use signalling::{CallId, OperationId};

const CALL: &str = "/communications/calls/c-1";
const STATES: [&str; 11] = [
    "incoming",
    "establishing",
    "ringing",
    "established",
    "hold",
    "transferring",
    "transferAccepted",
    "redirecting",
    "terminating",
    "terminated",
    "somethingNew",
];

fn phase(s: &CallState) -> u8 {
    match s {
        CallState::Incoming => 0,
        CallState::Establishing => 1,
        CallState::Ringing => 2,
        CallState::Terminating => 4,
        CallState::Terminated => 5,
        _ => 3,
    }
}

fn notification() -> impl Strategy<Value = Value> {
    let state = (0..STATES.len(), any::<bool>()).prop_map(|(i, deleted)| {
        json!({ "changeType": if deleted { "deleted" } else { "updated" }, "resourceUrl": CALL,
                "resourceData": { "@odata.type": "#microsoft.graph.call", "state": STATES[i] } })
    });
    let roster = (
        prop::collection::vec((0u8..6, any::<bool>(), any::<bool>()), 0..6),
        0u8..3,
    )
        .prop_map(|(people, change)| {
            let list: Vec<Value> = people
                .iter()
                .map(|(id, muted, lobby)| {
                    json!({ "@odata.type": "#microsoft.graph.participant", "id": format!("p{id}"),
                            "isMuted": muted, "isInLobby": lobby })
                })
                .collect();
            let change = ["created", "updated", "deleted"][change as usize];
            json!({ "changeType": change, "resourceUrl": format!("{CALL}/participants"),
                    "resourceData": list })
        });
    let op = (0u8..3, 0u8..4).prop_map(|(id, status)| {
        let status = ["notStarted", "running", "completed", "failed"][status as usize];
        json!({ "changeType": "deleted", "resourceUrl": format!("{CALL}/operations/o{id}"),
                "resourceData": { "@odata.type": "#microsoft.graph.playPromptOperation",
                                  "id": format!("o{id}"), "status": status } })
    });
    let tone = (0i64..4).prop_map(|seq| {
        json!({ "changeType": "updated", "resourceUrl": CALL,
                "resourceData": { "@odata.type": "#microsoft.graph.call",
                                  "toneInfo": { "sequenceId": seq, "tone": "tone1" } } })
    });
    let junk = prop_oneof![
        Just(json!({ "changeType": "updated" })),
        Just(json!({ "resourceUrl": CALL, "resourceData": { "x": 1 } })),
        Just(json!({ "resourceUrl": CALL, "resourceData": [] })),
    ];
    prop_oneof![4 => state, 4 => roster, 2 => op, 1 => tone, 1 => junk]
}

proptest! {
    #[test]
    fn any_sequence_keeps_the_invariants(
        notes in prop::collection::vec(notification(), 0..60),
        dup in prop::collection::vec(any::<bool>(), 60),
    ) {
        let now = Instant::now();
        let mut m = CallStateMachine::new(CallId::from("c-1"), Duration::from_secs(900));
        let mut replay: BTreeMap<String, Value> = BTreeMap::new();
        let mut terminated_events = 0;
        let mut highest_phase = 0u8;
        let mut completed: HashMap<OperationId, usize> = HashMap::new();
        for (i, n) in notes.iter().enumerate() {
            let n = CommsNotification::from_json_value(n.clone()).unwrap();
            let times = if dup[i] { 2 } else { 1 };
            for _ in 0..times {
                for e in m.apply(&n, now) {
                    prop_assert_eq!(terminated_events, 0, "event after Terminated: {:?}", e);
                    match e {
                        CallEvent::StateChanged { to, .. } => {
                            prop_assert!(phase(&to) >= highest_phase, "went back to {}", to);
                            highest_phase = highest_phase.max(phase(&to));
                        }
                        CallEvent::RosterChanged(d) => {
                            for p in d.added.iter().chain(&d.updated) {
                                replay.insert(p.id.get().unwrap().clone(), p.to_json_value());
                            }
                            for p in &d.removed {
                                prop_assert!(replay.remove(p.id.get().unwrap()).is_some());
                            }
                        }
                        CallEvent::OperationUpdated { id, status, .. } => {
                            if matches!(status, OperationStatus::Completed | OperationStatus::Failed) {
                                *completed.entry(id).or_default() += 1;
                            }
                        }
                        CallEvent::Terminated { .. } => terminated_events += 1,
                        _ => {}
                    }
                }
            }
        }
        let roster: BTreeMap<String, Value> = m
            .roster()
            .map(|p| (p.id.get().unwrap().clone(), p.to_json_value()))
            .collect();
        prop_assert_eq!(roster, replay);
        prop_assert!(completed.values().all(|n| *n == 1));
        prop_assert_eq!(terminated_events == 1, m.is_terminated());
        if m.is_terminated() {
            prop_assert!(m.poll_timeout().is_none());
            prop_assert_eq!(m.roster().count(), 0);
        }
    }
}

//! Cost of taking in one notification: parse the callback body (tolerant mode, as the webhook
//! does) and apply it to the call's state machine. Roster updates of 2, 20 and 200
//! participants, a state change and a duplicate.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use signalling::calls::CallStateMachine;
use signalling::{CallId, Document, ParseMode, parse_document};

fn roster_body(n: usize, muted: bool) -> String {
    let list: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "@odata.type": "#microsoft.graph.participant",
                "id": format!("p-{i}"),
                "info": { "@odata.type": "#microsoft.graph.participantInfo",
                    "identity": { "user": { "id": format!("u-{i}"), "displayName": "Someone" } } },
                "mediaStreams": [{ "mediaType": "audio", "sourceId": i.to_string(),
                    "direction": "sendReceive", "serverMuted": false }],
                "isMuted": muted && i == 0,
                "isInLobby": false,
            })
        })
        .collect();
    json!({ "value": [{
        "@odata.type": "#microsoft.graph.commsNotification",
        "changeType": "updated",
        "resourceUrl": "/communications/calls/c-1/participants",
        "resourceData": list,
    }]})
    .to_string()
}

fn first(body: &str) -> signalling::model::CommsNotification {
    match parse_document(body, ParseMode::Tolerant).unwrap() {
        Document::Notifications(n) => n.value.into_option().unwrap().remove(0),
        other => panic!("{}", other.kind()),
    }
}

fn bench(c: &mut Criterion) {
    let now = Instant::now();
    for n in [2, 20, 200] {
        let a = roster_body(n, false);
        let b = roster_body(n, true);
        c.bench_function(&format!("parse+apply roster of {n}, one change"), |bench| {
            let mut m = CallStateMachine::new(CallId::from("c-1"), Duration::from_secs(900));
            m.apply(&first(&a), now);
            let mut flip = false;
            bench.iter(|| {
                flip = !flip;
                let body = if flip { &b } else { &a };
                black_box(m.apply(&first(black_box(body)), now))
            });
        });
        let parsed = first(&a);
        c.bench_function(&format!("apply duplicate roster of {n}"), |bench| {
            let mut m = CallStateMachine::new(CallId::from("c-1"), Duration::from_secs(900));
            m.apply(&parsed, now);
            bench.iter(|| black_box(m.apply(black_box(&parsed), now)));
        });
    }
    let state = json!({ "value": [{
        "changeType": "updated", "resourceUrl": "/communications/calls/c-1",
        "resourceData": { "@odata.type": "#microsoft.graph.call", "state": "established" } }]})
    .to_string();
    c.bench_function("parse+apply state notification", |bench| {
        let mut m = CallStateMachine::new(CallId::from("c-1"), Duration::from_secs(900));
        bench.iter(|| black_box(m.apply(&first(black_box(&state)), now)));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! A bot against the local emulator: the emulator, its echo user, and waiting for a call
//! to come up and carry media.

#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use botmedia::{BotCall, CallEvent, CallItem, CallState};
use emulator::scenario::{Scenario, Voice};
use emulator::{Emulator, EmulatorConfig};

pub const WAIT: Duration = Duration::from_secs(10);

pub async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        scenario: Scenario::default(),
    })
    .await
    .unwrap()
}

/// The built-in scenario's user who echoes what the bot sends.
pub fn echo_user(emu: &Emulator) -> String {
    emu.scenario()
        .users
        .iter()
        .find(|u| matches!(u.says, Voice::Echo))
        .expect("the built-in scenario has a user who echoes")
        .id
        .clone()
}

/// Reads items until the call is established; panics if it ends first.
pub async fn until_established(call: &mut BotCall) {
    loop {
        match tokio::time::timeout(WAIT, call.next()).await.unwrap() {
            Some(CallItem::Call(CallEvent::StateChanged {
                to: CallState::Established,
                ..
            })) => return,
            Some(CallItem::Call(CallEvent::Terminated { result })) => {
                panic!("terminated before established: {result:?}")
            }
            Some(_) => {}
            None => panic!("the call's stream ended"),
        }
    }
}

/// Reads items until `n` frames came in (media flows both ways: the echo user returns
/// what the bot sends, silence included); panics if the call ends first.
pub async fn frames(call: &mut BotCall, n: usize) {
    let mut got = 0;
    while got < n {
        match tokio::time::timeout(WAIT, call.next()).await.unwrap() {
            Some(CallItem::Frame(_)) => got += 1,
            Some(CallItem::Call(CallEvent::Terminated { result })) => {
                panic!("terminated after {got} frames: {result:?}")
            }
            Some(_) => {}
            None => panic!("the call's stream ended after {got} frames"),
        }
    }
}

/// Reads items until the call terminated; returns how it ended.
pub async fn until_terminated(call: &mut BotCall) -> Option<botmedia::graph::model::ResultInfo> {
    loop {
        match tokio::time::timeout(WAIT, call.next()).await.unwrap() {
            Some(CallItem::Call(CallEvent::Terminated { result })) => return result,
            Some(_) => {}
            None => panic!("the call's stream ended without Terminated"),
        }
    }
}

/// A TCP port free a moment ago on 127.0.0.1.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

//! A bot whose media legs bind ICE ports from a range (`MediaPlatformSettings::ice_ports`),
//! against the emulator: several calls carry media with every leg's socket in the range,
//! and with a range of one port a second call is refused cleanly (the service ends it as a
//! media failure) while the first carries on, and the port serves a later call.

#[path = "common/bot.rs"]
mod common;

use std::net::UdpSocket;
use std::ops::RangeInclusive;

use botmedia::{Bot, BotSettings, CallRequest};
use common::{echo_user, emulator, frames, until_established, until_terminated};

/// `len` consecutive UDP ports on 127.0.0.1 that are free now, below the system's
/// ephemeral range (so the emulator's own legs, on ephemeral ports, never land in it).
fn free_range(len: u16) -> RangeInclusive<u16> {
    let mut low = 20_000 + (std::process::id() % 500) as u16 * 20;
    loop {
        let range = low..=low + len - 1;
        if range
            .clone()
            .all(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok())
        {
            return range;
        }
        low += len;
        assert!(low < 32_000, "no free range of {len} ports");
    }
}

/// UDP sockets of this machine bound on 127.0.0.1 to a port of `range`.
fn bound_in(range: &RangeInclusive<u16>) -> usize {
    std::fs::read_to_string("/proc/net/udp")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|local| local.split_once(':'))
        .filter(|(ip, _)| *ip == "0100007F")
        .filter_map(|(_, port)| u16::from_str_radix(port, 16).ok())
        .filter(|p| range.contains(p))
        .count()
}

fn ranged(emulator: &str, ports: RangeInclusive<u16>) -> BotSettings {
    let mut s = BotSettings::emulator(emulator);
    s.media.ice_ports = Some(ports);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_carry_media_on_ranged_ice_ports() {
    let emu = emulator().await;
    let range = free_range(20);
    let bot = Bot::start(ranged(&emu.base_url(), range.clone()))
        .await
        .unwrap();
    let mut calls = Vec::new();
    for _ in 0..3 {
        let mut call = bot
            .call(CallRequest::peer_to_peer(&echo_user(&emu), None))
            .await
            .unwrap();
        until_established(&mut call).await;
        calls.push(call);
    }
    for call in &mut calls {
        frames(call, 25).await;
    }
    // One socket per leg, each on a port of the range.
    assert_eq!(bound_in(&range), 3);
    for call in &mut calls {
        call.end().await.unwrap();
    }
    drop(calls);
    bot.shutdown().await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_port_a_second_call_is_refused_cleanly_and_the_first_carries_on() {
    let emu = emulator().await;
    let range = free_range(1);
    let bot = Bot::start(ranged(&emu.base_url(), range.clone()))
        .await
        .unwrap();
    let mut first = bot
        .call(CallRequest::peer_to_peer(&echo_user(&emu), None))
        .await
        .unwrap();
    until_established(&mut first).await;
    assert_eq!(bound_in(&range), 1);

    // The endpoint refuses the second leg (no free port); the service ends the call as a
    // failure of the bot's media, and the call's media session is released.
    let mut second = bot
        .call(CallRequest::peer_to_peer(&echo_user(&emu), None))
        .await
        .unwrap();
    let result = until_terminated(&mut second).await.expect("a result");
    assert_eq!(
        (
            result.code.get().and_then(|c| c.as_i64()),
            result.subcode.get().and_then(|c| c.as_i64())
        ),
        (Some(500), Some(1005)),
        "{result:?}"
    );
    drop(second);
    frames(&mut first, 25).await;
    assert_eq!(bot.calls().len(), 1);
    // The refused call's pipeline slot is freed (by the pipeline's reaper, soon after).
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while bot.platform().active_calls() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} calls on the pipeline",
            bot.platform().active_calls()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // The first call ends: its port serves the next call.
    first.end().await.unwrap();
    drop(first);
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while bound_in(&range) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ended leg kept its port"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut third = bot
        .call(CallRequest::peer_to_peer(&echo_user(&emu), None))
        .await
        .unwrap();
    until_established(&mut third).await;
    frames(&mut third, 10).await;
    assert_eq!(bound_in(&range), 1);
    third.end().await.unwrap();
    drop(third);
    bot.shutdown().await;
    emu.shutdown().await;
}

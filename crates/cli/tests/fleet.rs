//! `botmedia fleet` end to end: three real `botmedia serve` processes behind the fleet's
//! front, against the emulator (in this process), with a drain, a kill and `botmedia load
//! --fleet`. Every process is stopped on drop; every wait is bounded; everything listens
//! on 127.0.0.1.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use botmedia::emulator::{Emulator, EmulatorConfig};
use common::Lines;
use serde_json::{Value, json};

/// The emulator's user who echoes what the bot sends.
const ECHO_USER: &str = "550fae72-d251-43ec-868c-373732c2704f";

/// The fleet process; on drop: SIGTERM, a bounded wait, then SIGKILL for it and every
/// instance it had.
struct FleetGuard {
    child: Child,
    pids: Arc<Mutex<BTreeSet<u32>>>,
    dir: PathBuf,
}

impl Drop for FleetGuard {
    fn drop(&mut self) {
        signal(self.child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in self.pids.lock().unwrap().iter() {
            signal(*pid, libc::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) on a process this test started.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

struct Fleet {
    front: String,
    http: reqwest::Client,
    stderr: Lines,
    guard: FleetGuard,
}

impl Fleet {
    async fn start(emulator: &str) -> Fleet {
        let dir = std::env::temp_dir().join(format!("botmedia-fleet-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("serve.toml");
        // A long grace: the drained instance's calls go on until the test ends them.
        std::fs::write(
            &config,
            "drain_grace_seconds = 120\nhangup_timeout_seconds = 5\n[answer]\nbehaviour = \"echo\"\n",
        )
        .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_botmedia"));
        cmd.args([
            "fleet",
            "--instances",
            "3",
            "--listen",
            "127.0.0.1:0",
            "--restart",
            "--ice-ports",
            "42000-42299",
            "--emulator",
            emulator,
            "--config",
        ])
        .arg(&config)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        for (name, _) in std::env::vars() {
            if name.starts_with("BOTMEDIA_") {
                cmd.env_remove(name);
            }
        }
        let mut child = cmd.spawn().expect("botmedia fleet starts");
        let stdout = Lines::default().follow(child.stdout.take().unwrap());
        let stderr = Lines::default().follow(child.stderr.take().unwrap());
        let mut guard = FleetGuard {
            child,
            pids: Arc::default(),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let front = loop {
            if let Some(url) = stdout.find("botmedia fleet listening on") {
                break url;
            }
            if let Ok(Some(status)) = guard.child.try_wait() {
                panic!("the fleet exited with {status}: {}", stderr.text());
            }
            assert!(Instant::now() < deadline, "no banner: {}", stderr.text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Fleet {
            front,
            http,
            stderr,
            guard,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.front)
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Instance id → its view; remembers every pid for the guard.
    async fn instances(&self) -> BTreeMap<String, Value> {
        let v = self.get("/instances").await;
        let mut out = BTreeMap::new();
        for i in v["instances"].as_array().unwrap() {
            if let Some(pid) = i["pid"].as_u64() {
                self.guard.pids.lock().unwrap().insert(pid as u32);
            }
            out.insert(i["id"].as_str().unwrap().to_owned(), i.clone());
        }
        out
    }

    /// Call id → (instance, state, frames received, direction).
    async fn calls(&self) -> BTreeMap<String, (String, String, u64, String)> {
        let v = self.get("/calls").await;
        v["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["id"].as_str().unwrap().to_owned(),
                    (
                        c["instance"].as_str().unwrap().to_owned(),
                        c["state"].as_str().unwrap().to_owned(),
                        c["framesReceived"].as_u64().unwrap(),
                        c["direction"].as_str().unwrap().to_owned(),
                    ),
                )
            })
            .collect()
    }

    /// Places a call to the echoing user: (call id, instance).
    async fn place(&self) -> (String, String) {
        let (status, v) = self.post("/calls", json!({ "user": ECHO_USER })).await;
        assert_eq!(status, 201, "{v}\n{}", self.stderr.text());
        (
            v["id"].as_str().unwrap().to_owned(),
            v["instance"].as_str().unwrap().to_owned(),
        )
    }

    /// Waits (bounded) until `check` holds of the instances.
    async fn wait_instances(&self, what: &str, check: impl Fn(&BTreeMap<String, Value>) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(45);
        loop {
            let inst = self.instances().await;
            if check(&inst) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {inst:#?}\n{}",
                self.stderr.text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits (bounded) until every call of `ids` is established with media flowing.
    async fn wait_established(&self, ids: &[String]) {
        let deadline = Instant::now() + Duration::from_secs(45);
        loop {
            let calls = self.calls().await;
            if ids.iter().all(|id| {
                calls
                    .get(id)
                    .is_some_and(|c| c.1 == "established" && c.2 > 0)
            }) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "calls not established: {calls:#?}\n{}",
                self.stderr.text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The emulator's view of its calls: id → (state, result).
async fn emulator_calls(
    http: &reqwest::Client,
    emulator: &str,
) -> BTreeMap<String, (String, String)> {
    let v: Value = http
        .get(format!("{emulator}/emulator/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_owned(),
                (
                    c["state"].as_str().unwrap_or("").to_owned(),
                    c["result"].as_str().unwrap_or("").to_owned(),
                ),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_spreads_calls_drains_one_instance_and_survives_a_killed_one() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let emulator = emu.base_url();
    let fleet = Fleet::start(&emulator).await;
    fleet
        .wait_instances("three ready instances", |i| {
            i.len() == 3 && i.values().all(|v| v["ready"] == true)
        })
        .await;

    // Placement by health: six calls, two on each instance.
    let mut placed: Vec<(String, String)> = Vec::new();
    for _ in 0..6 {
        placed.push(fleet.place().await);
    }
    let mut per_instance: BTreeMap<String, usize> = BTreeMap::new();
    for (_, inst) in &placed {
        *per_instance.entry(inst.clone()).or_default() += 1;
    }
    assert_eq!(
        per_instance.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "{per_instance:?}"
    );

    // Incoming calls arrive at the shared webhook and are answered by some instance, which
    // keeps their notifications on its own callback URL.
    let shared = fleet.url("/callback");
    let mut incoming = Vec::new();
    for _ in 0..3 {
        incoming.push(emu.place_incoming_call(ECHO_USER, &shared, None).unwrap());
    }
    let mut all: Vec<String> = placed.iter().map(|(id, _)| id.clone()).collect();
    all.extend(incoming.iter().cloned());
    fleet.wait_established(&all).await;
    let calls = fleet.calls().await;
    for id in &incoming {
        assert_eq!(calls[id].3, "incoming", "{calls:#?}");
    }
    let call_instance = |id: &str| calls[id].0.clone();
    let by_instance = |inst: &str| -> Vec<String> {
        all.iter()
            .filter(|id| call_instance(id) == inst)
            .cloned()
            .collect()
    };
    let (on0, on1, on2) = (
        by_instance("botmedia-0"),
        by_instance("botmedia-1"),
        by_instance("botmedia-2"),
    );
    assert!(
        on0.len() >= 2 && on1.len() >= 2 && on2.len() >= 2,
        "{calls:#?}"
    );

    // SIGTERM on botmedia-0: it drains; its calls go on; new calls go elsewhere.
    let (status, _) = fleet.post("/instances/botmedia-0/drain", json!({})).await;
    assert_eq!(status, 202);
    fleet
        .wait_instances("botmedia-0 draining", |i| {
            i["botmedia-0"]["status"] == "draining" && i["botmedia-0"]["ready"] == false
        })
        .await;
    let before = fleet.calls().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = fleet.calls().await;
    for id in &on0 {
        let (b, a) = (&before[id], &after[id]);
        assert_eq!(a.1, "established", "a drained call was dropped: {after:#?}");
        assert!(
            a.2 >= b.2 + 50,
            "media stopped on a draining instance's call: {b:?} {a:?}"
        );
    }
    for _ in 0..2 {
        let (_, inst) = fleet.place().await;
        assert_ne!(
            inst, "botmedia-0",
            "a new call went to the draining instance"
        );
    }

    // SIGKILL on botmedia-1: the service ends its calls when their media stops; nothing
    // of the other instances is touched.
    let killed_pid = fleet.instances().await["botmedia-1"]["pid"]
        .as_u64()
        .unwrap();
    let (status, _) = fleet.post("/instances/botmedia-1/kill", json!({})).await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let states = emulator_calls(&fleet.http, &emulator).await;
        let ended = on1.iter().all(|id| states[id].0 == "terminated");
        if ended {
            for id in &on1 {
                assert!(
                    states[id].1.contains("Media connectivity was lost"),
                    "{id}: {:?}",
                    states[id]
                );
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the killed instance's calls did not end: {states:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let states = emulator_calls(&fleet.http, &emulator).await;
    let survivors: Vec<&String> = on0.iter().chain(on2.iter()).collect();
    for id in &survivors {
        assert_eq!(
            states[*id].0, "established",
            "{id} was touched: {states:#?}"
        );
    }
    let before = fleet.calls().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = fleet.calls().await;
    for id in &survivors {
        assert!(
            after[*id].2 >= before[*id].2 + 50,
            "{id}'s media stopped after another instance was killed"
        );
    }

    // The killed instance comes back (same id, new process) and takes calls again; new
    // calls never go to the draining one.
    fleet
        .wait_instances("botmedia-1 restarted", |i| {
            i["botmedia-1"]["restarts"] == 1
                && i["botmedia-1"]["ready"] == true
                && i["botmedia-1"]["pid"].as_u64() != Some(killed_pid)
        })
        .await;
    // The service's notifications about the killed run's calls reach the new run (same
    // callback URL): answered, counted as calls nobody here holds, nothing else.
    let api = fleet.instances().await["botmedia-1"]["api"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = common::metrics(&fleet.http, &format!("{api}/metrics")).await;
        let unclaimed =
            common::metric_value(&metrics, "botmedia_webhook_unclaimed_calls_total").unwrap_or(0.0);
        if unclaimed >= on1.len() as f64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new run did not account for the old run's calls: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut new_calls = Vec::new();
    for _ in 0..2 {
        let (id, inst) = fleet.place().await;
        assert_ne!(inst, "botmedia-0");
        new_calls.push(id);
    }
    fleet.wait_established(&new_calls).await;

    // `botmedia load --fleet` drives the fleet and counts per instance.
    let out = Command::new(env!("CARGO_BIN_EXE_botmedia"))
        .args([
            "load",
            "--fleet",
            &fleet.front,
            "--calls",
            "4",
            "--seconds",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let shares = report["instances"].as_object().unwrap();
    let sum = |key: &str| -> u64 { shares.values().map(|s| s[key].as_u64().unwrap()).sum() };
    assert_eq!(sum("placed"), 4, "{report}");
    assert_eq!(sum("established"), 4, "{report}");
    assert_eq!(sum("mediaFlowing"), 4, "{report}");
    assert_eq!(sum("endedEarly"), 0, "{report}");
    assert_eq!(shares["botmedia-0"]["placed"], 0, "{report}");

    // The drained instance's calls end normally; then it exits 0, having dropped nothing.
    for id in &on0 {
        let r = fleet
            .http
            .delete(fleet.url(&format!("/calls/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
    }
    fleet
        .wait_instances("botmedia-0 exited 0", |i| {
            i["botmedia-0"]["phase"] == "stopped" && i["botmedia-0"]["lastExit"] == "exit 0"
        })
        .await;
    let states = emulator_calls(&fleet.http, &emulator).await;
    for id in &on0 {
        assert!(
            states[id].1.starts_with("200/"),
            "{id} ended {:?}",
            states[id]
        );
    }

    // No instance admits (both survivors draining, with calls): a new call is refused with
    // 503, an incoming call at the shared webhook is rejected busy by a running instance.
    for inst in ["botmedia-1", "botmedia-2"] {
        let (status, _) = fleet
            .post(&format!("/instances/{inst}/drain"), json!({}))
            .await;
        assert_eq!(status, 202);
    }
    fleet
        .wait_instances("every instance draining or stopped", |i| {
            i.values().all(|v| v["ready"] == false)
        })
        .await;
    let (status, refused) = fleet.post("/calls", json!({ "user": ECHO_USER })).await;
    assert_eq!(status, 503, "{refused}");
    assert_eq!(refused["error"]["code"], "noInstanceReady", "{refused}");
    let rung = emu.place_incoming_call(ECHO_USER, &shared, None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let states = emulator_calls(&fleet.http, &emulator).await;
        if states[&rung].0 == "terminated" {
            break;
        }
        assert_ne!(
            states[&rung].0, "established",
            "a draining fleet took a call"
        );
        assert!(Instant::now() < deadline, "{:?}", states[&rung]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The fleet stops: hang up what runs, then SIGTERM drains the rest at once.
    for id in fleet.calls().await.keys() {
        let _ = fleet
            .http
            .delete(fleet.url(&format!("/calls/{id}")))
            .send()
            .await;
    }
    let pids: Vec<u32> = fleet.guard.pids.lock().unwrap().iter().copied().collect();
    let mut fleet = fleet;
    signal(fleet.guard.child.id(), libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = fleet.guard.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the fleet did not stop: {}",
            fleet.stderr.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}: {}", fleet.stderr.text());
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "instance {pid} outlived the fleet"
        );
    }
    emu.shutdown().await;
}

//! `botmedia load --fleet URL`: calls placed through a fleet's front, held for a window,
//! and counted per instance: where they landed, whether they connected, whether their media
//! flowed for the whole window, whether any ended early.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

/// What to run against a fleet.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FleetLoadOptions {
    /// The fleet's front, `http://127.0.0.1:9400`.
    pub front: String,
    /// Concurrent calls.
    pub calls: usize,
    /// The window the calls are held and watched for.
    pub duration: Duration,
    /// Who the calls go to (a directory user of the service).
    pub user: String,
    /// Calls placed at once.
    pub setup_concurrency: usize,
}

impl FleetLoadOptions {
    /// `calls` calls to `user` through `front`, held for `duration`.
    pub fn new(
        front: impl Into<String>,
        calls: usize,
        duration: Duration,
        user: impl Into<String>,
    ) -> Self {
        Self {
            front: front.into().trim_end_matches('/').to_owned(),
            calls,
            duration,
            user: user.into(),
            setup_concurrency: 8,
        }
    }
}

/// One instance's share of the calls.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceShare {
    /// Calls the front placed on it.
    pub placed: usize,
    /// Of those, established before the window.
    pub established: usize,
    /// Of those, receiving frames throughout the window (at least 80 % of 50 a second).
    pub media_flowing: usize,
    /// Of those, gone before the window closed.
    pub ended_early: usize,
}

/// What a fleet load run saw.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetLoadReport {
    /// Calls asked for.
    pub calls: usize,
    /// Calls the front refused (no instance ready).
    pub refused: usize,
    /// Per instance, by id (instances the front lists, even those that got none).
    pub instances: BTreeMap<String, InstanceShare>,
    /// The window, seconds.
    pub window_seconds: f64,
    /// Seconds from the first placement until every placed call was established.
    pub setup_seconds: f64,
}

impl FleetLoadReport {
    /// Sums over the instances.
    pub fn total(&self) -> InstanceShare {
        let mut t = InstanceShare::default();
        for s in self.instances.values() {
            t.placed += s.placed;
            t.established += s.established;
            t.media_flowing += s.media_flowing;
            t.ended_early += s.ended_early;
        }
        t
    }

    /// The report as a table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} calls through the fleet, {} refused; set up in {:.1} s; window {:.1} s\n",
            self.calls, self.refused, self.setup_seconds, self.window_seconds
        );
        out.push_str(&format!(
            "{:<14} {:>7} {:>12} {:>14} {:>12}\n",
            "instance", "placed", "established", "media flowing", "ended early"
        ));
        let total = self.total();
        for (id, s) in self
            .instances
            .iter()
            .chain(std::iter::once((&"total".to_owned(), &total)))
        {
            out.push_str(&format!(
                "{:<14} {:>7} {:>12} {:>14} {:>12}\n",
                id, s.placed, s.established, s.media_flowing, s.ended_early
            ));
        }
        out
    }
}

/// Runs the calls and hangs them up at the end.
pub async fn run(options: FleetLoadOptions) -> Result<FleetLoadReport, String> {
    if options.calls == 0 {
        return Err("calls must be at least 1".into());
    }
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let front = options.front.clone();
    let listed: Value = http
        .get(format!("{front}/instances"))
        .send()
        .await
        .map_err(|e| format!("{front}/instances: {e}"))?
        .json()
        .await
        .map_err(|e| format!("{front}/instances is not a fleet's answer: {e}"))?;
    let mut instances: BTreeMap<String, InstanceShare> = listed["instances"]
        .as_array()
        .ok_or_else(|| format!("{front}/instances is not a fleet's answer"))?
        .iter()
        .filter_map(|i| {
            i["id"]
                .as_str()
                .map(|id| (id.to_owned(), InstanceShare::default()))
        })
        .collect();

    // Place, a few at a time.
    let started = Instant::now();
    let mut placed: Vec<(String, String)> = Vec::new();
    let mut refused = 0usize;
    let mut left = options.calls;
    while left > 0 {
        let batch = left.min(options.setup_concurrency.max(1));
        left -= batch;
        let handles: Vec<_> = (0..batch)
            .map(|_| {
                let http = http.clone();
                let url = format!("{front}/calls");
                let body = json!({ "user": options.user, "behaviour": "echo" });
                tokio::spawn(async move {
                    let answer = http.post(url).json(&body).send().await.ok()?;
                    let ok = answer.status().is_success();
                    let v: Value = answer.json().await.ok()?;
                    ok.then(|| {
                        Some((
                            v["id"].as_str()?.to_owned(),
                            v["instance"].as_str()?.to_owned(),
                        ))
                    })
                    .flatten()
                })
            })
            .collect();
        for h in handles {
            match h.await.ok().flatten() {
                Some(p) => placed.push(p),
                None => refused += 1,
            }
        }
    }
    for (_, inst) in &placed {
        instances.entry(inst.clone()).or_default().placed += 1;
    }

    // Wait for every placed call to be established.
    let connect_deadline = Instant::now()
        + Duration::from_secs(20)
        + Duration::from_millis(300) * options.calls as u32;
    let mut states = calls_now(&http, &front).await?;
    while Instant::now() < connect_deadline
        && !placed.iter().all(|(id, _)| {
            states
                .get(id)
                .is_some_and(|(state, _)| state == "established")
        })
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
        states = calls_now(&http, &front).await?;
    }
    let setup_seconds = started.elapsed().as_secs_f64();
    for (id, inst) in &placed {
        if states.get(id).is_some_and(|(s, _)| s == "established") {
            instances.entry(inst.clone()).or_default().established += 1;
        }
    }

    // The window.
    let window_start = Instant::now();
    tokio::time::sleep(options.duration).await;
    let after = calls_now(&http, &front).await?;
    let window = window_start.elapsed().as_secs_f64();
    let expected = (window * 50.0 * 0.8) as u64;
    for (id, inst) in &placed {
        let share = instances.entry(inst.clone()).or_default();
        let Some((_, frames_before)) = states.get(id).filter(|(s, _)| s == "established") else {
            continue;
        };
        match after.get(id) {
            Some((_, frames_after)) => {
                if frames_after.saturating_sub(*frames_before) >= expected {
                    share.media_flowing += 1;
                }
            }
            None => share.ended_early += 1,
        }
    }

    // Hang up, and wait (bounded) for the calls to go.
    for (id, _) in &placed {
        let _ = http.delete(format!("{front}/calls/{id}")).send().await;
    }
    let end_deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end_deadline {
        let now = calls_now(&http, &front).await?;
        if !placed.iter().any(|(id, _)| now.contains_key(id)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(FleetLoadReport {
        calls: options.calls,
        refused,
        instances,
        window_seconds: window,
        setup_seconds,
    })
}

/// The fleet's running calls: id → (state, frames received).
async fn calls_now(
    http: &reqwest::Client,
    front: &str,
) -> Result<BTreeMap<String, (String, u64)>, String> {
    let v: Value = http
        .get(format!("{front}/calls"))
        .send()
        .await
        .map_err(|e| format!("{front}/calls: {e}"))?
        .json()
        .await
        .map_err(|e| format!("{front}/calls: {e}"))?;
    Ok(v["calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .filter_map(|c| {
                    Some((
                        c["id"].as_str()?.to_owned(),
                        (
                            c["state"].as_str().unwrap_or("").to_owned(),
                            c["framesReceived"].as_u64().unwrap_or(0),
                        ),
                    ))
                })
                .collect()
        })
        .unwrap_or_default())
}

//! `botmedia::metrics` end to end: a bot with a call to the emulator's echo user serves
//! `/metrics` on 127.0.0.1, a real Prometheus server (Debian's `prometheus`) scrapes it
//! every second, and its query API must show the target up, one established call and
//! frames received, and the webhook's notifications and a refused request;
//! `promtool check metrics` must find nothing to lint in a scrape. After the hang-up no
//! counter went down and no call is established.
//!
//! Needs `prometheus` and `promtool` on PATH (scripts/setup.sh --test installs them).

#[path = "common/bot.rs"]
mod common;
#[path = "common/process.rs"]
mod process;
#[path = "common/promtool.rs"]
mod promtool;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use botmedia::{Bot, BotSettings, CallEvent, CallItem, CallRequest, Pcm16K, Ticks};
use common::{WAIT, echo_user, emulator};
use process::Proc;
use tokio::time::{Instant, sleep, timeout};

/// A Prometheus server scraping one target every second, with its own storage in a
/// temporary directory; killed on drop, then its directory removed.
struct Prometheus {
    proc: Option<Proc>,
    dir: PathBuf,
    api: String,
    http: reqwest::Client,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        drop(self.proc.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    async fn start(target: SocketAddr) -> Prometheus {
        let dir = std::env::temp_dir().join(format!(
            "botmedia-metrics-prometheus-{}-{}",
            std::process::id(),
            target.port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: bot\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        // A free port: bound and released (Prometheus cannot report the port it picked).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus on PATH (scripts/setup.sh --test installs it)");
        let p = Prometheus {
            proc: Some(Proc(child)),
            dir,
            api: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = p.http.get(format!("{}/-/ready", p.api)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return p;
            }
            assert!(Instant::now() < deadline, "not ready: {}", p.log());
            sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// The values of an instant query's vector (empty: no series).
    async fn query(&self, promql: &str) -> Vec<f64> {
        let body: serde_json::Value = self
            .http
            .post(format!("{}/api/v1/query", self.api))
            .form(&[("query", promql)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["status"], "success", "{promql}: {body}");
        body["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("{promql}: not a vector: {body}"))
            .iter()
            .map(|s| s["value"][1].as_str().unwrap().parse().unwrap())
            .collect()
    }

    /// Waits until `promql` gives one value that `ok` accepts.
    async fn until(&self, promql: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let values = self.query(promql).await;
            if let [v] = values[..]
                && ok(v)
            {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{promql} stayed at {values:?}\n{}",
                self.log()
            );
            sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Every sample of a scrape, by series (name and labels as written), with the names of
/// the counter and histogram families.
fn samples(text: &str) -> (HashMap<String, f64>, Vec<String>) {
    let mut values = HashMap::new();
    let mut monotonic = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            if kind == "counter" || kind == "histogram" {
                monotonic.push(name.to_owned());
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let (series, value) = line.rsplit_once(' ').unwrap();
            values.insert(series.to_owned(), value.parse().unwrap());
        }
    }
    (values, monotonic)
}

async fn scrape(http: &reqwest::Client, url: &str) -> String {
    let r = http.get(url).send().await.unwrap();
    assert_eq!(
        r.headers()[reqwest::header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    r.text().await.unwrap()
}

/// A 500 Hz tone frame, so the echo brings back frames with energy.
fn tone(n: u64) -> Pcm16K {
    let mut out = Pcm16K::SILENCE;
    for (i, s) in out.samples.iter_mut().enumerate() {
        let t = (n * 320 + i as u64) as f32 / 16_000.0;
        *s = ((2.0 * std::f32::consts::PI * 500.0 * t).sin() * 6_000.0) as i16;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_bot_with_a_call_and_counters_survive_the_hang_up() {
    let emu = emulator().await;
    let echo = echo_user(&emu);
    let bot = Bot::start(BotSettings::emulator(&emu.base_url()))
        .await
        .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = listener.local_addr().unwrap();
    let router = botmedia::metrics::router(bot.clone());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let prometheus = Prometheus::start(metrics_addr).await;

    let mut call = bot
        .call(CallRequest::peer_to_peer(&echo, None))
        .await
        .unwrap();
    // The call runs in its own task, sending a tone, until told to hang up.
    let (hang_up, mut hang_up_rx) = tokio::sync::oneshot::channel::<()>();
    let call_task = tokio::spawn(async move {
        let mut sent = 0;
        let mut hanging_up = false;
        loop {
            let item = tokio::select! {
                _ = &mut hang_up_rx, if !hanging_up => {
                    hanging_up = true;
                    call.hang_up().await.unwrap();
                    continue;
                }
                item = timeout(WAIT, call.next()) => item.expect("the call went quiet"),
            };
            match item {
                Some(CallItem::Frame(_)) => {
                    if call.send(tone(sent)).is_ok() {
                        sent += 1;
                    }
                }
                Some(CallItem::Call(CallEvent::Terminated { result })) => {
                    assert!(hanging_up, "terminated before the hang-up: {result:?}");
                }
                Some(_) => {}
                None => return call,
            }
        }
    });

    // (a) Prometheus sees the bot, the established call and its frames.
    prometheus.until("up{job=\"bot\"}", |v| v == 1.0).await;
    prometheus
        .until("botmedia_calls{state=\"established\"}", |v| v == 1.0)
        .await;
    prometheus
        .until("botmedia_call_frames_received_total", |v| v > 0.0)
        .await;
    prometheus
        .until("botmedia_call_frames_sent_total", |v| v > 0.0)
        .await;
    prometheus
        .until("botmedia_call_receive_latency_seconds_count", |v| v > 0.0)
        .await;
    prometheus
        .until("botmedia_platform_health{state=\"normal\"}", |v| v == 1.0)
        .await;
    // The webhook: the service's notifications accepted, a request without a token refused.
    let http = reqwest::Client::new();
    let refused = http
        .post(bot.callback_url())
        .json(&serde_json::json!({ "value": [] }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);
    prometheus
        .until("botmedia_webhook_requests_accepted_total", |v| v > 0.0)
        .await;
    prometheus
        .until(
            "botmedia_webhook_requests_refused_total{reason=\"missing_token\"}",
            |v| v == 1.0,
        )
        .await;
    // One pipeline thread's series per thread, at least one.
    assert!(
        !prometheus
            .query("botmedia_pipeline_ticks_total")
            .await
            .is_empty()
    );
    prometheus
        .until("sum(botmedia_pipeline_ticks_total)", |v| v > 0.0)
        .await;

    let url = format!("http://{metrics_addr}/metrics");
    // The call's own histograms, to check the exported ones against once it ended.
    let observer = bot.calls()[0].media.clone().expect("the call has media");
    let during = scrape(&http, &url).await;
    promtool::check(&during);
    let (before, monotonic) = samples(&during);
    assert_eq!(before["botmedia_calls{state=\"established\"}"], 1.0);
    assert_eq!(before["botmedia_calls_started_total"], 1.0);
    assert!(before["botmedia_call_frames_received_total"] > 0.0);
    assert!(before["botmedia_network_legs"] >= 1.0);
    assert!(before["botmedia_network_datagrams_received_total"] > 0.0);
    assert!(before["botmedia_network_send_calls_total"] > 0.0);
    assert!(before["botmedia_call_receive_latency_seconds_bucket{le=\"+Inf\"}"] > 0.0);
    assert!(before["botmedia_call_receive_latency_seconds_sum"] > 0.0);

    // (b) After the hang-up: no counter went down, nothing is established.
    hang_up.send(()).unwrap();
    let call = timeout(WAIT, call_task).await.unwrap().unwrap();
    assert!(call.is_ended());
    drop(call);
    let deadline = Instant::now() + WAIT;
    while !bot.calls().is_empty() {
        assert!(Instant::now() < deadline, "the call stayed live");
        sleep(Duration::from_millis(50)).await;
    }
    let after_text = scrape(&http, &url).await;
    promtool::check(&after_text);
    let (after, _) = samples(&after_text);
    for (series, was) in &before {
        let family = series.split(['{', ' ']).next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| family.strip_suffix(s))
            .filter(|base| monotonic.iter().any(|m| m == base))
            .unwrap_or(family);
        if monotonic.iter().any(|m| m == family) {
            let now = after
                .get(series)
                .unwrap_or_else(|| panic!("{series} is gone after the hang-up"));
            assert!(now >= was, "{series} went down: {was} -> {now}");
        }
    }
    assert_eq!(after["botmedia_calls{state=\"established\"}"], 0.0);
    assert_eq!(after["botmedia_calls_ended_total"], 1.0);
    // The only call ended: the exported receive histogram is its own, bucket by bucket.
    let receive = observer.latency().receive;
    let total = receive.count();
    assert_eq!(
        after["botmedia_call_receive_latency_seconds_count"],
        total as f64
    );
    let at_rank = |r: u64| receive.quantile((r as f64 - 0.5) / total as f64).unwrap();
    let mut bounds = 0;
    for (series, &n) in &after {
        let Some(le) = series
            .strip_prefix("botmedia_call_receive_latency_seconds_bucket{le=\"")
            .and_then(|s| s.strip_suffix("\"}"))
        else {
            continue;
        };
        bounds += 1;
        let n = n as u64;
        if le == "+Inf" {
            assert_eq!(n, total);
            continue;
        }
        let le = Ticks((le.parse::<f64>().unwrap() * Ticks::PER_SECOND as f64).round() as u64);
        // n observations at or under le: the n-th is, the next is not.
        assert!(
            n == 0 || at_rank(n) <= le,
            "{series} {n}: rank {n} is {:?}",
            at_rank(n)
        );
        assert!(
            n == total || at_rank(n + 1) > le,
            "{series} {n}: rank {} is {:?}",
            n + 1,
            at_rank(n + 1)
        );
    }
    assert_eq!(bounds, 16);
    // The sum is estimated at bucket middles: within half a bucket (0.5 ms at most) of
    // the spans' bucket bounds.
    let sum = after["botmedia_call_receive_latency_seconds_sum"];
    let upper: f64 = (1..=total)
        .map(|r| at_rank(r).0 as f64 / Ticks::PER_SECOND as f64)
        .sum();
    assert!(
        sum <= upper && sum >= upper - total as f64 * 0.0005,
        "sum {sum}, bucket bounds add up to {upper}"
    );
    assert!(
        after["botmedia_call_frames_received_total"]
            >= before["botmedia_call_frames_received_total"]
    );

    // Prometheus agrees, and saw no counter reset over the whole run.
    prometheus
        .until("botmedia_calls{state=\"established\"}", |v| v == 0.0)
        .await;
    prometheus
        .until("botmedia_calls_ended_total", |v| v == 1.0)
        .await;
    let frames = prometheus
        .until("botmedia_call_frames_received_total", |v| v > 0.0)
        .await;
    assert!(frames >= before["botmedia_call_frames_received_total"]);
    // resets() drops the metric name: keep it in a label so the series stay apart.
    let resets = prometheus
        .query(
            "resets(label_replace({__name__=~\"botmedia_.*(_total|_bucket|_count|_sum)\"}, \
             \"name\", \"$1\", \"__name__\", \"(.+)\")[1m:1s])",
        )
        .await;
    assert!(resets.len() > 20, "the counters' series: {resets:?}");
    assert!(
        resets.iter().all(|&r| r == 0.0),
        "counters reset: {resets:?}"
    );
    if std::env::var_os("BOTMEDIA_PRINT_SCRAPE").is_some() {
        eprintln!("{after_text}");
    }

    drop(prometheus);
    server.abort();
    bot.shutdown().await;
    emu.shutdown().await;
}

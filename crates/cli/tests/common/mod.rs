//! What the CLI's process tests share.

use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};

/// Lines a child wrote, gathered by a thread.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

/// The most lines a failure message quotes.
const QUOTED: usize = 400;

impl Lines {
    /// Gathers `stream`'s lines until it closes.
    pub fn follow(self, stream: impl std::io::Read + Send + 'static) -> Self {
        let lines = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                lines.0.lock().unwrap().push(line);
            }
        });
        self
    }

    /// The last lines so far, for a failure message.
    pub fn text(&self) -> String {
        let lines = self.0.lock().unwrap();
        lines[lines.len().saturating_sub(QUOTED)..].join("\n")
    }

    /// The rest of the first line that starts with `prefix` (after trimming).
    pub fn find(&self, prefix: &str) -> Option<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|r| r.trim().to_owned()))
    }
}

/// A bot's `/metrics` text, fetched with `client` from `url`.
#[allow(dead_code, reason = "not every test binary reads metrics")]
pub async fn metrics(client: &reqwest::Client, url: &str) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// The value of the series named exactly `name` (no labels) in a metrics text.
#[allow(dead_code, reason = "not every test binary reads metrics")]
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

//! Delivery of `commsNotifications` to a bot's callback: one queue per call so a call's
//! notifications arrive in order, RS256-signed bearer tokens, retries with backoff when the
//! bot does not answer 2xx.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::state::{LogKind, Shared};

/// Queue depth per call; a bot that stops answering loses the oldest news past this.
const QUEUE: usize = 1024;
/// Attempts per notification.
const ATTEMPTS: u32 = 5;
/// Delay before the first retry; doubled each time (before the time scale).
const FIRST_RETRY_MS: u64 = 250;

/// The sending side of one call's notification queue.
#[derive(Clone, Debug)]
pub(crate) struct Notifier {
    tx: mpsc::Sender<Value>,
}

/// Wraps one `commsNotification` in a `commsNotifications` body.
pub(crate) fn body(notifications: Vec<Value>) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.commsNotifications",
        "value": notifications,
    })
}

/// One `commsNotification`.
pub(crate) fn notification(
    change_type: &str,
    resource_url: &str,
    callback_uri: &str,
    resource_data: Value,
) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.commsNotification",
        "changeType": change_type,
        "resourceUrl": resource_url,
        "callbackUri": callback_uri,
        "resourceData": resource_data,
    })
}

impl Notifier {
    /// Starts the delivery task of one call.
    pub(crate) fn start(
        shared: Arc<Shared>,
        call_id: String,
        app_id: String,
        tenant_id: String,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<Value>(QUEUE);
        tokio::spawn(async move {
            while let Some(item) = rx.recv().await {
                deliver(&shared, &call_id, &app_id, &tenant_id, item).await;
            }
        });
        Self { tx }
    }

    /// Queues a notification body; never blocks. A full queue drops it (logged).
    pub(crate) fn send(&self, shared: &Shared, call_id: &str, body: Value) {
        if self.tx.try_send(body).is_err() {
            shared.log(
                LogKind::Error,
                Some(call_id),
                "notification queue full: dropped one".into(),
            );
        }
    }
}

async fn deliver(shared: &Shared, call_id: &str, app_id: &str, tenant_id: &str, body: Value) {
    let Some(uri) = body["value"][0]["callbackUri"].as_str().map(str::to_owned) else {
        return;
    };
    let summary = summarize(&body);
    for attempt in 0..ATTEMPTS {
        let token = shared.identity.callback_token(app_id, tenant_id);
        let sent = shared
            .http
            .post(&uri)
            .bearer_auth(token)
            .json(&body)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match &sent {
            Ok(r) => tracing::debug!(
                target: "emulator::notify",
                call_id,
                url = %loggable_url(&uri),
                status = r.status().as_u16(),
                attempt = attempt + 1,
                "notification sent: {summary}"
            ),
            Err(e) => tracing::debug!(
                target: "emulator::notify",
                call_id,
                url = %loggable_url(&uri),
                error = %short(e),
                attempt = attempt + 1,
                "notification not delivered: {summary}"
            ),
        }
        match sent {
            Ok(r) if r.status().is_success() => {
                shared.log_notification(call_id, &summary, &body, r.status().as_u16(), attempt + 1);
                return;
            }
            Ok(r) => shared.log(
                LogKind::Error,
                Some(call_id),
                format!(
                    "{summary}: bot answered {} (attempt {})",
                    r.status().as_u16(),
                    attempt + 1
                ),
            ),
            Err(e) => shared.log(
                LogKind::Error,
                Some(call_id),
                format!(
                    "{summary}: delivery failed (attempt {}): {}",
                    attempt + 1,
                    short(&e)
                ),
            ),
        }
        if attempt + 1 < ATTEMPTS {
            tokio::time::sleep(shared.scaled(Duration::from_millis(FIRST_RETRY_MS << attempt)))
                .await;
        }
    }
    shared.log(
        LogKind::Error,
        Some(call_id),
        format!("{summary}: given up after {ATTEMPTS} attempts"),
    );
}

/// A callback URL without its query and fragment, where a bot may carry a secret of its own.
fn loggable_url(uri: &str) -> &str {
    uri.split(['?', '#']).next().unwrap_or(uri)
}

fn short(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "connection refused".into()
    } else if e.is_timeout() {
        "timed out".into()
    } else {
        // reqwest's own text names the URL, query included; its source does not.
        std::error::Error::source(e).map_or_else(|| "request failed".to_owned(), |s| s.to_string())
    }
}

/// A one-line description of a notification body, for the log and the dashboard.
pub(crate) fn summarize(body: &Value) -> String {
    let n = &body["value"][0];
    let data = &n["resourceData"];
    let what = if let Some(state) = data["state"].as_str() {
        let mut s = format!("call {state}");
        if let Some(code) = data["resultInfo"]["code"].as_i64() {
            s += &format!(
                " ({code}/{})",
                data["resultInfo"]["subcode"].as_i64().unwrap_or(0)
            );
        }
        s
    } else if let Some(list) = data.as_array() {
        format!("roster: {} participant(s)", list.len())
    } else if let Some(status) = data["status"].as_str() {
        format!(
            "{} {status}",
            data["@odata.type"]
                .as_str()
                .unwrap_or("operation")
                .trim_start_matches("#microsoft.graph.")
        )
    } else if data["toneInfo"].is_object() {
        format!("tone {}", data["toneInfo"]["tone"].as_str().unwrap_or("?"))
    } else {
        "notification".into()
    };
    format!("{} {what}", n["changeType"].as_str().unwrap_or("updated"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_urls_lose_their_query() {
        assert_eq!(
            loggable_url("https://bot.example/cb?code=s3cret#x"),
            "https://bot.example/cb"
        );
        assert_eq!(
            loggable_url("http://127.0.0.1:9/cb"),
            "http://127.0.0.1:9/cb"
        );
    }
}

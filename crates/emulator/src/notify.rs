//! Delivery of `commsNotifications` to a bot's callback: one queue per call so a call's
//! notifications arrive in order, RS256-signed bearer tokens, retries with backoff when the
//! bot does not answer 2xx.
//!
//! Notifications are queued as `signalling::model` values and serialized once, when they
//! are delivered.

use std::sync::Arc;
use std::time::Duration;

use signalling::model::{
    ChangeType, CommsNotification, CommsNotifications, CommsOperation, GraphType, ResourceData,
};
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
    tx: mpsc::Sender<CommsNotifications>,
}

/// Wraps `commsNotification`s in a `commsNotifications` body.
pub(crate) fn body(notifications: Vec<CommsNotification>) -> CommsNotifications {
    let mut body = CommsNotifications::default();
    body.odata_type = "#microsoft.graph.commsNotifications".to_owned().into();
    body.value = notifications.into();
    body
}

/// One `commsNotification`.
pub(crate) fn notification(
    change_type: ChangeType,
    resource_url: &str,
    callback_uri: &str,
    resource_data: ResourceData,
) -> CommsNotification {
    let mut n = CommsNotification::default();
    n.odata_type = "#microsoft.graph.commsNotification".to_owned().into();
    n.change_type = change_type.into();
    n.resource_url = resource_url.to_owned().into();
    n.callback_uri = callback_uri.to_owned().into();
    n.resource_data = resource_data.into();
    n
}

impl Notifier {
    /// Starts the delivery task of one call.
    pub(crate) fn start(
        shared: Arc<Shared>,
        call_id: String,
        app_id: String,
        tenant_id: String,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<CommsNotifications>(QUEUE);
        tokio::spawn(async move {
            while let Some(item) = rx.recv().await {
                deliver(&shared, &call_id, &app_id, &tenant_id, item).await;
            }
        });
        Self { tx }
    }

    /// Queues a notification body; never blocks. A full queue drops it (logged).
    pub(crate) fn send(&self, shared: &Shared, call_id: &str, body: CommsNotifications) {
        if self.tx.try_send(body).is_err() {
            shared.log(
                LogKind::Error,
                Some(call_id),
                "notification queue full: dropped one".into(),
            );
        }
    }
}

async fn deliver(
    shared: &Shared,
    call_id: &str,
    app_id: &str,
    tenant_id: &str,
    notifications: CommsNotifications,
) {
    let Some(uri) = first(&notifications)
        .and_then(|n| n.callback_uri.get())
        .cloned()
    else {
        return;
    };
    let summary = summarize(&notifications);
    // The wire form, once: every attempt sends the same bytes and the log keeps them.
    let body = notifications.to_json_value();
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

fn first(body: &CommsNotifications) -> Option<&CommsNotification> {
    body.value.get().and_then(|v| v.first())
}

/// A one-line description of a notification body, for the log and the dashboard.
pub(crate) fn summarize(body: &CommsNotifications) -> String {
    let n = first(body);
    let what = match n.and_then(|n| n.resource_data.get()) {
        Some(ResourceData::Call(call)) => {
            if let Some(state) = call.state.get() {
                let mut s = format!("call {state}");
                if let Some(info) = call.result_info.get()
                    && let Some(code) = info.code.get().and_then(|c| c.as_i64())
                {
                    let subcode = info.subcode.get().and_then(|c| c.as_i64()).unwrap_or(0);
                    s += &format!(" ({code}/{subcode})");
                }
                s
            } else if let Some(tone) = call.tone_info.get() {
                format!("tone {}", tone.tone.get().map_or("?", |t| t.as_str()))
            } else {
                "notification".into()
            }
        }
        Some(ResourceData::Collection(list)) => {
            format!("roster: {} participant(s)", list.len())
        }
        Some(ResourceData::Operation(op)) => match op.status() {
            Some(status) => format!("{} {status}", operation_kind(op)),
            None => "notification".into(),
        },
        _ => "notification".into(),
    };
    let change = n
        .and_then(|n| n.change_type.get())
        .map_or("updated", ChangeType::as_str);
    format!("{change} {what}")
}

/// `playPromptOperation` for `#microsoft.graph.playPromptOperation`.
fn operation_kind(op: &CommsOperation) -> &str {
    let odata_type = match op {
        CommsOperation::PlayPrompt(o) => o.odata_type.get(),
        CommsOperation::Record(o) => o.odata_type.get(),
        CommsOperation::SendDtmfTones(o) => o.odata_type.get(),
        CommsOperation::InviteParticipants(o) => o.odata_type.get(),
        CommsOperation::Other(o) => o.odata_type.get(),
        _ => None,
    };
    odata_type.map_or("operation", |t| t.trim_start_matches("#microsoft.graph."))
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

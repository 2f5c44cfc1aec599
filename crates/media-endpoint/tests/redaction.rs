//! Session ids are capabilities: no log line of a whole leg's life may hold one in full.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Peer, http};
use media_endpoint::{EndpointConfig, EndpointEvent, MediaEndpoint, QueueLink, SessionHooks};
use media_session::{ContextId, MediaSessionId};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_holds_a_full_session_id() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let endpoint = MediaEndpoint::bind(EndpointConfig::new("127.0.0.1:0".parse().expect("addr")))
        .await
        .expect("bind");
    let addr = endpoint.local_addr();
    let (_far, port) = QueueLink::new(64);
    let (tx, mut events) = tokio::sync::mpsc::channel(256);
    let session = MediaSessionId::random();
    let handle = endpoint
        .register(session, SessionHooks::new(ContextId::random(), port, tx))
        .expect("register");
    let unknown = MediaSessionId::random();

    let mut peer = Peer::new().await;
    let offer = peer.offer().await;
    let path = |id: &MediaSessionId| format!("/MediaProcessor/sessions/{}", id.expose());
    let sdp = Some("application/sdp");
    assert_eq!(
        http(addr, "POST", &path(&unknown), sdp, offer.as_bytes())
            .await
            .status,
        404
    );
    assert_eq!(
        http(addr, "POST", &path(&session), sdp, b"garbage")
            .await
            .status,
        400
    );
    let r = http(addr, "POST", &path(&session), sdp, offer.as_bytes()).await;
    assert_eq!(r.status, 201);
    peer.accept(r.body).await;
    peer.wait_connected().await;
    let location = r
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("location"))
        .expect("Location")
        .1
        .clone();
    assert_eq!(http(addr, "DELETE", &location, None, b"").await.status, 200);
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
            Ok(Some(EndpointEvent::LegEnded(_))) => break,
            Ok(Some(_)) => {}
            other => panic!("leg did not end: {other:?}"),
        }
    }
    assert_eq!(
        http(addr, "POST", &path(&session), sdp, offer.as_bytes())
            .await
            .status,
        404
    );
    let duplicate = endpoint
        .register(
            session,
            SessionHooks::new(
                ContextId::random(),
                QueueLink::new(1).1,
                tokio::sync::mpsc::channel(1).0,
            ),
        )
        .expect_err("duplicate");
    tracing::info!(error = %duplicate, debug = ?duplicate, "register refused");
    peer.pc.close().await.expect("close");
    drop(handle);
    endpoint.shutdown().await;

    let logs = String::from_utf8_lossy(&capture.0.lock().expect("capture")).into_owned();
    assert!(
        logs.lines().count() > 10,
        "too few log lines to mean anything:\n{logs}"
    );
    for id in [session, unknown] {
        let full = id.expose();
        for form in [full.hyphenated().to_string(), full.simple().to_string()] {
            assert!(
                !logs.contains(&form),
                "a full session id was logged:\n{logs}"
            );
        }
        assert!(
            logs.contains(&full.simple().to_string()[..8]),
            "redacted form expected"
        );
    }
}

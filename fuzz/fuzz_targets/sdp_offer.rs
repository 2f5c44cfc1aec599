#![no_main]
//! SDP offer handling at the media endpoint, through its real HTTP API: any body POSTed to
//! a registered session's URL is answered 201 with an SDP answer, or refused with 400,
//! never a 5xx and never a panic. A 201 leg is deleted again, so state does not pile up.

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use media_endpoint::{EndpointConfig, MediaEndpoint, QueueLink, SessionHooks};
use media_session::{ContextId, MediaSessionId};

struct Harness {
    runtime: tokio::runtime::Runtime,
    endpoint: MediaEndpoint,
    http: reqwest::Client,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let endpoint = runtime
            .block_on(MediaEndpoint::bind(EndpointConfig::new(
                "127.0.0.1:0".parse().expect("address"),
            )))
            .expect("endpoint");
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        Harness {
            runtime,
            endpoint,
            http,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    h.runtime.block_on(async {
        let (_far, port) = QueueLink::new(8);
        let (events, _rx) = tokio::sync::mpsc::channel(8);
        let id = MediaSessionId::random();
        let Ok(handle) = h
            .endpoint
            .register(id, SessionHooks::new(ContextId::random(), port, events))
        else {
            return;
        };
        let url = format!("{}/sessions/{}", h.endpoint.mp_uri(), id.expose());
        let response = h
            .http
            .post(&url)
            .header("content-type", "application/sdp")
            .body(data.to_vec())
            .send()
            .await
            .expect("the endpoint answers");
        let status = response.status().as_u16();
        assert!(matches!(status, 201 | 400 | 413 | 415), "status {status}");
        if status == 201 {
            let location = response
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .map(str::to_owned)
                .expect("a 201 names its leg");
            let body = response.text().await.expect("answer");
            assert!(body.starts_with("v=0"), "{body}");
            let leg = reqwest::Url::parse(h.endpoint.mp_uri())
                .and_then(|base| base.join(&location))
                .expect("leg URL");
            let _ = h.http.delete(leg).send().await;
        }
        drop(handle);
    });
});

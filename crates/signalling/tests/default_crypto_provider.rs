//! With the `tls` feature, reqwest is built with rustls: any reqwest client in the process,
//! in any crate of the build, must build before anything installed a default rustls
//! provider (reqwest's `rustls-no-provider` panics there). Alone in its file so that no
//! other test installs a provider first.

#[test]
fn reqwest_clients_build_before_any_provider_is_installed() {
    #[cfg(feature = "tls")]
    assert!(
        tokio_rustls::rustls::crypto::CryptoProvider::get_default().is_none(),
        "a provider was installed before the test"
    );
    let _ = reqwest::Client::new();
    reqwest::Client::builder().no_proxy().build().unwrap();
    // The bot's own client installs ring, after which clients still build.
    signalling::client::http_client().unwrap();
    reqwest::Client::builder().build().unwrap();
}

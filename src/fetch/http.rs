//! HTTP details of the downloader: how a failed attempt is sorted (retry or not), the
//! `Content-Range` of a resumed response, and the TLS configuration.

use std::sync::Arc;

use reqwest::StatusCode;
use url::Url;

use super::error::FetchError;

/// How one attempt ended when it did not finish.
pub(super) enum Failed {
    /// Worth retrying this mirror after a pause.
    Transient(String),
    /// Not worth retrying this mirror.
    Final(FetchError),
}

/// `bytes START-END/TOTAL` → (START, TOTAL); TOTAL may be `*`.
pub(super) fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

pub(super) fn status_failure(url: &Url, status: StatusCode) -> Failed {
    let transient = status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS;
    if transient {
        Failed::Transient(format!("HTTP {}", status.as_u16()))
    } else {
        Failed::Final(FetchError::Http {
            url: url.to_string(),
            status: status.as_u16(),
        })
    }
}

/// Sorts a request error: TLS failures and malformed requests are final; connection
/// failures, timeouts and broken responses are transient.
pub(super) fn classify(url: &Url, error: &reqwest::Error) -> Failed {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Failed::Final(FetchError::Tls {
                url: url.to_string(),
                message: tls.to_string(),
            });
        }
        source = e.source();
    }
    if error.is_builder() || error.is_redirect() {
        return Failed::Final(FetchError::Setup(format!("{url}: {}", chain(error))));
    }
    let what = match error.is_timeout() {
        true => "timed out".to_string(),
        // reqwest names the URL in its message; ferry's messages already start with it.
        false => chain(error).replace(&format!("error sending request for url ({url}): "), ""),
    };
    Failed::Transient(what)
}

pub(super) fn describe_io(error: &std::io::Error) -> String {
    let text = chain(error);
    if error.kind() == std::io::ErrorKind::TimedOut || text.contains("timed out") {
        "timed out waiting for data".into()
    } else {
        text
    }
}

/// An error and its causes, `a: b: c`, without repeats.
pub(super) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = Some(error);
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

/// The TLS configuration: `ring` for the cryptography (no C toolchain beyond what `ring`
/// needs, builds for musl), trusting the system's CA store plus the bundled Mozilla roots
/// (a rescue system may ship no CA store; a build machine may add a local CA to it).
pub(super) fn tls_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let system = rustls_native_certs::load_native_certs();
    for error in &system.errors {
        tracing::debug!("system CA store: {error}");
    }
    let (added, ignored) = roots.add_parsable_certificates(system.certs);
    tracing::debug!(added, ignored, "system CA certificates");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

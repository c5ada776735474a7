//! Images at `http://` and `https://` URLs (a manifest of image URLs, as img2dataset takes):
//! a User-Agent naming vemo, at most [`PER_HOST`] requests in flight per host, a timeout per
//! request, retries with exponential backoff on 5xx, 429 and dropped connections, redirects
//! followed up to [`MAX_REDIRECTS`]. Link-local and cloud metadata addresses are refused, for
//! the URL and for every redirect. Whatever fails becomes the reason of an `errors` row (with
//! the HTTP status when there was one).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

/// Requests in flight per host.
pub const PER_HOST: usize = 8;
/// Redirects followed before giving up.
pub const MAX_REDIRECTS: usize = 5;
/// Retries after a 5xx, a 429 or a dropped connection.
pub const RETRIES: u32 = 3;
/// The User-Agent of every request.
pub const USER_AGENT: &str = concat!(
    "vemo/",
    env!("CARGO_PKG_VERSION"),
    " (batch image indexer; image fetch for search indexing)"
);

/// A client shared by a process's image reads.
pub struct HttpFetcher {
    client: reqwest::Client,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    timeout: Duration,
}

impl HttpFetcher {
    /// A fetcher whose requests time out after `timeout` (connecting, waiting and reading).
    pub fn new(timeout: Duration) -> Result<Self, String> {
        let policy = reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
            } else if let Err(reason) = check_host(attempt.url()) {
                attempt.error(reason)
            } else {
                attempt.follow()
            }
        });
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(policy)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            client,
            hosts: Mutex::default(),
            timeout,
        })
    }

    /// The body at `url`, refused over `max_bytes` (from its Content-Length before reading,
    /// else while reading).
    pub async fn fetch(&self, url: &str, max_bytes: u64) -> Result<bytes::Bytes, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("bad URL {url}: {e}"))?;
        check_host(&parsed)?;
        check_resolved(&parsed).await?;
        let host = parsed.host_str().unwrap_or_default().to_string();
        let slots = {
            let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
            hosts
                .entry(host)
                .or_insert_with(|| Arc::new(Semaphore::new(PER_HOST)))
                .clone()
        };
        let _slot = slots
            .acquire()
            .await
            .map_err(|_| "the HTTP client is shutting down".to_string())?;
        let mut attempt = 0;
        loop {
            match self.fetch_once(parsed.clone(), max_bytes).await {
                Err(Failure::Retry(_)) if attempt < RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                Err(Failure::Retry(reason)) => {
                    return Err(format!("{reason} ({} attempts)", RETRIES + 1));
                }
                Err(Failure::Final(reason)) => return Err(reason),
                Ok(bytes) => return Ok(bytes),
            }
        }
    }

    async fn fetch_once(&self, url: url::Url, max_bytes: u64) -> Result<bytes::Bytes, Failure> {
        let mut response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| self.failure(&e))?;
        let status = response.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(Failure::Retry(format!("HTTP {status}")));
        }
        if !status.is_success() {
            return Err(Failure::Final(format!("HTTP {status}")));
        }
        if let Some(kind) = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            && !is_image_type(kind)
        {
            return Err(Failure::Final(format!(
                "HTTP {status} but Content-Type {kind}, not an image"
            )));
        }
        if let Some(len) = response.content_length()
            && len > max_bytes
        {
            return Err(Failure::Final(too_large(len, max_bytes)));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.failure(&e))? {
            if (body.len() + chunk.len()) as u64 > max_bytes {
                return Err(Failure::Final(too_large(
                    (body.len() + chunk.len()) as u64,
                    max_bytes,
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.into())
    }

    fn failure(&self, e: &reqwest::Error) -> Failure {
        if e.is_timeout() {
            Failure::Final(format!("timed out after {} s", self.timeout.as_secs_f64()))
        } else if e.is_redirect() {
            Failure::Final(format!("redirect refused: {}", source_chain(e)))
        } else {
            // Refused or reset connections, broken bodies: worth another try.
            Failure::Retry(source_chain(e))
        }
    }
}

enum Failure {
    Retry(String),
    Final(String),
}

fn too_large(len: u64, max: u64) -> String {
    format!("image is {len} bytes, over the limit max_image_bytes = {max}")
}

/// An answer that may be an image: `image/*`, or a type that says nothing
/// (`application/octet-stream`, `binary/octet-stream`), as some object stores send.
fn is_image_type(kind: &str) -> bool {
    let kind = kind.trim().to_ascii_lowercase();
    kind.starts_with("image/") || kind.contains("octet-stream")
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Refuses link-local addresses (169.254.0.0/16, fe80::/10) and the cloud metadata services
/// (169.254.169.254, fd00:ec2::254) named as IP literals.
fn check_host(url: &url::Url) -> Result<(), String> {
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(format!("refused: scheme {other} in {url}")),
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        Some(url::Host::Domain(_)) => return Ok(()),
        None => return Err(format!("refused: no host in {url}")),
    };
    check_ip(ip).map_err(|r| format!("{r} ({url})"))
}

/// Refuses a host name that resolves to a refused address.
async fn check_resolved(url: &url::Url) -> Result<(), String> {
    let Some(url::Host::Domain(name)) = url.host() else {
        return Ok(());
    };
    let port = url.port_or_known_default().unwrap_or(80);
    // A name that does not resolve is left to the request, which reports it.
    if let Ok(addresses) = tokio::net::lookup_host((name, port)).await {
        for address in addresses {
            check_ip(address.ip()).map_err(|r| format!("{r} ({name} resolves to it)"))?;
        }
    }
    Ok(())
}

fn check_ip(ip: IpAddr) -> Result<(), String> {
    let refused = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6
                    == "fd00:ec2::254"
                        .parse::<std::net::Ipv6Addr>()
                        .expect("literal")
                || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
        }
    };
    if refused {
        return Err(format!(
            "refused: {ip} is a link-local or cloud metadata address"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_link_local_addresses_are_refused() {
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://169.254.1.2/x.jpg",
            "http://[fd00:ec2::254]/latest",
            "http://[fe80::1]/x.jpg",
            "http://[::ffff:169.254.169.254]/x",
            "ftp://example.com/x.jpg",
        ] {
            let parsed = url::Url::parse(url).expect("url");
            assert!(check_host(&parsed).is_err(), "{url} allowed");
        }
        for url in [
            "http://127.0.0.1:8080/a.jpg",
            "https://example.com/a.jpg?x=1",
        ] {
            assert_eq!(check_host(&url::Url::parse(url).expect("url")), Ok(()));
        }
    }

    #[test]
    fn image_types() {
        assert!(is_image_type("image/jpeg"));
        assert!(is_image_type("application/octet-stream"));
        assert!(!is_image_type("text/html; charset=utf-8"));
    }
}

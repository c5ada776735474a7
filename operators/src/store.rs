//! Object-store locations: turning a local path or a URI into a store and a path in it.
//!
//! Local paths become `file://` URIs. `memory://NAME/...` stores live for the process, one per
//! NAME, so a test can write a corpus and index it in the same process. `s3://`, `gs://` and
//! `az://` need the binary's `cloud` feature (on by default) and take their credentials from
//! the usual environment variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`) and, for S3, the AWS
//! shared profile files, as Lance does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use url::Url;

use crate::{Error, Result};

/// A place in an object store: the store, the path inside it and the full URI.
#[derive(Clone)]
pub struct Location {
    /// The store holding the object.
    pub store: Arc<dyn ObjectStore>,
    /// Path of the object inside the store.
    pub path: Path,
    /// Full URI, e.g. `file:///data/corpus/manifest.jsonl`.
    pub uri: String,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.uri)
    }
}

/// Turns a local path (relative or absolute) or a URI into a full URI string. Local paths are
/// made absolute; they need not exist.
pub fn normalize_uri(uri_or_path: &str) -> Result<String> {
    if uri_or_path.contains("://") {
        let url = Url::parse(uri_or_path).map_err(|e| invalid(uri_or_path, e.to_string()))?;
        return Ok(url.to_string().trim_end_matches('/').to_string());
    }
    let abs = std::path::absolute(uri_or_path).map_err(|e| invalid(uri_or_path, e.to_string()))?;
    let url = Url::from_file_path(&abs)
        .map_err(|()| invalid(uri_or_path, "not an absolute path".into()))?;
    Ok(url.to_string().trim_end_matches('/').to_string())
}

/// The local filesystem path of a `file://` URI, or `None` for other schemes.
pub fn local_path(uri: &str) -> Option<std::path::PathBuf> {
    Url::parse(uri)
        .ok()
        .filter(|u| u.scheme() == "file")?
        .to_file_path()
        .ok()
}

/// `base` + `/` + `child`, for URIs.
pub fn join(base: &str, child: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        child.trim_start_matches('/')
    )
}

/// The URI of the folder holding `uri` (everything before the last `/`).
pub fn parent(uri: &str) -> String {
    match uri.trim_end_matches('/').rsplit_once('/') {
        Some((head, _)) => head.to_string(),
        None => uri.to_string(),
    }
}

/// Resolves a path or URI into a [`Location`].
pub fn resolve(uri_or_path: &str) -> Result<Location> {
    let uri = normalize_uri(uri_or_path)?;
    let url = Url::parse(&uri).map_err(|e| invalid(&uri, e.to_string()))?;
    let (store, path): (Arc<dyn ObjectStore>, Path) = match url.scheme() {
        "file" => {
            let file = url
                .to_file_path()
                .map_err(|()| invalid(&uri, "bad file URI".into()))?;
            let path = Path::from_absolute_path(&file).map_err(|e| invalid(&uri, e.to_string()))?;
            (local_store(), path)
        }
        "memory" => {
            let name = url.host_str().unwrap_or_default().to_string();
            let path = Path::parse(url.path()).map_err(|e| invalid(&uri, e.to_string()))?;
            (memory_store(&name), path)
        }
        scheme => {
            let mut options: Vec<(String, String)> = std::env::vars()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect();
            if scheme == "s3" {
                options.extend(aws_profile_options());
            }
            let (store, path) = object_store::parse_url_opts(&url, options).map_err(|e| {
                invalid(
                    &uri,
                    format!("{e} (is the binary built with `--features cloud`?)"),
                )
            })?;
            (Arc::from(store), path)
        }
    };
    Ok(Location { store, path, uri })
}

/// S3 options from the AWS shared files (`~/.aws/credentials` and `~/.aws/config`, or
/// `AWS_SHARED_CREDENTIALS_FILE` / `AWS_CONFIG_FILE`) for the profile `AWS_PROFILE` (else
/// `default`), as the AWS tools read them: keys, session token, region, endpoint. Only what the
/// environment does not already set (its variables win); object_store itself reads no profile.
fn aws_profile_options() -> Vec<(String, String)> {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let file = |var: &str, default: &str| {
        std::env::var_os(var)
            .map(std::path::PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
    };
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    let mut found = Vec::new();
    if let Some(text) = file("AWS_SHARED_CREDENTIALS_FILE", "credentials")
        .and_then(|p| std::fs::read_to_string(p).ok())
    {
        found.extend(ini_section(&text, &profile));
    }
    let config_section = match profile.as_str() {
        "default" => "default".to_string(),
        name => format!("profile {name}"),
    };
    if let Some(text) =
        file("AWS_CONFIG_FILE", "config").and_then(|p| std::fs::read_to_string(p).ok())
    {
        found.extend(ini_section(&text, &config_section));
    }
    let keys = [
        ("aws_access_key_id", "AWS_ACCESS_KEY_ID"),
        ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY"),
        ("aws_session_token", "AWS_SESSION_TOKEN"),
        ("region", "AWS_REGION"),
        ("endpoint_url", "AWS_ENDPOINT_URL"),
    ];
    found
        .into_iter()
        .filter_map(|(key, value)| {
            let (_, env) = keys.iter().find(|(k, _)| *k == key)?;
            let option = match key.as_str() {
                "region" => "aws_region".to_string(),
                "endpoint_url" => "aws_endpoint".to_string(),
                _ => key,
            };
            std::env::var_os(env).is_none().then_some((option, value))
        })
        .collect()
}

/// The `key = value` lines of section `[name]` of an INI text.
fn ini_section(text: &str, name: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = section.trim() == name;
        } else if inside && let Some((key, value)) = line.split_once('=') {
            out.push((key.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    out
}

fn local_store() -> Arc<dyn ObjectStore> {
    static LOCAL: OnceLock<Arc<dyn ObjectStore>> = OnceLock::new();
    LOCAL
        .get_or_init(|| Arc::new(object_store::local::LocalFileSystem::new()))
        .clone()
}

fn memory_store(name: &str) -> Arc<dyn ObjectStore> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    let stores = STORES.get_or_init(Default::default);
    // A poisoned lock only means another thread panicked while inserting; the map is intact.
    let mut stores = stores.lock().unwrap_or_else(|p| p.into_inner());
    stores
        .entry(name.to_string())
        .or_insert_with(|| Arc::new(InMemory::new()))
        .clone()
}

fn invalid(uri: &str, reason: String) -> Error {
    Error::InvalidUri {
        uri: uri.to_string(),
        reason,
    }
}

impl Location {
    /// Reads the whole object.
    pub async fn read(&self) -> Result<bytes::Bytes> {
        let got = self
            .store
            .get(&self.path)
            .await
            .map_err(|e| Error::store(&self.uri, e))?;
        got.bytes().await.map_err(|e| Error::store(&self.uri, e))
    }

    /// Writes the whole object.
    pub async fn write(&self, data: Vec<u8>) -> Result<()> {
        let payload = PutPayload::from(data);
        self.store
            .put(&self.path, payload)
            .await
            .map_err(|e| Error::store(&self.uri, e))?;
        Ok(())
    }

    /// Deletes the object (a missing one is no error).
    pub async fn delete(&self) -> Result<()> {
        match self.store.delete(&self.path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::store(&self.uri, e)),
        }
    }

    /// True when the object exists.
    pub async fn exists(&self) -> Result<bool> {
        match self.store.head(&self.path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(Error::store(&self.uri, e)),
        }
    }

    /// Moves the object to `to` in the same store.
    pub async fn rename_to(&self, to: &Location) -> Result<()> {
        self.store
            .rename(&self.path, &to.path)
            .await
            .map_err(|e| Error::store(&self.uri, e))
    }

    /// The file names of every object below this location (at any depth), sorted.
    pub async fn list_names(&self) -> Result<Vec<String>> {
        use futures::TryStreamExt;
        let listed: Vec<_> = self
            .store
            .list(Some(&self.path))
            .try_collect()
            .await
            .map_err(|e| Error::store(&self.uri, e))?;
        let mut names: Vec<String> = listed
            .iter()
            .filter_map(|m| m.location.filename().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    /// A location `child` below this one, in the same store.
    pub fn child(&self, child: &str) -> Result<Location> {
        let uri = join(&self.uri, child);
        let mut path = self.path.clone();
        for part in child.split('/').filter(|p| !p.is_empty()) {
            path = path.join(part);
        }
        Ok(Location {
            store: self.store.clone(),
            path,
            uri,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_become_file_uris() {
        let uri = normalize_uri("/tmp/some corpus/").expect("absolute path");
        assert_eq!(uri, "file:///tmp/some%20corpus");
        assert_eq!(local_path(&uri), Some("/tmp/some corpus".into()));
        assert_eq!(join("memory://a/b/", "/c.jpg"), "memory://a/b/c.jpg");
        assert_eq!(parent("s3://bucket/x/manifest.jsonl"), "s3://bucket/x");
    }

    #[test]
    fn profile_sections_are_read_from_ini_text() {
        let text = "[default]\naws_access_key_id = A\n\n[profile nightly]\nregion=eu-west-1\n";
        assert_eq!(
            ini_section(text, "default"),
            [("aws_access_key_id".into(), "A".into())]
        );
        assert_eq!(
            ini_section(text, "profile nightly"),
            [("region".to_string(), "eu-west-1".to_string())]
        );
        assert!(ini_section(text, "other").is_empty());
    }

    #[tokio::test]
    async fn memory_store_is_shared_within_the_process() {
        let a = resolve("memory://store-test/dir/a.txt").expect("memory URI");
        a.write(b"hello".to_vec()).await.expect("write");
        let again = resolve("memory://store-test/dir").expect("memory URI");
        let read = again
            .child("a.txt")
            .expect("child")
            .read()
            .await
            .expect("read");
        assert_eq!(&read[..], b"hello");
    }
}

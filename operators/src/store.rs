//! Object-store locations: turning a local path or a URI into a store and a path in it.
//!
//! Local paths become `file://` URIs. `memory://NAME/...` stores live for the process, one per
//! NAME, so a test can write a corpus and index it in the same process. `s3://`, `gs://` and
//! `az://` need the binary's `cloud` feature and take their credentials from the usual
//! environment variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`).

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
        _ => {
            let options = std::env::vars().map(|(k, v)| (k.to_ascii_lowercase(), v));
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

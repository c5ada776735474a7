//! A fault-injecting object store for the crash tests: writes (puts, multipart uploads,
//! copies) fail at random, half of them before the write and half after it (the write
//! landed but the caller hears of an error, as after a timeout). Reads pass through.
//!
//! Turned on with `VEMO_FAULTS=RATE:SEED` (e.g. `0.05:7`), for the output of `vemo index`
//! only: its own writes and Lance's. Never set in production.

use std::fmt;
use std::sync::{Arc, Mutex};

use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Injected-fault settings, shared by every store it wraps.
#[derive(Debug, Clone)]
pub struct Faults {
    rate: f64,
    rng: Arc<Mutex<StdRng>>,
}

/// When an injected write fault strikes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Strike {
    None,
    Before,
    After,
}

impl Faults {
    /// Reads `VEMO_FAULTS`; `None` when unset. A malformed value is an error to fix.
    pub fn from_env() -> crate::Result<Option<Self>> {
        let Ok(spec) = std::env::var("VEMO_FAULTS") else {
            return Ok(None);
        };
        let parsed = spec
            .split_once(':')
            .and_then(|(r, s)| Some((r.parse::<f64>().ok()?, s.parse::<u64>().ok()?)));
        match parsed {
            Some((rate, seed)) if (0.0..=1.0).contains(&rate) => Ok(Some(Self::new(rate, seed))),
            _ => Err(crate::Error::InvalidUri {
                uri: spec,
                reason: "VEMO_FAULTS must be RATE:SEED, RATE in 0..=1".into(),
            }),
        }
    }

    /// Faults at `rate` per write, from a seeded generator.
    pub fn new(rate: f64, seed: u64) -> Self {
        Self {
            rate,
            rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
        }
    }

    /// `store` with these faults.
    pub fn wrap(&self, store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(FaultyStore {
            inner: store,
            faults: self.clone(),
        })
    }

    fn strike(&self) -> Strike {
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        if rng.random::<f64>() >= self.rate {
            Strike::None
        } else if rng.random::<bool>() {
            Strike::Before
        } else {
            Strike::After
        }
    }
}

impl lance::io::WrappingObjectStore for Faults {
    fn wrap(&self, _prefix: &str, original: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Faults::wrap(self, original)
    }

    /// Listings are reads: they pass through unchanged.
    fn wrap_paginated(
        &self,
        _prefix: &str,
        original: Arc<dyn object_store::list::PaginatedListStore>,
    ) -> Option<Arc<dyn object_store::list::PaginatedListStore>> {
        Some(original)
    }
}

fn injected(path: &Path, when: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "faults",
        source: format!("injected fault {when} writing {path}").into(),
    }
}

#[derive(Debug)]
struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    faults: Faults,
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        match self.faults.strike() {
            Strike::Before => Err(injected(location, "before")),
            Strike::After => {
                self.inner.put_opts(location, payload, opts).await?;
                Err(injected(location, "after"))
            }
            Strike::None => self.inner.put_opts(location, payload, opts).await,
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        match self.faults.strike() {
            Strike::None => self.inner.put_multipart_opts(location, opts).await,
            _ => Err(injected(location, "before")),
        }
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        match self.faults.strike() {
            Strike::Before => Err(injected(to, "before")),
            Strike::After => {
                self.inner.copy_opts(from, to, options).await?;
                Err(injected(to, "after"))
            }
            Strike::None => self.inner.copy_opts(from, to, options).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    /// Some writes fail, some of those after landing; reads never fail.
    #[tokio::test]
    async fn writes_fail_before_or_after_landing() {
        let store = Faults::new(0.5, 3).wrap(Arc::new(InMemory::new()));
        let (mut before, mut after) = (0, 0);
        for i in 0..200 {
            let path = Path::from(format!("k{i}"));
            let put = store.put(&path, PutPayload::from(vec![1u8])).await;
            match (put.is_ok(), store.head(&path).await.is_ok()) {
                (true, true) => {}
                (false, false) => before += 1,
                (false, true) => after += 1,
                (true, false) => panic!("a put that succeeded left nothing"),
            }
        }
        assert!(before > 30 && after > 30, "before {before}, after {after}");
    }
}

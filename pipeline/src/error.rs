//! The error type of vemo-pipeline.

/// A failure of a run (bad items are rows in `errors`, not this).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operator failed (store, manifest, bundle, model, Lance, Parquet), or a record of the
    /// output is corrupt or its commits lost to other writers
    /// ([`vemo_operators::Error::Corrupt`], [`vemo_operators::Error::Contention`]: exit 1).
    #[error(transparent)]
    Operator(#[from] vemo_operators::Error),
    /// The cluster flags or hostfile are wrong.
    #[error("cluster configuration: {0}")]
    Cluster(String),
    /// Timely could not start or a worker thread died.
    #[error("dataflow: {0}")]
    Dataflow(String),
    /// The output cannot take this job's rows (other columns): the message says what to do.
    #[error("{0}")]
    Incompatible(String),
    /// A worker could not read its share of the corpus or the output to plan the delta.
    #[error("planning the delta: {0}")]
    Plan(String),
    /// The tokio runtime could not start.
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

impl From<vemo_models::Error> for Error {
    fn from(e: vemo_models::Error) -> Self {
        Error::Operator(e.into())
    }
}

impl Error {
    /// True when the user can fix it by changing flags, the job file or the input (exit 2).
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Operator(e) => e.is_user_error(),
            Error::Cluster(_) | Error::Incompatible(_) => true,
            Error::Dataflow(_) | Error::Plan(_) | Error::Runtime(_) => false,
        }
    }
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The JSON of a record vemo is about to store at `uri` (`pretty` for records people read).
/// Serialising vemo's own record structs does not fail; if it ever did, the write fails rather
/// than storing an empty record that every later read would find corrupt.
pub(crate) fn record_json<T: serde::Serialize + ?Sized>(
    uri: &str,
    record: &T,
    pretty: bool,
) -> vemo_operators::Result<String> {
    let text = match pretty {
        true => serde_json::to_string_pretty(record),
        false => serde_json::to_string(record),
    };
    text.map_err(|e| vemo_operators::Error::Io {
        path: uri.to_string(),
        cause: e.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_records_and_contention_are_job_failures_not_usage_errors() {
        let corrupt = Error::from(vemo_operators::Error::corrupt("file:///o/x.json", "bad"));
        let contention = Error::from(vemo_operators::Error::Contention {
            uri: "file:///o/items.lance".into(),
            attempts: 20,
        });
        assert!(!corrupt.is_user_error() && !contention.is_user_error());
        assert!(corrupt.to_string().contains("file:///o/x.json"));
        assert!(contention.to_string().contains("rerun"));
    }
}

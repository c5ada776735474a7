//! The error type of vemo-pipeline.

/// A failure of a run (bad items are rows in `errors`, not this).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operator failed (store, manifest, bundle, model, Lance, Parquet).
    #[error(transparent)]
    Operator(#[from] vemo_operators::Error),
    /// A record of the output is corrupt, or its commits lost to other writers
    /// ([`vemo_output::Error`]: exit 1).
    #[error(transparent)]
    Output(#[from] vemo_output::Error),
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
            Error::Output(e) => e.is_user_error(),
            Error::Cluster(_) | Error::Incompatible(_) => true,
            Error::Dataflow(_) | Error::Plan(_) | Error::Runtime(_) => false,
        }
    }
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

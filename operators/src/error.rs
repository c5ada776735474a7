//! The error type of vemo-operators, classified so the binary can choose an exit code.

/// Everything that can go wrong in an operator. Variants carry the failing URI or path and put
/// the underlying error in their message (`cause`, not a `source`), so `{:#}` prints each cause
/// once. Bad *items* are not errors: they become
/// `errors` rows ([`vemo_schemas::ErrorRecord`]); this type is for failures of the job itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A URI or path the user gave cannot be used.
    #[error("invalid URI `{uri}`: {reason}")]
    InvalidUri { uri: String, reason: String },
    /// The manifest is missing, malformed or inconsistent.
    #[error("manifest `{uri}`: {reason}")]
    Manifest { uri: String, reason: String },
    /// An input file or a setting is malformed (a CoNLL file, a device name, no CUDA).
    #[error("`{path}`: {reason}")]
    Input { path: String, reason: String },
    /// The model bundle is missing or malformed.
    #[error("model bundle `{path}`: {reason}")]
    Bundle { path: String, reason: String },
    /// An object-store call failed (possibly transient).
    #[error("object store `{uri}`: {cause}")]
    Store {
        uri: String,
        cause: object_store::Error,
    },
    /// A Lance read or write failed.
    #[error("lance dataset `{uri}`: {cause}")]
    Lance {
        uri: String,
        cause: Box<lance::Error>,
    },
    /// A model forward pass failed.
    #[error("model: {0}")]
    Model(#[from] candle_core::Error),
    /// The tokenizer could not be loaded or failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// An Arrow batch could not be built.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A Parquet file could not be written or read.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A local file could not be read or written.
    #[error("{path}: {cause}")]
    Io { path: String, cause: std::io::Error },
}

impl Error {
    /// True when the user can fix this by changing a flag, a job file, a manifest or a bundle
    /// (exit code 2); false for failures of the run itself (exit code 1).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Error::InvalidUri { .. }
                | Error::Manifest { .. }
                | Error::Input { .. }
                | Error::Bundle { .. }
        )
    }

    pub(crate) fn lance(uri: &str, source: lance::Error) -> Self {
        Error::Lance {
            uri: uri.to_string(),
            cause: Box::new(source),
        }
    }

    pub(crate) fn store(uri: &str, source: object_store::Error) -> Self {
        Error::Store {
            uri: uri.to_string(),
            cause: source,
        }
    }
}

impl From<vemo_models::Error> for Error {
    fn from(e: vemo_models::Error) -> Self {
        use vemo_models::Error as M;
        match e {
            M::Bundle { path, reason } => Error::Bundle { path, reason },
            M::Data { path, reason } => Error::Input { path, reason },
            M::Model(e) => Error::Model(e),
            M::Tokenizer(reason) => Error::Tokenizer(reason),
            M::Io { path, cause } => Error::Io { path, cause },
            // Bundle assembly (`vemo models pull`) is the CLI's; no operator assembles one.
            M::UnknownBundle { name, known } => Error::Bundle {
                path: name,
                reason: format!("unknown bundle; known bundles: {known}"),
            },
            M::Package { package, reason } => Error::Io {
                path: package,
                cause: std::io::Error::other(reason),
            },
            M::Arrow(e) => Error::Arrow(e),
        }
    }
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

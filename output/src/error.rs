//! The error type of vemo-output: a stored record that cannot be trusted ([`Error::Corrupt`]),
//! commits that keep losing to other writers ([`Error::Contention`]), or an operator failure.

/// A failure to read or write what an output records. All are failures of the run (exit 1):
/// the output, not the command, needs attention.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A store, Lance or Parquet call failed.
    #[error(transparent)]
    Operator(#[from] vemo_operators::Error),
    /// A record vemo keeps in an output (a ledger entry or snapshot, a job record, a pending
    /// column addition) cannot be parsed. Retrying cannot help and guessing could commit a
    /// shard twice or lose staged parts: `reason` says what is wrong and what to do.
    #[error("corrupt record `{uri}`: {reason}")]
    Corrupt { uri: String, reason: String },
    /// Conditional commits on `uri` kept losing to other writers (other runs on the output).
    #[error(
        "`{uri}`: {attempts} conditional commit(s) in a row lost to other writers; rerun when \
         the other runs on this output have finished"
    )]
    Contention { uri: String, attempts: usize },
}

impl Error {
    /// A [`Error::Corrupt`] for the record at `uri`.
    pub fn corrupt(uri: &str, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            uri: uri.to_string(),
            reason: reason.into(),
        }
    }

    /// True when the user can fix it by changing flags or input (exit 2): only an operator's
    /// usage error (a bad URI, say); corrupt records and contention are not.
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Operator(e) => e.is_user_error(),
            Error::Corrupt { .. } | Error::Contention { .. } => false,
        }
    }
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The JSON of a record vemo is about to store at `uri` (`pretty` for records people read).
/// Serialising vemo's own record structs does not fail; if it ever did, the write fails rather
/// than storing an empty record that every later read would find corrupt.
pub fn record_json<T: serde::Serialize + ?Sized>(
    uri: &str,
    record: &T,
    pretty: bool,
) -> Result<String> {
    let text = match pretty {
        true => serde_json::to_string_pretty(record),
        false => serde_json::to_string(record),
    };
    text.map_err(|e| {
        Error::Operator(vemo_operators::Error::Io {
            path: uri.to_string(),
            cause: e.into(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_records_and_contention_are_job_failures_not_usage_errors() {
        let corrupt = Error::corrupt("file:///o/x.json", "bad");
        let contention = Error::Contention {
            uri: "file:///o/items.lance".into(),
            attempts: 20,
        };
        assert!(!corrupt.is_user_error() && !contention.is_user_error());
        assert!(corrupt.to_string().contains("file:///o/x.json"));
        assert!(contention.to_string().contains("rerun"));
    }
}

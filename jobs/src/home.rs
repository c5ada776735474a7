//! `VEMO_HOME`: where bundles, downloaded wheels and the sample corpus live
//! (default `~/.cache/vemo`), and `${VEMO_HOME}` expansion in job files.

use std::path::PathBuf;

use vemo_models::bundle::vemo_home;

/// Folder of the bundle `name`: a path if it contains a `/`, else `$VEMO_HOME/models/name`.
pub fn bundle_dir(name: &str) -> PathBuf {
    if name.contains('/') || name.starts_with('.') {
        PathBuf::from(name)
    } else {
        vemo_home().join("models").join(name)
    }
}

/// Replaces `${VEMO_HOME}` and a leading `~/` in a path or URI.
pub fn expand(value: &str) -> String {
    let home = vemo_home().display().to_string();
    let value = value.replace("${VEMO_HOME}", &home);
    match (value.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(user)) => PathBuf::from(user).join(rest).display().to_string(),
        _ => value,
    }
}

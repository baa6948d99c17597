//! The one error of config parsing. Each message names the file (and the line) or the key that
//! is wrong, and what to write instead.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The io error is part of the message, not a source, so that a printed chain names it once.
    #[error("cannot read config file {path}: {error}; check the path given with --config")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("config file {path} line {line}: `{key}` is no longer a config key: {advice}")]
    Removed {
        path: String,
        line: usize,
        key: &'static str,
        advice: &'static str,
    },
}

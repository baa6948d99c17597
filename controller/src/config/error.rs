//! The one error of config parsing. Each message names the file (and the line) or the key that
//! is wrong, and what to write instead.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
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

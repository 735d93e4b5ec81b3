//! A plugin's configuration table, as the host hands it to `init`.

use std::str::FromStr;

/// The plugin's `config` table from the server's TOML, flattened to dotted
/// keys (`a.b = 1` for `[plugins.config.a] b = 1`).
#[derive(Debug, Clone, Default)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// A config from key/value pairs (what `init` receives).
    pub fn new(entries: Vec<(String, String)>) -> Self {
        Self { entries }
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// `key` parsed as `T`, or `default` when absent; an unparsable value is
    /// an error naming the key.
    pub fn parse_or<T: FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => raw.parse().map_err(|_| format!("config key `{key}`: cannot parse {raw:?}")),
        }
    }

    /// Every key, in the order given.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// An error unless every key is one of `known`: a typo should not pass
    /// silently.
    pub fn only(&self, known: &[&str]) -> Result<(), String> {
        match self.keys().find(|k| !known.contains(k)) {
            None => Ok(()),
            Some(k) => Err(format!(
                "unknown config key `{k}`; this plugin knows: {}",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )),
        }
    }
}

//! The kinds of plugin, one WIT world each. `[[plugins]] kind` in the
//! config file is its spelling there.

use strata_config::PluginKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    NodeSelector,
    ReplicationStrategy,
    IndexType,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::NodeSelector => "node-selector",
            Kind::ReplicationStrategy => "replication-strategy",
            Kind::IndexType => "index-type",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<PluginKind> for Kind {
    fn from(k: PluginKind) -> Self {
        match k {
            PluginKind::NodeSelector => Kind::NodeSelector,
            PluginKind::ReplicationStrategy => Kind::ReplicationStrategy,
            PluginKind::IndexType => Kind::IndexType,
        }
    }
}

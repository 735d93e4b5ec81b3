//! Plain Rust mirrors of the WIT `types` interface.

/// A node's state as the failure detector sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Answering heartbeats.
    Healthy,
    /// Missed heartbeats; may be down.
    Suspect,
    /// Declared down.
    Down,
}

/// A node of the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInfo {
    /// Stable node id.
    pub id: String,
    /// Address peers reach it at.
    pub address: String,
    /// Region, e.g. `eu-west`.
    pub region: String,
    /// Zone within the region.
    pub zone: String,
    /// Bytes the node offers for data.
    pub capacity_total: u64,
    /// Bytes still free.
    pub capacity_available: u64,
    /// Recent load, 0.0 (idle) to 1.0 (saturated).
    pub load: f64,
    /// Failure detector state.
    pub health: Health,
    /// Free-form labels.
    pub labels: Vec<(String, String)>,
}

impl NodeInfo {
    /// Fraction of capacity in use, 0.0 to 1.0 (1.0 for a node without capacity).
    pub fn utilization(&self) -> f64 {
        if self.capacity_total == 0 {
            return 1.0;
        }
        let used = self.capacity_total.saturating_sub(self.capacity_available);
        used as f64 / self.capacity_total as f64
    }

    /// The value of label `name`, if set.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A scalar value; lists hold only scalars.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// Absent.
    Null,
    /// true or false.
    Bool(bool),
    /// Any number.
    Number(f64),
    /// A string.
    Text(String),
}

/// A field or attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Absent.
    Null,
    /// true or false.
    Bool(bool),
    /// Any number.
    Number(f64),
    /// A string.
    Text(String),
    /// A list of scalars.
    List(Vec<Scalar>),
}

impl From<Scalar> for Value {
    fn from(s: Scalar) -> Self {
        match s {
            Scalar::Null => Value::Null,
            Scalar::Bool(b) => Value::Bool(b),
            Scalar::Number(n) => Value::Number(n),
            Scalar::Text(t) => Value::Text(t),
        }
    }
}

/// The object a call is about.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectInfo {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Hex SHA-256 of the content; empty when not known yet.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// MIME type, possibly empty.
    pub content_type: String,
    /// User attributes.
    pub attributes: Vec<(String, Value)>,
}

/// How strongly a write or read must agree with the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Readers see every acknowledged write.
    Strong,
    /// Replicas converge eventually.
    Eventual,
}

/// A bucket's replication policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Copies wanted.
    pub replicas: u32,
    /// Fewest copies a write may settle for.
    pub min_replicas: u32,
    /// Most copies ever kept.
    pub max_replicas: u32,
    /// Consistency level.
    pub consistency: Consistency,
    /// Plugin-specific parameters.
    pub params: Vec<(String, String)>,
}

impl Policy {
    /// The parameter `name`, if set.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A plugin's answer when it cannot do what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginError {
    /// The input breaks the contract, or a parameter is wrong.
    InvalidInput(String),
    /// Well formed but impossible (too few nodes, zones…).
    Unsatisfiable(String),
    /// Anything else.
    Internal(String),
}

//! The JSON of etcd's gateway: serde types for its answers (64-bit integers
//! as strings, bytes in base64, default values omitted) and the request
//! pieces of transactions.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

pub(super) fn de_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        S(String),
        I(i64),
    }
    match N::deserialize(d)? {
        N::S(s) => s.parse().map_err(serde::de::Error::custom),
        N::I(i) => Ok(i),
    }
}

pub(super) fn de_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        S(String),
        I(u64),
    }
    match N::deserialize(d)? {
        N::S(s) => s.parse().map_err(serde::de::Error::custom),
        N::I(i) => Ok(i),
    }
}

pub(super) fn de_b64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = String::deserialize(d)?;
    B64.decode(s.as_bytes()).map_err(serde::de::Error::custom)
}

pub(super) fn b64(b: &[u8]) -> String {
    B64.encode(b)
}

/// The response header etcd puts on every answer.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Header {
    #[serde(deserialize_with = "de_u64")]
    pub cluster_id: u64,
    #[serde(deserialize_with = "de_u64")]
    pub member_id: u64,
    /// The store's revision when the request was served.
    #[serde(deserialize_with = "de_i64")]
    pub revision: i64,
    #[serde(deserialize_with = "de_u64")]
    pub raft_term: u64,
}

/// A key and its value with etcd's metadata.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct KeyValue {
    #[serde(deserialize_with = "de_b64")]
    pub key: Vec<u8>,
    #[serde(deserialize_with = "de_b64")]
    pub value: Vec<u8>,
    /// Revision of the put that created the key (0: the key is absent).
    #[serde(deserialize_with = "de_i64")]
    pub create_revision: i64,
    /// Revision of the last put.
    #[serde(deserialize_with = "de_i64")]
    pub mod_revision: i64,
    #[serde(deserialize_with = "de_i64")]
    pub version: i64,
    /// The lease the key is attached to (0: none).
    #[serde(deserialize_with = "de_i64")]
    pub lease: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RangeResp {
    pub(super) header: Header,
    pub(super) kvs: Vec<KeyValue>,
    pub(super) more: bool,
    #[serde(deserialize_with = "de_i64")]
    pub(super) count: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct PutResp {
    pub(super) header: Header,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct DeleteResp {
    pub(super) header: Header,
    #[serde(deserialize_with = "de_i64")]
    pub(super) deleted: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawOpResponse {
    pub(super) response_range: Option<RangeResp>,
    pub(super) response_put: Option<PutResp>,
    pub(super) response_delete_range: Option<DeleteResp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct TxnResp {
    pub(super) header: Header,
    pub(super) succeeded: bool,
    pub(super) responses: Vec<RawOpResponse>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct LeaseResp {
    pub(super) header: Header,
    #[serde(rename = "ID", deserialize_with = "de_i64")]
    pub(super) id: i64,
    #[serde(rename = "TTL", deserialize_with = "de_i64")]
    pub(super) ttl: i64,
    pub(super) error: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawEvent {
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) kv: KeyValue,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct WatchResp {
    pub(super) header: Header,
    pub(super) created: bool,
    pub(super) canceled: bool,
    #[serde(deserialize_with = "de_i64")]
    pub(super) compact_revision: i64,
    pub(super) cancel_reason: String,
    pub(super) fragment: bool,
    pub(super) events: Vec<RawEvent>,
}

/// One message of a streaming endpoint (`/v3/watch`, `/v3/lease/keepalive`).
#[derive(Debug, Deserialize)]
pub(super) struct StreamFrame<T> {
    pub(super) result: Option<T>,
    pub(super) error: Option<Value>,
}

/// etcd's error body: `{"error": "...", "message": "...", "code": N}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ErrorBody {
    pub(super) message: String,
    pub(super) code: i64,
}

/// A page or all of a range.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    pub more: bool,
    pub count: i64,
    /// The revision the range was read at.
    pub revision: i64,
}

/// The end of the range of keys starting with `prefix` (etcd's `range_end`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

/// A comparison in a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    pub key: Vec<u8>,
    pub target: CompareTarget,
    pub op: CmpOp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    CreateRevision(i64),
    ModRevision(i64),
    Version(i64),
    Value(Vec<u8>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Equal,
    NotEqual,
    Greater,
    Less,
}

impl Compare {
    /// The key does not exist.
    pub fn absent(key: impl Into<Vec<u8>>) -> Self {
        Compare {
            key: key.into(),
            target: CompareTarget::CreateRevision(0),
            op: CmpOp::Equal,
        }
    }

    /// The key was last written at `rev` (compare-and-set).
    pub fn mod_revision(key: impl Into<Vec<u8>>, rev: i64) -> Self {
        Compare {
            key: key.into(),
            target: CompareTarget::ModRevision(rev),
            op: CmpOp::Equal,
        }
    }

    /// The key holds exactly `value`.
    pub fn value(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Compare {
            key: key.into(),
            target: CompareTarget::Value(value.into()),
            op: CmpOp::Equal,
        }
    }

    pub(super) fn to_json(&self) -> Value {
        let result = match self.op {
            CmpOp::Equal => "EQUAL",
            CmpOp::NotEqual => "NOT_EQUAL",
            CmpOp::Greater => "GREATER",
            CmpOp::Less => "LESS",
        };
        let mut v = json!({"key": b64(&self.key), "result": result});
        let (target, field, val) = match &self.target {
            CompareTarget::CreateRevision(r) => ("CREATE", "create_revision", json!(r.to_string())),
            CompareTarget::ModRevision(r) => ("MOD", "mod_revision", json!(r.to_string())),
            CompareTarget::Version(r) => ("VERSION", "version", json!(r.to_string())),
            CompareTarget::Value(b) => ("VALUE", "value", json!(b64(b))),
        };
        v["target"] = json!(target);
        v[field] = val;
        v
    }
}

/// An operation in a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOp {
    /// Write `value`; `lease` 0 for none.
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
    },
    /// Delete one key, or `[key, range_end)`.
    Delete {
        key: Vec<u8>,
        range_end: Option<Vec<u8>>,
    },
    /// Read one key.
    Get { key: Vec<u8> },
}

impl TxnOp {
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>, lease: i64) -> Self {
        TxnOp::Put {
            key: key.into(),
            value: value.into(),
            lease,
        }
    }

    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        TxnOp::Delete {
            key: key.into(),
            range_end: None,
        }
    }

    pub fn get(key: impl Into<Vec<u8>>) -> Self {
        TxnOp::Get { key: key.into() }
    }

    pub(super) fn to_json(&self) -> Value {
        match self {
            TxnOp::Put { key, value, lease } => {
                let mut p = json!({"key": b64(key), "value": b64(value)});
                if *lease != 0 {
                    p["lease"] = json!(lease.to_string());
                }
                json!({ "request_put": p })
            }
            TxnOp::Delete { key, range_end } => {
                let mut d = json!({"key": b64(key)});
                if let Some(end) = range_end {
                    d["range_end"] = json!(b64(end));
                }
                json!({ "request_delete_range": d })
            }
            TxnOp::Get { key } => json!({"request_range": {"key": b64(key)}}),
        }
    }
}

/// What a transaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnResult {
    /// The compares held, so the `success` branch ran.
    pub succeeded: bool,
    pub revision: i64,
    /// One per operation of the branch that ran.
    pub responses: Vec<TxnOpResult>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOpResult {
    Range(Vec<KeyValue>),
    Put,
    Deleted(i64),
}

/// A lease as granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    pub ttl_secs: i64,
}

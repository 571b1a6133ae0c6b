//! An etcd v3 client over etcd's JSON gateway (`/v3/...`, HTTP/1.1).
//!
//! Why the gateway and not gRPC: etcd (3.4 and later) serves the same v3 API
//! as JSON over plain HTTP/1.1 from the same client port, keys and values in
//! base64 and 64-bit integers as strings. Speaking it takes this file and
//! `http.rs`; speaking gRPC would take tonic, prost and a tokio runtime,
//! whose build scripts need `protoc` — and the project promises that
//! `cargo test` works with the Rust toolchain alone. The API surface vxswitch
//! needs is small: range, put, delete, txn, leases and a watch.
//!
//! Everything is blocking, with deadlines, on the caller's thread (the
//! cluster agent's own thread: nothing here reaches the dataplane).
//!
//! Failover: a `Client` knows several endpoints (members of one cluster) and
//! keeps one keep-alive connection to the one that last answered. A
//! transport error, a timeout or an "unavailable" answer moves it to the next
//! endpoint; other errors (a refused compare, a lease not found) are final.
//!
//! Untrusted input: responses are parsed with serde into typed structs (no
//! panics, serde_json caps nesting depth), bodies are capped by
//! `http::Limits`, a watch line by `EtcdConfig::max_watch_line`, a paged list
//! by `EtcdConfig::max_list_keys`.

use std::time::{Duration, Instant, SystemTime};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::http::{BodyStream, Conn, Endpoint, HttpError, Limits, ReadOutcome};

/// How to reach etcd.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    pub endpoints: Vec<Endpoint>,
    pub connect_timeout: Duration,
    /// Deadline of one request to one endpoint.
    pub request_timeout: Duration,
    pub limits: Limits,
    /// Keys per page when listing a prefix.
    pub page_size: i64,
    /// A listing with more keys than this is refused.
    pub max_list_keys: usize,
    /// One watch message (a JSON line) at most this long.
    pub max_watch_line: usize,
}

impl EtcdConfig {
    pub fn new(endpoints: Vec<Endpoint>) -> Self {
        EtcdConfig {
            endpoints,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            limits: Limits::default(),
            page_size: 2000,
            max_list_keys: 1_000_000,
            max_watch_line: 64 * 1024 * 1024,
        }
    }

    /// Parses a comma-separated list such as
    /// `http://10.0.0.1:2379,http://10.0.0.2:2379`.
    pub fn parse_endpoints(s: &str) -> Result<Vec<Endpoint>, HttpError> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .collect()
    }
}

/// Why an etcd call failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("etcd at {endpoint} refused the request: {message} (gRPC code {code}, HTTP {status})")]
    Server {
        endpoint: String,
        status: u16,
        code: i64,
        message: String,
    },
    #[error("unexpected answer from etcd at {endpoint}: {what}")]
    BadResponse { endpoint: String, what: String },
    #[error("the requested revision was compacted by etcd (oldest kept: {compact_revision})")]
    Compacted { compact_revision: i64 },
    #[error("the watch was cancelled by etcd: {reason}")]
    WatchCanceled { reason: String },
    #[error("the watch stream from {endpoint} ended")]
    WatchClosed { endpoint: String },
    #[error("listing {prefix:?} returned more than {limit} keys")]
    TooManyKeys { prefix: String, limit: usize },
    #[error("no etcd endpoint configured")]
    NoEndpoints,
}

/// Kernel receive buffer of a watch connection: a consumer that falls
/// behind pushes back on etcd after this much, instead of the kernel
/// buffering megabytes (etcd then holds the events or, after a compaction,
/// cancels the watch, which the agent answers with a re-list).
const WATCH_RECV_BUFFER: usize = 256 * 1024;

/// gRPC status codes that etcd returns and this client acts on.
mod code {
    pub const DEADLINE_EXCEEDED: i64 = 4;
    pub const NOT_FOUND: i64 = 5;
    pub const OUT_OF_RANGE: i64 = 11;
    pub const UNAVAILABLE: i64 = 14;
}

impl EtcdError {
    /// The lease named in the request does not exist (any more).
    pub fn is_lease_not_found(&self) -> bool {
        matches!(self, EtcdError::Server { code, message, .. }
            if *code == code::NOT_FOUND && message.contains("lease not found"))
    }

    /// etcd could not be reached or could not serve (no quorum, a member
    /// restarting): retry later or elsewhere; the request may not have
    /// been applied. Everything else is an answer.
    pub fn is_unavailable(&self) -> bool {
        match self {
            EtcdError::Http(_) | EtcdError::WatchClosed { .. } | EtcdError::NoEndpoints => true,
            EtcdError::Server { status, code, .. } => {
                matches!(*code, code::UNAVAILABLE | code::DEADLINE_EXCEEDED)
                    || matches!(*status, 502..=504)
            }
            _ => false,
        }
    }
}

fn de_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
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

fn de_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
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

fn de_b64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = String::deserialize(d)?;
    B64.decode(s.as_bytes()).map_err(serde::de::Error::custom)
}

fn b64(b: &[u8]) -> String {
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
struct RangeResp {
    header: Header,
    kvs: Vec<KeyValue>,
    more: bool,
    #[serde(deserialize_with = "de_i64")]
    count: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PutResp {
    header: Header,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DeleteResp {
    header: Header,
    #[serde(deserialize_with = "de_i64")]
    deleted: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawOpResponse {
    response_range: Option<RangeResp>,
    response_put: Option<PutResp>,
    response_delete_range: Option<DeleteResp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TxnResp {
    header: Header,
    succeeded: bool,
    responses: Vec<RawOpResponse>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LeaseResp {
    header: Header,
    #[serde(rename = "ID", deserialize_with = "de_i64")]
    id: i64,
    #[serde(rename = "TTL", deserialize_with = "de_i64")]
    ttl: i64,
    error: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawEvent {
    #[serde(rename = "type")]
    kind: String,
    kv: KeyValue,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WatchResp {
    header: Header,
    created: bool,
    canceled: bool,
    #[serde(deserialize_with = "de_i64")]
    compact_revision: i64,
    cancel_reason: String,
    fragment: bool,
    events: Vec<RawEvent>,
}

/// One message of a streaming endpoint (`/v3/watch`, `/v3/lease/keepalive`).
#[derive(Debug, Deserialize)]
struct StreamFrame<T> {
    result: Option<T>,
    error: Option<Value>,
}

/// etcd's error body: `{"error": "...", "message": "...", "code": N}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ErrorBody {
    message: String,
    code: i64,
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

    fn to_json(&self) -> Value {
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

    fn to_json(&self) -> Value {
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

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    Put(KeyValue),
    Delete { key: Vec<u8>, mod_revision: i64 },
}

impl WatchEvent {
    pub fn key(&self) -> &[u8] {
        match self {
            WatchEvent::Put(kv) => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }

    pub fn mod_revision(&self) -> i64 {
        match self {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { mod_revision, .. } => *mod_revision,
        }
    }
}

/// One message of a watch stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchMessage {
    /// The watch is established; `revision` is the store's current one.
    Created { revision: i64 },
    /// Changes, in revision order.
    Events { events: Vec<WatchEvent> },
    /// No changes; everything up to `revision` was delivered.
    Progress { revision: i64 },
}

/// A client of one etcd cluster (see the module docs for failover).
pub struct Client {
    cfg: EtcdConfig,
    /// Index of the endpoint to try first.
    current: usize,
    conn: Option<(usize, Conn)>,
    /// The server's `Date:` of the last answer and the local time it arrived.
    last_date: Option<(SystemTime, SystemTime)>,
}

impl Client {
    pub fn new(cfg: EtcdConfig) -> Self {
        Client {
            cfg,
            current: 0,
            conn: None,
            last_date: None,
        }
    }

    pub fn config(&self) -> &EtcdConfig {
        &self.cfg
    }

    /// The server's clock (`Date:` header, 1 s resolution) of the last
    /// answer, with the local wall-clock time it was received.
    pub fn last_server_date(&self) -> Option<(SystemTime, SystemTime)> {
        self.last_date
    }

    /// Forgets the current connection (the next call connects anew).
    pub fn disconnect(&mut self) {
        self.conn = None;
    }

    fn post_one(
        &mut self,
        idx: usize,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(String, super::http::Response), EtcdError> {
        let ep = &self.cfg.endpoints[idx];
        let deadline = Instant::now() + self.cfg.request_timeout;
        for attempt in 0..2 {
            let mut conn = match self.conn.take() {
                Some((i, c)) if i == idx && c.is_reusable() => c,
                _ => Conn::connect(ep, self.cfg.connect_timeout, self.cfg.limits)?,
            };
            let reused = conn.was_used();
            match conn.request(path, headers, body, deadline) {
                Ok(resp) => {
                    let label = conn.label().to_string();
                    if conn.is_reusable() {
                        self.conn = Some((idx, conn));
                    }
                    return Ok((label, resp));
                }
                // A kept-alive connection the server closed while idle:
                // try once more on a new one.
                Err(HttpError::Closed { .. } | HttpError::Io { .. }) if reused && attempt == 0 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(EtcdError::NoEndpoints) // not reached: the second attempt returns
    }

    /// POSTs `body` to `path`, failing over between endpoints, and returns
    /// the endpoint that answered with the answer's body.
    fn post(&mut self, path: &str, body: &Value) -> Result<(String, Vec<u8>), EtcdError> {
        let n = self.cfg.endpoints.len();
        if n == 0 {
            return Err(EtcdError::NoEndpoints);
        }
        let body = serde_json::to_vec(body).unwrap_or_default();
        let mut last = EtcdError::NoEndpoints;
        for i in 0..n {
            let idx = (self.current + i) % n;
            let result = self
                .post_one(idx, path, &[], &body)
                .and_then(|(label, resp)| {
                    if let Some(d) = resp.date {
                        self.last_date = Some((d, SystemTime::now()));
                    }
                    if resp.status == 200 {
                        Ok((label, resp.body))
                    } else {
                        Err(server_error(&label, resp.status, &resp.body))
                    }
                });
            match result {
                Ok(r) => {
                    self.current = idx;
                    return Ok(r);
                }
                Err(e) if e.is_unavailable() => {
                    self.conn = None;
                    last = e;
                }
                Err(e) => return Err(e),
            }
        }
        self.current = (self.current + 1) % n;
        Err(last)
    }

    fn call<T: DeserializeOwned>(&mut self, path: &str, body: &Value) -> Result<T, EtcdError> {
        let (label, bytes) = self.post(path, body)?;
        parse_json(&label, &bytes)
    }

    /// Calls a streaming endpoint that answers one message and ends.
    fn call_stream_once<T: DeserializeOwned>(
        &mut self,
        path: &str,
        body: &Value,
    ) -> Result<T, EtcdError> {
        let (label, bytes) = self.post(path, body)?;
        let line = bytes
            .split(|&b| b == b'\n')
            .find(|l| !l.is_empty())
            .unwrap_or(&[]);
        let frame: StreamFrame<T> = parse_json(&label, line)?;
        match (frame.result, frame.error) {
            (_, Some(err)) => Err(stream_error(&label, &err)),
            (Some(r), None) => Ok(r),
            (None, None) => Err(EtcdError::BadResponse {
                endpoint: label,
                what: "stream message without result".into(),
            }),
        }
    }

    /// Reads `[key, range_end)` (one key when `range_end` is `None`) at
    /// `revision` (0: the latest), at most `limit` keys (0: no limit).
    pub fn range(
        &mut self,
        key: &[u8],
        range_end: Option<&[u8]>,
        revision: i64,
        limit: i64,
    ) -> Result<RangeResult, EtcdError> {
        let mut req = json!({"key": b64(key)});
        if let Some(end) = range_end {
            req["range_end"] = json!(b64(end));
        }
        if revision > 0 {
            req["revision"] = json!(revision.to_string());
        }
        if limit > 0 {
            req["limit"] = json!(limit.to_string());
        }
        let r: RangeResp = self.call("/v3/kv/range", &req).map_err(compacted)?;
        Ok(RangeResult {
            kvs: r.kvs,
            more: r.more,
            count: r.count,
            revision: r.header.revision,
        })
    }

    /// One key and the revision it was read at.
    pub fn get(&mut self, key: &[u8]) -> Result<(Option<KeyValue>, i64), EtcdError> {
        let r = self.range(key, None, 0, 0)?;
        Ok((r.kvs.into_iter().find(|kv| kv.key == key), r.revision))
    }

    /// Every key under `prefix`, read page by page at one revision, which
    /// is returned: a watch from `revision + 1` misses nothing.
    pub fn list_prefix(&mut self, prefix: &[u8]) -> Result<(Vec<KeyValue>, i64), EtcdError> {
        let end = prefix_end(prefix);
        let mut all: Vec<KeyValue> = Vec::new();
        let mut from = prefix.to_vec();
        let mut revision = 0;
        loop {
            let page = self.range(&from, Some(&end), revision, self.cfg.page_size)?;
            if revision == 0 {
                revision = page.revision;
            }
            let more = page.more;
            let Some(last) = page.kvs.last() else {
                if more {
                    return Err(EtcdError::BadResponse {
                        endpoint: String::new(),
                        what: "an empty page that says more keys follow".into(),
                    });
                }
                break;
            };
            let mut next = last.key.clone();
            next.push(0);
            if next <= from {
                return Err(EtcdError::BadResponse {
                    endpoint: String::new(),
                    what: "a page that does not advance".into(),
                });
            }
            from = next;
            all.extend(page.kvs);
            if all.len() > self.cfg.max_list_keys {
                return Err(EtcdError::TooManyKeys {
                    prefix: String::from_utf8_lossy(prefix).into_owned(),
                    limit: self.cfg.max_list_keys,
                });
            }
            if !more {
                break;
            }
        }
        Ok((all, revision))
    }

    /// Writes `value` at `key` (`lease` 0: none); returns the new revision.
    pub fn put(&mut self, key: &[u8], value: &[u8], lease: i64) -> Result<i64, EtcdError> {
        let mut req = json!({"key": b64(key), "value": b64(value)});
        if lease != 0 {
            req["lease"] = json!(lease.to_string());
        }
        let r: PutResp = self.call("/v3/kv/put", &req)?;
        Ok(r.header.revision)
    }

    /// Deletes `key` (or `[key, range_end)`); returns how many keys went.
    pub fn delete(&mut self, key: &[u8], range_end: Option<&[u8]>) -> Result<i64, EtcdError> {
        let mut req = json!({"key": b64(key)});
        if let Some(end) = range_end {
            req["range_end"] = json!(b64(end));
        }
        let r: DeleteResp = self.call("/v3/kv/deleterange", &req)?;
        Ok(r.deleted)
    }

    /// If every compare holds, runs `success`, else `failure`; atomically.
    pub fn txn(
        &mut self,
        compare: &[Compare],
        success: &[TxnOp],
        failure: &[TxnOp],
    ) -> Result<TxnResult, EtcdError> {
        let req = json!({
            "compare": compare.iter().map(Compare::to_json).collect::<Vec<_>>(),
            "success": success.iter().map(TxnOp::to_json).collect::<Vec<_>>(),
            "failure": failure.iter().map(TxnOp::to_json).collect::<Vec<_>>(),
        });
        let r: TxnResp = self.call("/v3/kv/txn", &req)?;
        let responses = r
            .responses
            .into_iter()
            .map(
                |o| match (o.response_range, o.response_put, o.response_delete_range) {
                    (Some(rr), _, _) => TxnOpResult::Range(rr.kvs),
                    (_, _, Some(d)) => TxnOpResult::Deleted(d.deleted),
                    _ => TxnOpResult::Put,
                },
            )
            .collect();
        Ok(TxnResult {
            succeeded: r.succeeded,
            revision: r.header.revision,
            responses,
        })
    }

    /// Compacts the history up to `revision` (tests and operators).
    pub fn compact(&mut self, revision: i64) -> Result<(), EtcdError> {
        let _: PutResp = self.call(
            "/v3/kv/compaction",
            &json!({"revision": revision.to_string(), "physical": true}),
        )?;
        Ok(())
    }

    /// Grants a lease of `ttl` (whole seconds, at least 1).
    pub fn lease_grant(&mut self, ttl: Duration) -> Result<Lease, EtcdError> {
        let secs = ttl.as_secs().max(1);
        let r: LeaseResp = self.call("/v3/lease/grant", &json!({"TTL": secs.to_string()}))?;
        if !r.error.is_empty() || r.id == 0 {
            return Err(EtcdError::BadResponse {
                endpoint: String::new(),
                what: format!("lease grant refused: {}", r.error),
            });
        }
        Ok(Lease {
            id: r.id,
            ttl_secs: r.ttl,
        })
    }

    /// Refreshes a lease. `Ok(None)`: the lease no longer exists (expired or
    /// revoked); its keys are gone.
    pub fn lease_keepalive(&mut self, id: i64) -> Result<Option<i64>, EtcdError> {
        let r: LeaseResp =
            self.call_stream_once("/v3/lease/keepalive", &json!({"ID": id.to_string()}))?;
        Ok((r.ttl > 0).then_some(r.ttl))
    }

    /// Revokes a lease, deleting its keys. `Ok(false)`: it did not exist.
    pub fn lease_revoke(&mut self, id: i64) -> Result<bool, EtcdError> {
        match self.call::<LeaseResp>("/v3/lease/revoke", &json!({"ID": id.to_string()})) {
            Ok(_) => Ok(true),
            Err(EtcdError::Server { code, .. }) if code == code::NOT_FOUND => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Seconds a lease has left; `None` when it does not exist.
    pub fn lease_time_to_live(&mut self, id: i64) -> Result<Option<i64>, EtcdError> {
        let r: LeaseResp = self.call("/v3/lease/timetolive", &json!({"ID": id.to_string()}))?;
        Ok((r.ttl >= 0).then_some(r.ttl))
    }

    /// Opens a watch of every key under `prefix` from `start_revision` on
    /// its own connection (failing over like every call). The first message
    /// is `Created`; a compacted `start_revision` shows as
    /// `EtcdError::Compacted` from `Watch::next`.
    pub fn watch(&mut self, prefix: &[u8], start_revision: i64) -> Result<Watch, EtcdError> {
        let n = self.cfg.endpoints.len();
        if n == 0 {
            return Err(EtcdError::NoEndpoints);
        }
        let body = serde_json::to_vec(&json!({"create_request": {
            "key": b64(prefix),
            "range_end": b64(&prefix_end(prefix)),
            "start_revision": start_revision.to_string(),
        }}))
        .unwrap_or_default();
        // Ask the member to end the watch when it loses its leader, so a
        // watch on a partitioned member does not go silently stale.
        let headers = [("Grpc-Metadata-hasleader", "true")];
        let mut last = EtcdError::NoEndpoints;
        for i in 0..n {
            let idx = (self.current + i) % n;
            let ep = &self.cfg.endpoints[idx];
            let opened =
                Conn::connect(ep, self.cfg.connect_timeout, self.cfg.limits).and_then(|c| {
                    c.set_recv_buffer(WATCH_RECV_BUFFER);
                    c.stream(
                        "/v3/watch",
                        &headers,
                        &body,
                        Instant::now() + self.cfg.request_timeout,
                    )
                });
            match opened {
                Ok((head, body)) if head.status == 200 => {
                    return Ok(Watch {
                        body,
                        pending: Vec::new(),
                        scanned: 0,
                        max_line: self.cfg.max_watch_line,
                        next_revision: start_revision,
                    })
                }
                Ok((head, _)) => {
                    last = EtcdError::Server {
                        endpoint: ep.to_string(),
                        status: head.status,
                        code: 0,
                        message: "watch refused".into(),
                    };
                    if !last.is_unavailable() {
                        return Err(last);
                    }
                }
                Err(e) => last = e.into(),
            }
        }
        Err(last)
    }
}

fn parse_json<T: DeserializeOwned>(label: &str, bytes: &[u8]) -> Result<T, EtcdError> {
    serde_json::from_slice(bytes).map_err(|e| EtcdError::BadResponse {
        endpoint: label.to_string(),
        what: e.to_string(),
    })
}

fn server_error(label: &str, status: u16, body: &[u8]) -> EtcdError {
    let (code, message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => (e.code, e.message),
        Err(_) => (
            0,
            String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        ),
    };
    EtcdError::Server {
        endpoint: label.to_string(),
        status,
        code,
        message,
    }
}

fn stream_error(label: &str, err: &Value) -> EtcdError {
    let code = err.get("grpc_code").and_then(Value::as_i64).unwrap_or(0);
    let status = err
        .get("http_code")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(0);
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("stream error")
        .to_string();
    EtcdError::Server {
        endpoint: label.to_string(),
        status,
        code,
        message,
    }
}

/// A range error for a compacted revision becomes `EtcdError::Compacted`.
fn compacted(e: EtcdError) -> EtcdError {
    match e {
        EtcdError::Server { code, .. } if code == code::OUT_OF_RANGE => EtcdError::Compacted {
            compact_revision: 0,
        },
        e => e,
    }
}

/// An open watch (see `Client::watch`).
pub struct Watch {
    body: BodyStream,
    /// Decoded body bytes not yet returned as messages.
    pending: Vec<u8>,
    /// `pending[..scanned]` holds no newline.
    scanned: usize,
    max_line: usize,
    /// The revision to resume from after everything seen so far.
    next_revision: i64,
}

impl Watch {
    /// The revision a new watch should start from to continue this one.
    pub fn next_revision(&self) -> i64 {
        self.next_revision
    }

    /// Waits up to `timeout` for the next message. `Ok(None)`: nothing yet.
    /// Errors end the watch: `Compacted` (resync from a fresh list),
    /// `WatchCanceled`, `WatchClosed`, transport errors.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<WatchMessage>, EtcdError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(nl) = self.pending[self.scanned..]
                .iter()
                .position(|&b| b == b'\n')
            {
                let end = self.scanned + nl;
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                self.scanned = 0;
                let line = &line[..line.len() - 1];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return self.message(line).map(Some);
            }
            self.scanned = self.pending.len();
            if self.pending.len() > self.max_line {
                return Err(HttpError::TooLarge {
                    endpoint: self.body.label().to_string(),
                    what: "watch message",
                    limit: self.max_line,
                }
                .into());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match self.body.read_some(&mut self.pending, left)? {
                ReadOutcome::Data => {}
                ReadOutcome::Idle => return Ok(None),
                ReadOutcome::End => {
                    return Err(EtcdError::WatchClosed {
                        endpoint: self.body.label().to_string(),
                    })
                }
            }
        }
    }

    fn message(&mut self, line: &[u8]) -> Result<WatchMessage, EtcdError> {
        let label = self.body.label().to_string();
        let frame: StreamFrame<WatchResp> = parse_json(&label, line)?;
        if let Some(err) = frame.error {
            return Err(stream_error(&label, &err));
        }
        let Some(r) = frame.result else {
            return Err(EtcdError::BadResponse {
                endpoint: label,
                what: "watch message without result".into(),
            });
        };
        if r.canceled {
            if r.compact_revision > 0 {
                return Err(EtcdError::Compacted {
                    compact_revision: r.compact_revision,
                });
            }
            return Err(EtcdError::WatchCanceled {
                reason: if r.cancel_reason.is_empty() {
                    "no reason given".into()
                } else {
                    r.cancel_reason
                },
            });
        }
        if r.fragment {
            return Err(EtcdError::BadResponse {
                endpoint: label,
                what: "a fragmented watch response (not requested)".into(),
            });
        }
        if r.created {
            return Ok(WatchMessage::Created {
                revision: r.header.revision,
            });
        }
        if r.events.is_empty() {
            self.next_revision = self.next_revision.max(r.header.revision + 1);
            return Ok(WatchMessage::Progress {
                revision: r.header.revision,
            });
        }
        let mut events = Vec::with_capacity(r.events.len());
        for e in r.events {
            let ev = match e.kind.as_str() {
                "" | "PUT" => WatchEvent::Put(e.kv),
                "DELETE" => WatchEvent::Delete {
                    key: e.kv.key,
                    mod_revision: e.kv.mod_revision,
                },
                other => {
                    return Err(EtcdError::BadResponse {
                        endpoint: label,
                        what: format!("unknown event type {other:?}"),
                    })
                }
            };
            self.next_revision = self.next_revision.max(ev.mod_revision() + 1);
            events.push(ev);
        }
        Ok(WatchMessage::Events { events })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }

    #[test]
    fn compare_json_matches_the_gateway() {
        let c = Compare::absent(&b"/k"[..]).to_json();
        assert_eq!(
            c,
            json!({"key":"L2s=","target":"CREATE","result":"EQUAL","create_revision":"0"})
        );
        let c = Compare::value(&b"/k"[..], &b"v"[..]).to_json();
        assert_eq!(
            c,
            json!({"key":"L2s=","target":"VALUE","result":"EQUAL","value":"dg=="})
        );
        let p = TxnOp::put(&b"/k"[..], &b"v"[..], 7).to_json();
        assert_eq!(
            p,
            json!({"request_put":{"key":"L2s=","value":"dg==","lease":"7"}})
        );
    }

    #[test]
    fn parses_gateway_answers() {
        // Captured from etcd 3.4.23.
        let r: RangeResp = serde_json::from_str(
            r#"{"header":{"cluster_id":"15118495548433857066","member_id":"13668033151171901709","revision":"2","raft_term":"2"},"kvs":[{"key":"L2EvMQ==","create_revision":"2","mod_revision":"2","version":"1","value":"aGVsbG8="}],"count":"1"}"#,
        )
        .unwrap();
        assert_eq!(r.header.revision, 2);
        assert_eq!(r.kvs[0].key, b"/a/1");
        assert_eq!(r.kvs[0].value, b"hello");
        let t: TxnResp = serde_json::from_str(
            r#"{"header":{"revision":"2"},"responses":[{"response_range":{"header":{"revision":"2"},"kvs":[{"key":"L2EvMQ==","create_revision":"2","mod_revision":"2","version":"1","value":"aGVsbG8="}],"count":"1"}}]}"#,
        )
        .unwrap();
        assert!(!t.succeeded);
        let l: StreamFrame<LeaseResp> = serde_json::from_str(
            r#"{"result":{"header":{"revision":"4"},"ID":"4111120477255163919"}}"#,
        )
        .unwrap();
        assert_eq!(l.result.unwrap().ttl, 0);
        let e: ErrorBody = serde_json::from_str(
            r#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#,
        )
        .unwrap();
        assert_eq!(e.code, 5);
        // Malformed values are errors, never panics.
        for bad in [
            r#"{"kvs":[{"key":"!!!"}]}"#,
            r#"{"header":{"revision":"x"}}"#,
            r#"{"count":"99999999999999999999999"}"#,
            r#"{"kvs":"#,
        ] {
            assert!(serde_json::from_str::<RangeResp>(bad).is_err(), "{bad}");
        }
    }
}

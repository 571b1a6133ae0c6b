//! `etcd_response`: what an etcd member (or anything answering on its
//! address) sends the cluster client, and the keys and values in it.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Deserialize;

use crate::cluster::etcd::{
    Client, Compare, EtcdConfig, KeyValue, TxnOp, WatchEvent, WatchMessage,
};
use crate::cluster::http::{parse_head, ChunkedDecoder, DecodeError, Endpoint, Head, Limits};
use crate::cluster::model::{diff, ClusterView};
use crate::cluster::schema::{self, HostId, Schema};
use crate::cluster::State;

/// What the first input byte selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EtcdMode {
    /// The HTTP response decoder, sans-IO, fed in two pieces (split at
    /// the second byte's fraction of the rest), against one piece.
    Http,
    /// The etcd client over loopback, against a server that answers every
    /// request with the rest of the input; the second byte picks the call.
    Client,
    /// A range answer's JSON (`{"header":..., "kvs": [...]}`) into the
    /// key schema and the cluster model.
    Kvs,
}

impl EtcdMode {
    pub fn of(b: u8) -> EtcdMode {
        match b % 3 {
            0 => EtcdMode::Http,
            1 => EtcdMode::Client,
            _ => EtcdMode::Kvs,
        }
    }

    pub fn byte(self) -> u8 {
        match self {
            EtcdMode::Http => 0,
            EtcdMode::Client => 1,
            EtcdMode::Kvs => 2,
        }
    }
}

/// Runs an etcd response (see [`EtcdMode`]). Asserted: the decoder's
/// outcome does not depend on how the bytes arrive; keys and values that
/// the schema accepts make a cluster view whose desired state the model's
/// `diff` reaches and leaves again, and whose per-network part is the
/// desired state of those networks.
pub fn etcd_response(data: &[u8]) {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    match EtcdMode::of(m) {
        EtcdMode::Http => http(rest),
        EtcdMode::Client => client(rest),
        EtcdMode::Kvs => kvs(rest),
    }
}

/// Limits small enough that a fuzzed input reaches them.
const LIMITS: Limits = Limits {
    max_head: 4 * 1024,
    max_body: 64 * 1024,
};

#[derive(Debug, PartialEq, Eq)]
enum Decoded {
    Response {
        status: u16,
        body: Vec<u8>,
        reusable: bool,
    },
    Error(DecodeError),
    TooLarge,
    Closed,
}

/// How a body is delimited (`http::decode::BodyDecoder`).
enum Body {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
}

/// What `Conn::request` makes of `pieces`, arriving one after another, the
/// peer closing after the last.
fn decode(pieces: &[&[u8]]) -> Decoded {
    let mut buf: Vec<u8> = Vec::new();
    let mut pos = 0;
    let mut next = pieces.iter();
    let head: Head = loop {
        match parse_head(&buf[pos..], LIMITS.max_head) {
            Err(e) => return Decoded::Error(e),
            Ok(Some((h, n))) => {
                pos += n;
                if (100..200).contains(&h.status) {
                    continue;
                }
                break h;
            }
            Ok(None) => match next.next() {
                Some(p) => buf.extend_from_slice(p),
                None => return Decoded::Closed,
            },
        }
    };
    let mut body = if head.chunked {
        Body::Chunked(ChunkedDecoder::new())
    } else if let Some(n) = head.content_length {
        Body::Length(n)
    } else if head.status == 204 || head.status == 304 {
        Body::Length(0)
    } else {
        Body::UntilClose
    };
    let mut out = Vec::new();
    loop {
        let input = &buf[pos..];
        let n = match &mut body {
            Body::Length(left) => {
                let take = usize::try_from(*left).map_or(input.len(), |l| l.min(input.len()));
                out.extend_from_slice(&input[..take]);
                *left -= take as u64;
                take
            }
            Body::Chunked(c) => match c.feed(input, &mut out) {
                Ok(n) => n,
                Err(e) => return Decoded::Error(e),
            },
            Body::UntilClose => {
                out.extend_from_slice(input);
                input.len()
            }
        };
        assert!(
            n <= input.len(),
            "a decoder consumed more than it was given"
        );
        pos += n;
        if out.len() > LIMITS.max_body {
            return Decoded::TooLarge;
        }
        let done = match &body {
            Body::Length(left) => *left == 0,
            Body::Chunked(c) => c.is_done(),
            Body::UntilClose => false,
        };
        if done {
            break;
        }
        match next.next() {
            Some(p) => buf.extend_from_slice(p),
            None if matches!(body, Body::UntilClose) => break,
            None => return Decoded::Closed,
        }
    }
    let until_close = matches!(body, Body::UntilClose);
    Decoded::Response {
        status: head.status,
        body: out,
        reusable: !head.close && !until_close,
    }
}

fn http(data: &[u8]) {
    let Some((&split, raw)) = data.split_first() else {
        return;
    };
    let at = raw.len() * usize::from(split) / 255;
    let whole = decode(&[raw]);
    let split = decode(&[&raw[..at], &raw[at..]]);
    assert_eq!(
        whole, split,
        "the outcome depends on where the input was split at {at}"
    );
    if raw.len() <= 512 {
        let bytes: Vec<&[u8]> = raw.chunks(1).collect();
        assert_eq!(decode(&bytes), whole, "the outcome differs byte by byte");
    }
}

/// A server on loopback that answers every request with `REPLY`.
struct FakeEtcd {
    addr: SocketAddr,
    reply: Arc<Mutex<Vec<u8>>>,
}

fn server() -> &'static FakeEtcd {
    static SERVER: OnceLock<FakeEtcd> = OnceLock::new();
    SERVER.get_or_init(|| {
        let l = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let addr = l.local_addr().expect("its address");
        let reply = Arc::new(Mutex::new(Vec::new()));
        let r = reply.clone();
        // One connection at a time, on one thread made once: the client
        // closes each before it opens the next (a kept-alive one it finds
        // closed, at the latest when it is dropped at the end of a run),
        // and no thread is left behind by a run (LeakSanitizer counts
        // one that is).
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                serve(s, &r);
            }
        });
        FakeEtcd { addr, reply }
    })
}

/// Reads one request (head and `Content-Length` body), answers it, closes.
fn serve(mut s: TcpStream, reply: &Mutex<Vec<u8>>) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut req = Vec::new();
    let mut chunk = [0u8; 4096];
    let body_end = loop {
        if let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&req[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            break end + 4 + len;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&chunk[..n]),
        }
    };
    while req.len() < body_end {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&chunk[..n]),
        }
    }
    let answer = reply.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let _ = s.write_all(&answer);
    let _ = s.shutdown(Shutdown::Write);
    // Until the client is done with the connection.
    while matches!(s.read(&mut chunk), Ok(n) if n > 0) {}
}

fn client(data: &[u8]) {
    let Some((&op, reply)) = data.split_first() else {
        return;
    };
    let srv = server();
    *srv.reply.lock().unwrap_or_else(|e| e.into_inner()) = reply.to_vec();
    let mut cfg = EtcdConfig::new(vec![Endpoint {
        host: "127.0.0.1".into(),
        port: srv.addr.port(),
        tls: false,
    }]);
    cfg.connect_timeout = Duration::from_secs(1);
    cfg.request_timeout = Duration::from_secs(2);
    cfg.limits = LIMITS;
    cfg.max_list_keys = 64;
    cfg.max_watch_line = 16 * 1024;
    let mut c = Client::new(cfg);
    let schema = Schema::default();
    let prefix = schema.prefix().as_bytes();
    match op % 10 {
        0 => {
            if let Ok(r) = c.range(prefix, Some(b"/vxswitch/v2"), 0, 0) {
                model(&r.kvs, r.revision);
            }
        }
        1 => {
            if let Ok((kvs, rev)) = c.list_prefix(prefix) {
                model(&kvs, rev);
            }
        }
        2 => {
            let _ = c.get(b"/vxswitch/v1/hosts/h1");
        }
        3 => {
            let _ = c.put(b"/vxswitch/v1/hosts/h1", b"{}", 7);
        }
        4 => {
            let _ = c.delete(prefix, Some(b"/vxswitch/v2"));
        }
        5 => {
            let key = b"/vxswitch/v1/networks/n1".to_vec();
            if let Ok(t) = c.txn(
                &[Compare::absent(key.clone())],
                &[TxnOp::put(key.clone(), b"{}".to_vec(), 0)],
                &[TxnOp::get(key)],
            ) {
                let _ = t.responses.len();
            }
        }
        6 => {
            let _ = c.lease_grant(Duration::from_secs(10));
        }
        7 => {
            let _ = c.lease_keepalive(7);
        }
        8 => {
            let _ = (c.lease_revoke(7), c.lease_time_to_live(7));
        }
        _ => watch(&mut c, &schema),
    }
}

fn watch(c: &mut Client, schema: &Schema) {
    let Ok(mut w) = c.watch(schema.prefix().as_bytes(), 1) else {
        return;
    };
    let mut view = ClusterView::from_list(schema, &[], 0);
    for _ in 0..64 {
        match w.next(Duration::from_millis(500)) {
            Ok(Some(WatchMessage::Events { events })) => {
                for ev in &events {
                    view.apply(schema, ev);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
        let _ = w.next_revision();
    }
    check_view(schema, &view);
}

#[derive(Deserialize)]
struct RangeBody {
    #[serde(default)]
    kvs: Vec<KeyValue>,
}

fn kvs(data: &[u8]) {
    if let Ok(r) = serde_json::from_slice::<RangeBody>(data) {
        model(&r.kvs, 1);
    }
}

/// Builds the cluster view of `kvs` as a list and, again, as watch events,
/// and checks it.
fn model(kvs: &[KeyValue], revision: i64) {
    let schema = Schema::default();
    for kv in kvs {
        if let Ok(key) = schema.parse_key(&kv.key) {
            if let Ok(v) = schema::parse_value(&key, &kv.value) {
                let _ = format!("{v:?}");
            }
        }
    }
    let view = ClusterView::from_list(&schema, kvs, revision);
    let mut events = ClusterView::from_list(&schema, &[], 0);
    for kv in kvs {
        events.apply(&schema, &WatchEvent::Put(kv.clone()));
    }
    assert_eq!(
        events, view,
        "a list and the same keys as watch events agree"
    );
    check_view(&schema, &view);
}

fn check_view(schema: &Schema, view: &ClusterView) {
    let me = HostId::new("h1").expect("a valid host id");
    let desired = view.desired(&me);
    let mut applied = State::default();
    for c in diff(&applied.clone(), &desired) {
        applied.apply(&c);
    }
    assert_eq!(
        applied, desired,
        "diff from nothing reaches the desired state"
    );
    for c in diff(&desired, &State::default()) {
        applied.apply(&c);
    }
    assert_eq!(applied, State::default(), "diff to nothing removes it all");
    for n in desired.networks.keys().take(4) {
        let one = std::iter::once(n.clone()).collect();
        assert_eq!(
            view.desired_in(&me, Some(&one)),
            desired.restricted(&one),
            "the desired state of network {n:?} alone"
        );
    }
    let _ = schema.prefix();
}

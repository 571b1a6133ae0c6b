//! The cluster control plane (placeholder doc, rewritten below).

pub mod etcd;
pub mod http;
pub mod model;
pub mod schema;

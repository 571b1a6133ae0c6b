//! An in-memory `Dataplane`: what the daemon would do, as plain data, for
//! tests of the agent (several agents in one process, no root, no TAPs).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use super::agent::{Dataplane, LocalEndpoint};
use super::model::{Change, State};

#[derive(Debug, Default)]
struct Inner {
    state: State,
    local: Vec<LocalEndpoint>,
    /// Changes touching these networks fail (a daemon refusing).
    failing: BTreeSet<String>,
    /// `local_endpoints` fails (a daemon that does not answer in time).
    local_fails: bool,
    applied: u64,
}

/// Shared handle: keep a clone to look inside while the agent owns another.
#[derive(Clone, Debug, Default)]
pub struct MemDataplane {
    inner: Arc<Mutex<Inner>>,
}

impl MemDataplane {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts from a state already applied (a restarted daemon).
    pub fn with_state(state: State) -> Self {
        let dp = Self::default();
        dp.lock().state = state;
        dp
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What has been applied.
    pub fn state(&self) -> State {
        self.lock().state.clone()
    }

    /// Changes applied so far.
    pub fn applied_count(&self) -> u64 {
        self.lock().applied
    }

    /// Sets this host's endpoints (call `Agent::local_endpoints_changed`).
    pub fn set_local(&self, eps: Vec<LocalEndpoint>) {
        self.lock().local = eps;
    }

    /// Blocks every call of the agent into this dataplane until the guard
    /// is dropped (a daemon too busy to answer). Do not call the other
    /// methods while holding it.
    pub fn pause(&self) -> impl Drop + '_ {
        self.lock()
    }

    /// Makes `local_endpoints` fail (or answer again).
    pub fn fail_local(&self, fail: bool) {
        self.lock().local_fails = fail;
    }

    /// Makes changes to `network` fail (or succeed again).
    pub fn fail_network(&self, network: &str, fail: bool) {
        let mut g = self.lock();
        if fail {
            g.failing.insert(network.to_string());
        } else {
            g.failing.remove(network);
        }
    }
}

impl Dataplane for MemDataplane {
    fn apply(&mut self, change: &Change) -> Result<(), String> {
        let mut g = self.lock();
        if g.failing.contains(change.network()) {
            return Err(format!("network {} refuses changes", change.network()));
        }
        g.state.apply(change);
        g.applied += 1;
        Ok(())
    }

    fn applied(&mut self) -> Result<State, String> {
        Ok(self.lock().state.clone())
    }

    fn local_endpoints(&mut self) -> Result<Vec<LocalEndpoint>, String> {
        // As a daemon: ports exist only on networks it has.
        let g = self.lock();
        if g.local_fails {
            return Err("the daemon did not answer".into());
        }
        Ok(g.local
            .iter()
            .filter(|e| g.state.networks.contains_key(&e.network))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::schema::NetworkRecord;

    #[test]
    fn refuses_and_filters() {
        let mut dp = MemDataplane::new();
        let add = Change::AddNetwork {
            name: "blue".into(),
            spec: NetworkRecord {
                vni: 1,
                subnets: vec![],
                mtu: None,
            },
        };
        dp.fail_network("blue", true);
        assert!(dp.apply(&add).is_err());
        dp.fail_network("blue", false);
        dp.apply(&add).unwrap();
        let ep = |n: &str| LocalEndpoint {
            network: n.into(),
            mac: crate::wire::MacAddr([2, 0, 0, 0, 0, 1]),
            ips: vec![],
        };
        dp.set_local(vec![ep("blue"), ep("red")]);
        assert_eq!(dp.local_endpoints(), Ok(vec![ep("blue")]));
        assert_eq!(dp.applied_count(), 1);
    }
}

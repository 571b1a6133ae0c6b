//! `mirror.*`: port mirroring (SPAN). The dataplane reads the mirrors
//! from `observe::mirror`'s table; this keeps them by name, and takes a
//! mirror out as soon as either of its ports goes (a port's counters'
//! address, the table's key, may be reused by the next port).

use super::daemon::Daemon;
use super::proto::{CtlError, MirrorAdd, MirrorRm, MirrorRow};
use crate::observe::mirror;

impl Daemon {
    /// `mirror.add`.
    pub(super) fn mirror_add(&mut self, a: &MirrorAdd) -> Result<MirrorRow, CtlError> {
        let dirs = match a.direction.as_deref() {
            None | Some("both") => 3,
            Some("in") => 1,
            Some("out") => 2,
            Some(other) => {
                return Err(CtlError::invalid(format!(
                    "direction {other:?}: use in (what the port sends into the switch), out \
                     (what the switch sends it) or both"
                )))
            }
        };
        if a.port == a.to {
            return Err(CtlError::invalid(format!(
                "a port cannot mirror to itself ({}); give another port with --to",
                a.port
            )));
        }
        let src = self.port(&a.port)?.stats.clone();
        let dst = self.port(&a.to)?;
        let (dst_id, dst_stats) = (dst.id.0, dst.stats.clone());
        if !mirror::set(&src, dst_id, &dst_stats, dirs) {
            return Err(CtlError::busy(format!(
                "{} ports are mirrored already; remove one with `vxswitch port mirror rm`",
                mirror::MAX_MIRRORS
            )));
        }
        let row = MirrorRow {
            port: a.port.clone(),
            to: a.to.clone(),
            direction: match dirs {
                1 => "in",
                2 => "out",
                _ => "both",
            }
            .into(),
        };
        self.mirrors.insert(
            a.port.clone(),
            (row.clone(), crate::observe::capture::key(&src)),
        );
        // A mirrored port's frames must all pass the switch.
        self.fastpath_sync_ports();
        Ok(row)
    }

    /// `mirror.rm`.
    pub(super) fn mirror_rm(&mut self, a: &MirrorRm) -> Result<MirrorRow, CtlError> {
        let Some((row, key)) = self.mirrors.remove(&a.port) else {
            return Err(CtlError::not_found(format!(
                "port {:?} is not mirrored; `vxswitch port mirror ls` lists the mirrors",
                a.port
            )));
        };
        mirror::remove_key(key);
        self.fastpath_sync_ports();
        Ok(row)
    }

    /// `mirror.ls`.
    pub(super) fn mirror_ls(&self) -> Vec<MirrorRow> {
        self.mirrors.values().map(|(r, _)| r.clone()).collect()
    }

    /// Takes out the mirrors whose port or monitoring port is gone; call
    /// after anything that may remove a port.
    pub(super) fn mirror_prune(&mut self) {
        if self.mirrors.is_empty() {
            return;
        }
        let stale: Vec<String> = self
            .mirrors
            .values()
            .filter(|(m, _)| !self.ports.contains_key(&m.port) || !self.ports.contains_key(&m.to))
            .map(|(m, _)| m.port.clone())
            .collect();
        for name in stale {
            // The mirrored port may be gone with its counters: the table
            // is cleared by the address it was set with.
            if let Some((_, key)) = self.mirrors.remove(&name) {
                mirror::remove_key(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::ctl::proto::{parse_request, Reply};
    use crate::ctl::testutil::{daemon, fd_port, net};
    use crate::observe::mirror::target;
    use crate::observe::pcapng::Dir;

    #[test]
    fn a_mirror_goes_with_its_port() {
        let mut d = daemon();
        net(&mut d, "red", None, None);
        let _a = fd_port(&mut d, "a", "red");
        let _m = fd_port(&mut d, "m", "red");
        let add = br#"{"cmd":"mirror.add","args":{"port":"a","to":"m","direction":"in"}}"#;
        assert!(matches!(
            d.handle(parse_request(add).unwrap()),
            Ok(Reply::Mirror(_))
        ));
        let stats = d.ports["a"].stats.clone();
        assert!(target(&stats, Dir::In).is_some());
        assert!(target(&stats, Dir::Out).is_none());
        let self_mirror = br#"{"cmd":"mirror.add","args":{"port":"a","to":"a"}}"#;
        assert!(d.handle(parse_request(self_mirror).unwrap()).is_err());
        d.handle(parse_request(br#"{"cmd":"port.rm","args":{"name":"m"}}"#).unwrap())
            .unwrap();
        assert!(d.mirror_ls().is_empty(), "pruned with its monitoring port");
        assert!(target(&stats, Dir::In).is_none());
        d.shutdown();
    }
}

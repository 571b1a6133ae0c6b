//! `vxswitch daemon`: the settings merged, the socket claimed, the state
//! directory restored and the config file applied, in that order, before
//! the server answers anyone; then the pidfile written and the service
//! manager told (see [`super::notify`]), and the server runs until a
//! signal. With `--detach`, [`super::detach`] runs all this in a child.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use vxswitch::ctl::{Config, Server, ServerOptions};

use super::args::DaemonArgs;
use super::notify::Notifier;
use super::{detach, settings};

/// Runs the daemon: in the foreground until SIGINT or SIGTERM, or with
/// `--detach` in the background once it answers.
pub fn run(socket: &Path, a: DaemonArgs) -> Result<(), String> {
    if a.detach {
        return detach::run(socket, &a);
    }
    // Checked before anything is claimed: a daemon systemd cannot hear
    // from would be killed at the start timeout.
    let notifier = Notifier::from_env()?.map(std::sync::Arc::new);
    let config = match &a.config {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    let settings = settings::merge(&a, &config, a.config.as_deref())?;
    if let Some(prefix) = &a.veth_prefix {
        vxswitch::ports::veth::check_prefix(prefix).map_err(|e| format!("--veth-prefix: {e}"))?;
    }
    // Silent when it works: only a limit that stays low is worth a line.
    if let Err(e) = vxswitch::ctl::server::raise_open_file_limit() {
        eprintln!(
            "vxswitch: warning: cannot raise the open-file limit to its hard limit: {e}; with \
             many ports the daemon may run out of file descriptors (raise LimitNOFILE= / \
             ulimit -n)"
        );
    }
    let mut opts = ServerOptions::new(socket);
    opts.engine = settings.engine;
    opts.handle_signals = true;
    if let Some(n) = &notifier {
        // Told on the server's thread as the shutdown starts, before the
        // process can exit.
        let n = n.clone();
        opts.on_stop = Some(std::sync::Arc::new(move || n.tell("STOPPING=1")));
    }
    let mut server = Server::bind(opts).map_err(|e| e.to_string())?;
    // Before any port exists (the restore below adds some).
    let pins = match &a.fastpath_pins {
        Some(dir) => dir.clone(),
        None => vxswitch::ctl::fastpath::pin_dir_for(socket),
    };
    if let Some(line) = server.daemon_mut().start_fastpath(settings.fastpath, &pins) {
        eprintln!("{line}");
    }
    server.daemon_mut().set_default_backend(settings.backend);
    if let Some(prefix) = &settings.veth_prefix {
        server.daemon_mut().set_veth_prefix(prefix)?;
    }
    let mut restored = false;
    if let Some(dir) = &settings.state_dir {
        // Before the socket serves anyone; a corrupt file stops the start.
        let report = server
            .daemon_mut()
            .open_state_dir(dir)
            .map_err(|e| e.to_string())?;
        if let Some(dir) = &report.restored_from {
            restored = true;
            eprintln!(
                "vxswitch: restored {} network{} and {} port{} from {}{}",
                report.networks,
                if report.networks == 1 { "" } else { "s" },
                report.ports,
                if report.ports == 1 { "" } else { "s" },
                dir.join(vxswitch::ctl::persist::STATE_FILE).display(),
                match (report.dropped.len(), report.pending.len()) {
                    (0, 0) => String::new(),
                    (d, 0) => format!(" ({d} dropped, see above)"),
                    (0, p) => format!(" ({p} pending, retried, see above)"),
                    (d, p) => format!(" ({d} dropped, {p} pending and retried, see above)"),
                }
            );
        }
    }
    // The fast path's maps from before the restart, taken over.
    server.daemon_mut().fastpath_after_restore();
    match settings.cluster {
        // After the restore (the agent starts from what it put back), before
        // the server answers: the agent's calls wait for it.
        Some(cluster) => {
            let caller = server.caller();
            server
                .daemon_mut()
                .start_cluster(cluster, caller)
                .map_err(|e| format!("cannot start the cluster agent: {e}"))?;
        }
        None => {
            let frozen: Vec<String> = server
                .daemon_mut()
                .network_ls()
                .into_iter()
                .filter(|n| n.scope == vxswitch::ctl::proto::NetworkScope::Cluster)
                .map(|n| n.name)
                .collect();
            if !frozen.is_empty() {
                eprintln!(
                    "vxswitch: warning: cluster network(s) {} restored, but this daemon runs \
                     without --cluster: their VTEPs and remote entries stay as last known",
                    frozen.join(", ")
                );
            }
        }
    }
    // Where the CNI plugin looks when no daemon answers: while a state
    // directory may bring ports back, deleting one must leave a tombstone
    // there (docs/cni.md, "Restarts").
    if let Err(e) =
        vxswitch::ctl::persist::set_state_dir_pointer(socket, settings.state_dir.as_deref())
    {
        eprintln!(
            "vxswitch: warning: cannot write {}: {e}; CNI DEL while this daemon is down would \
             not know about its state directory",
            vxswitch::ctl::persist::state_dir_pointer(socket).display()
        );
    }
    if let Some(path) = &a.config {
        // On error the server is dropped: what was created is removed again.
        let applied = config.apply_after_restore(server.daemon_mut(), path, restored);
        // Persistent TAPs the config made before an error must be on record.
        server.daemon_mut().save_state();
        applied.map_err(|e| e.to_string())?;
    }
    // Before the pidfile: a port someone else holds fails the start.
    let metrics = match a.metrics {
        Some(addr) => Some(
            vxswitch::ctl::metrics::serve(addr, server.caller()).map_err(|e| {
                format!("cannot serve metrics on {addr}: {e} (choose another --metrics ADDR:PORT)")
            })?,
        ),
        None => None,
    };
    // The socket answers from here on: clients that connect now wait in
    // its backlog until `run` serves them.
    let pidfile = match &a.pidfile {
        Some(path) => Some(Pidfile::write(path)?),
        None => None,
    };
    if let Some(n) = &notifier {
        n.tell("READY=1");
    }
    eprintln!(
        "vxswitch: daemon {} listening on {}",
        env!("CARGO_PKG_VERSION"),
        socket.display()
    );
    if let Some(m) = &metrics {
        eprintln!("vxswitch: metrics at http://{}/metrics", m.local_addr());
    }
    let served = server.run().map_err(|e| e.to_string());
    // A scrape after the server stopped gets 503; then the endpoint goes.
    drop(metrics);
    // Gone once the daemon is: waiting for it to vanish waits for the stop.
    drop(pidfile);
    served?;
    eprintln!("vxswitch: stopped");
    Ok(())
}

/// The daemon's PID in a file while it runs (`--pidfile`), removed when it
/// stops if the file still names this process.
struct Pidfile {
    path: PathBuf,
    pid: u32,
}

impl Pidfile {
    /// Writes the file whole: a reader sees the old file or the new one.
    fn write(path: &Path) -> Result<Pidfile, String> {
        let pid = std::process::id();
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)
            .and_then(|mut f| f.write_all(format!("{pid}\n").as_bytes()))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("cannot write the pidfile {}: {e}", path.display()));
        }
        Ok(Pidfile {
            path: path.to_path_buf(),
            pid,
        })
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path)
            .is_ok_and(|s| s.trim().parse::<u32>() == Ok(self.pid));
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

//! `vxswitch daemon`: the settings merged, the socket claimed, the state
//! directory restored and the config file applied, in that order, before
//! the server answers anyone; then the server runs until a signal.

use std::path::Path;

use vxswitch::ctl::{Config, Server, ServerOptions};

use super::args::DaemonArgs;
use super::settings;

/// Runs the daemon in the foreground until SIGINT or SIGTERM.
pub fn run(socket: &Path, a: DaemonArgs) -> Result<(), String> {
    let config = match &a.config {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    let settings = settings::merge(&a, &config, a.config.as_deref())?;
    let mut opts = ServerOptions::new(socket);
    opts.engine = settings.engine;
    opts.handle_signals = true;
    let mut server = Server::bind(opts).map_err(|e| e.to_string())?;
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
                match report.dropped.len() {
                    0 => String::new(),
                    n => format!(" ({n} dropped, see above)"),
                }
            );
        }
    }
    if let Some(path) = &a.config {
        // On error the server is dropped: what was created is removed again.
        let applied = config.apply_after_restore(server.daemon_mut(), path, restored);
        // Persistent TAPs the config made before an error must be on record.
        server.daemon_mut().save_state();
        applied.map_err(|e| e.to_string())?;
    }
    eprintln!(
        "vxswitch: daemon {} listening on {}",
        env!("CARGO_PKG_VERSION"),
        socket.display()
    );
    server.run().map_err(|e| e.to_string())?;
    eprintln!("vxswitch: stopped");
    Ok(())
}

//! The `vxswitch` binary: `vxswitch daemon` runs the switch; every other
//! subcommand sends one request to the daemon's control socket and prints
//! the result (a table, or the raw JSON result with `--json`). The command
//! line itself lives in [`cli`]; started as `vxswitch-cni` (or `vxswitch
//! cni`) the binary is the CNI plugin instead (docs/cni.md).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // As `vxswitch-cni` (a symlink in the CNI plugin directory) or
    // `vxswitch cni`: the CNI plugin, driven by CNI_* variables (docs/cni.md).
    let mut argv = std::env::args_os();
    if vxswitch::cni::invoked_as_plugin(&argv.next().unwrap_or_default(), argv.next().as_deref()) {
        return ExitCode::from(vxswitch::cni::main());
    }
    cli::main(cli::args::Cli::parse())
}

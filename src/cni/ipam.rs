//! Delegation to an IPAM plugin (host-local, dhcp, static, ...): found by
//! its `type` in `CNI_PATH`, exec'd with the caller's environment (only
//! `CNI_COMMAND` differs, for DEL after a failed ADD) and the same network
//! configuration on stdin, as the CNI spec's "IP Allocation" section asks.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::{code, CniError};

/// The IPAM plugin `kind` in the directories of `CNI_PATH`.
fn find(kind: &str, env: &HashMap<String, String>) -> Result<PathBuf, CniError> {
    let path = env.get("CNI_PATH").map(String::as_str).unwrap_or("");
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join(kind))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::new(
                code::INVALID_CONFIG,
                format!(
                    "IPAM plugin {kind:?} not found in CNI_PATH ({}); install it (Debian: \
                     containernetworking-plugins, in /usr/lib/cni) or fix \"ipam\".\"type\"",
                    if path.is_empty() { "empty" } else { path }
                ),
            )
        })
}

/// Runs IPAM `command`; its JSON output (`None` when it printed nothing,
/// as DEL does), or its error object with the plugin named in the message.
pub fn exec(
    kind: &str,
    command: &str,
    env: &HashMap<String, String>,
    input: &[u8],
) -> Result<Option<Value>, CniError> {
    let plugin = find(kind, env)?;
    let mut child = Command::new(&plugin)
        .env_clear()
        .envs(env)
        .env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            CniError::new(
                code::IO_FAILURE,
                format!("cannot run IPAM plugin {}: {e}", plugin.display()),
            )
        })?;
    // A writer thread: a plugin that answers before reading all of stdin
    // must not deadlock us on a full pipe.
    let writer = child.stdin.take().map(|mut stdin| {
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        })
    });
    let out = child.wait_with_output().map_err(|e| {
        CniError::new(
            code::IO_FAILURE,
            format!("waiting for IPAM plugin {}: {e}", plugin.display()),
        )
    })?;
    if let Some(w) = writer {
        let _ = w.join();
    }
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.success() {
        if text.trim().is_empty() {
            return Ok(None);
        }
        return serde_json::from_str(&text).map(Some).map_err(|e| {
            CniError::new(
                code::DECODE_FAILURE,
                format!("IPAM plugin {kind} {command} printed no JSON result: {e}"),
            )
        });
    }
    let parsed: Option<Value> = serde_json::from_str(&text).ok();
    match parsed
        .as_ref()
        .and_then(|v| Some((v, v.get("code")?.as_u64()?)))
    {
        Some((v, c)) => {
            let msg = v.get("msg").and_then(Value::as_str).unwrap_or("");
            let details = v.get("details").and_then(Value::as_str).unwrap_or("");
            Err(CniError::new(
                u32::try_from(c).unwrap_or(code::IO_FAILURE),
                format!("IPAM plugin {kind} {command}: {msg}"),
            )
            .with_details(details))
        }
        None => Err(CniError::new(
            code::IO_FAILURE,
            format!(
                "IPAM plugin {kind} {command} failed ({}) without a CNI error: {}",
                out.status,
                text.trim()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_plugin_names_the_search_path() {
        let env: HashMap<String, String> = [(
            "CNI_PATH".to_string(),
            "/nonexistent-a:/nonexistent-b".to_string(),
        )]
        .into();
        let e = exec("host-local", "ADD", &env, b"{}").unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(
            e.msg
                .contains("\"host-local\" not found in CNI_PATH (/nonexistent-a:/nonexistent-b)"),
            "{}",
            e.msg
        );
    }
}

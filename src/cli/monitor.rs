//! `vxswitch monitor`: the daemon's events as they happen (like `bridge
//! monitor fdb` and `ip monitor`), one line each, or one JSON object each
//! with `--json`, until interrupted or the daemon stops.

use std::io::Write;
use std::path::Path;

use vxswitch::ctl::proto::{MonitorEvent, MonitorStarted, NoArgs};
use vxswitch::ctl::{Client, ClientError, Request};

pub fn run(socket: &Path, json: bool) -> Result<(), String> {
    let mut client = Client::connect(socket).map_err(|e| e.to_string())?;
    let _: MonitorStarted = client
        .call_as(&Request::Monitor(NoArgs {}))
        .map_err(|e| e.to_string())?;
    let mut stdout = std::io::stdout().lock();
    if !json {
        // Once subscribed: a script can wait for this line before it
        // changes anything.
        let _ = writeln!(
            stdout,
            "# vxswitch monitor: events of the daemon at {}",
            socket.display()
        )
        .and_then(|()| stdout.flush());
    }
    loop {
        let ev = match client.next_event() {
            Ok(ev) => ev,
            Err(ClientError::Closed { .. }) => {
                return Err("the daemon closed the connection (it stopped)".into())
            }
            Err(e) => return Err(e.to_string()),
        };
        let line = if json {
            serde_json::to_string(&ev).map_err(|e| e.to_string())? + "\n"
        } else {
            line(&ev)
        };
        // Flushed per event: a pipe into grep or a file sees each at once.
        if stdout
            .write_all(line.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            // The reader went away (`| head`): done.
            return Ok(());
        }
    }
}

/// `HH:MM:SS.mmm KIND key=value...` (UTC), e.g.
/// `14:02:07.311 mac_learned network=red mac=02:00:00:00:00:01 port=c1`.
pub fn line(ev: &MonitorEvent) -> String {
    let ms = ev.ts_ms % 86_400_000;
    let mut s = format!(
        "{:02}:{:02}:{:02}.{:03} {}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000,
        ev.kind
    );
    let mac = ev.mac.map(|m| m.to_string());
    let count = ev.count.map(|c| c.to_string());
    for (k, v) in [
        ("network", ev.network.as_deref()),
        ("mac", mac.as_deref()),
        ("port", ev.port.as_deref()),
        ("vtep", ev.vtep.as_deref()),
        ("from", ev.from.as_deref()),
        ("what", ev.what.as_deref()),
        ("count", count.as_deref()),
    ] {
        if let Some(v) = v {
            s.push_str(&format!(" {k}={v}"));
        }
    }
    if let Some(c) = &ev.cause {
        // Last: a gone port's cause is a sentence.
        s.push_str(&format!(" cause=\"{c}\""));
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_one_line_of_key_values() {
        let ev = MonitorEvent {
            ts_ms: 1_765_029_727_311,
            kind: "mac_moved".into(),
            network: Some("red".into()),
            mac: Some("02:00:00:00:00:01".parse().unwrap()),
            port: Some("c2".into()),
            from: Some("c1".into()),
            ..MonitorEvent::default()
        };
        assert_eq!(
            line(&ev),
            "14:02:07.311 mac_moved network=red mac=02:00:00:00:00:01 port=c2 from=c1\n"
        );
        let gone = MonitorEvent {
            ts_ms: 0,
            kind: "port_gone".into(),
            port: Some("c1".into()),
            cause: Some("its namespace is gone".into()),
            ..MonitorEvent::default()
        };
        assert_eq!(
            line(&gone),
            "00:00:00.000 port_gone port=c1 cause=\"its namespace is gone\"\n"
        );
    }
}

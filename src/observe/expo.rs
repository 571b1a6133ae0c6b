//! The Prometheus text exposition format, version 0.0.4: what
//! `GET /metrics` returns.
//!
//! [`Exposition`] writes one metric family at a time: its `# HELP` and
//! `# TYPE` lines, then its samples, so samples of a family are never
//! interleaved with another's (the format requires them together). Label
//! values are escaped as the format says (`\\`, `\"`, `\n`); names are
//! `&'static str` chosen in code, checked in debug builds.
//!
//! Counters end in `_total` and carry base units (`_bytes`, `_seconds`), as
//! `promtool check metrics` asks.

use std::fmt::Write;

/// A family's type, as the `# TYPE` line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A page of the text format being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
    family: Option<&'static str>,
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the family `name`; the samples that follow belong to it.
    pub fn family(&mut self, name: &'static str, kind: Kind, help: &str) -> &mut Self {
        debug_assert!(valid_name(name), "bad metric name {name:?}");
        debug_assert!(
            kind != Kind::Counter || name.ends_with("_total"),
            "counter {name} must end in _total"
        );
        self.family = Some(name);
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.name());
        self
    }

    /// One sample of the current family.
    pub fn sample(&mut self, labels: &[(&'static str, &str)], value: impl Into<f64>) -> &mut Self {
        let Some(name) = self.family else {
            debug_assert!(false, "sample before family");
            return self;
        };
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                debug_assert!(valid_name(k), "bad label name {k:?}");
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_value(&mut self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let v: f64 = value.into();
        if v.fract() == 0.0 && v.abs() < 1e15 {
            let _ = writeln!(self.out, " {}", v as i64);
        } else {
            let _ = writeln!(self.out, " {v}");
        }
        self
    }

    /// A counter's sample from a `u64` (exact below 2^53, which counters
    /// of frames and bytes stay under for centuries).
    pub fn count(&mut self, labels: &[(&'static str, &str)], value: u64) -> &mut Self {
        self.sample(labels, value as f64)
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn escape_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(h: &str) -> String {
    h.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escaping() {
        let mut e = Exposition::new();
        e.family(
            "vxswitch_port_rx_frames_total",
            Kind::Counter,
            "Frames received.",
        )
        .count(&[("port", "c1"), ("network", "red")], 42);
        e.family("vxswitch_fdb_entries", Kind::Gauge, "Entries\nnow.")
            .sample(&[("network", "a\"b\\c\nd")], 3u32)
            .sample(&[], 0.5);
        assert_eq!(
            e.finish(),
            "# HELP vxswitch_port_rx_frames_total Frames received.\n\
             # TYPE vxswitch_port_rx_frames_total counter\n\
             vxswitch_port_rx_frames_total{port=\"c1\",network=\"red\"} 42\n\
             # HELP vxswitch_fdb_entries Entries\\nnow.\n\
             # TYPE vxswitch_fdb_entries gauge\n\
             vxswitch_fdb_entries{network=\"a\\\"b\\\\c\\nd\"} 3\n\
             vxswitch_fdb_entries 0.5\n"
        );
    }

    #[test]
    fn names() {
        assert!(valid_name("vxswitch_up"));
        assert!(valid_name("a:b_c9"));
        assert!(!valid_name("9a"));
        assert!(!valid_name(""));
        assert!(!valid_name("a-b"));
    }
}

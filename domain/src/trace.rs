//! W3C Trace Context (`traceparent`): billing may send one with its
//! request; each event carries it (or, without one, a trace of its own) to
//! every handler call, as a child span per call, into the execution log and
//! the function logs. <https://www.w3.org/TR/trace-context/>

use std::fmt;

use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A `traceparent`: trace id, parent (span) id, flags. Version 00 is
/// written; a later version is read by its first four fields, as the
/// specification asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

fn hex_into(s: &str, out: &mut [u8]) -> Option<()> {
    if s.len() != out.len() * 2 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    hex::decode_to_slice(s, out).ok()
}

impl TraceParent {
    /// Reads a `traceparent` header; `None` when it is not a valid one (then
    /// a new trace is started, as the specification asks).
    pub fn parse(header: &str) -> Option<TraceParent> {
        let h = header.trim();
        if !h.is_ascii() {
            return None;
        }
        let version = h.get(0..2)?;
        let mut v = [0u8; 1];
        hex_into(version, &mut v)?;
        if v[0] == 0xff || h.len() < 55 || (v[0] == 0 && h.len() != 55) {
            return None;
        }
        if h.len() > 55 && h.as_bytes()[55] != b'-' {
            return None;
        }
        let parts: Vec<&str> = h[..55].split('-').collect();
        let [_, trace, parent, flags] = parts.as_slice() else {
            return None;
        };
        let mut t = TraceParent {
            trace_id: [0; 16],
            parent_id: [0; 8],
            flags: 0,
        };
        hex_into(trace, &mut t.trace_id)?;
        hex_into(parent, &mut t.parent_id)?;
        let mut f = [0u8; 1];
        hex_into(flags, &mut f)?;
        t.flags = f[0];
        if t.trace_id == [0; 16] || t.parent_id == [0; 8] {
            return None;
        }
        Some(t)
    }

    /// A new trace (sampled).
    pub fn new_root() -> TraceParent {
        let mut rng = rand::rng();
        let mut t = TraceParent {
            trace_id: [0; 16],
            parent_id: [0; 8],
            flags: 0x01,
        };
        while t.trace_id == [0; 16] {
            rng.fill_bytes(&mut t.trace_id);
        }
        t.parent_id = new_span_id();
        t
    }

    /// A span of the same trace under this one: what a call sends.
    pub fn child(&self) -> TraceParent {
        TraceParent {
            parent_id: new_span_id(),
            ..*self
        }
    }

    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }
}

fn new_span_id() -> [u8; 8] {
    let mut id = [0u8; 8];
    while id == [0; 8] {
        rand::rng().fill_bytes(&mut id);
    }
    id
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.parent_id),
            self.flags
        )
    }
}

impl Serialize for TraceParent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TraceParent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TraceParent::parse(&s).ok_or_else(|| serde::de::Error::custom("not a traceparent"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_reads_back_as_it_was_written() {
        let t = TraceParent::parse(EXAMPLE).unwrap();
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.flags, 1);
        assert_eq!(t.to_string(), EXAMPLE);
        // A later version: its first four fields, the rest ignored.
        let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next";
        assert_eq!(TraceParent::parse(future).unwrap().to_string(), EXAMPLE);
    }

    #[test]
    fn invalid_headers_are_refused() {
        for bad in [
            "",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "é0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_child_keeps_the_trace_and_takes_a_new_span() {
        let t = TraceParent::parse(EXAMPLE).unwrap();
        let c = t.child();
        assert_eq!((c.trace_id, c.flags), (t.trace_id, t.flags));
        assert_ne!(c.parent_id, t.parent_id);
        let r = TraceParent::new_root();
        assert_ne!(r.trace_id, t.trace_id);
        assert_eq!(TraceParent::parse(&r.to_string()), Some(r));
    }
}

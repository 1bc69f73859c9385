//! An entity's fields: what billing sends as an event's `data`, and what
//! handlers read and may change.

use serde_json::{Map, Value};

/// The fields of an entity, as billing sent them or as handlers left them.
pub type Data = Map<String, Value>;

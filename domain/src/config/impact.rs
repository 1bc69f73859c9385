//! What a change would have done to recorded traffic: `hooks plan --impact`.
//!
//! For each handler the plan changes, the recorded events of the period are
//! put through the live config and through the proposed one, without calling
//! anything: would the handler have been called for the event (its phase's
//! chain, its status, its events, its `when` condition), and at which place
//! in the chain. Conditions are evaluated on the data as billing sent it:
//! what handlers before it would have returned is not known without calling
//! them (a condition on a field a handler adds counts as it evaluates on the
//! sent data, and says so).

use std::collections::BTreeMap;

use serde::Serialize;

use super::model::{Config, Handler, HandlerId, Phase};
use crate::data::Data;
use crate::events::Event;

/// One recorded event, as the impact needs it.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    pub event: Event,
    /// `before` for a decision, `after` for an event: only that phase's
    /// handlers ran for it.
    pub phase: Phase,
    pub data: &'a Data,
}

/// What one handler's change does to the period's events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HandlerImpact {
    pub id: HandlerId,
    pub name: String,
    /// Events it would have been called for, live and proposed.
    pub live: u64,
    pub proposed: u64,
    /// Called under the proposed config only.
    pub new: u64,
    /// Called under the live config only.
    pub lost: u64,
    /// Called under both, at another place in its chain.
    pub reordered: u64,
    /// Per event type: (proposed − live) where it differs.
    pub moved: BTreeMap<String, i64>,
    /// Events whose condition could not be evaluated on the sent data
    /// (proposed config): counted as not called.
    pub unevaluable: u64,
}

/// The impact of a change on a period of traffic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Impact {
    /// Events looked at.
    pub events: u64,
    pub handlers: Vec<HandlerImpact>,
}

/// The handler's place (0-based) in the chain of `event` if it would be
/// called, and whether its condition failed to evaluate.
fn place(config: &Config, id: HandlerId, r: &Recorded<'_>) -> (Option<usize>, bool) {
    let Some(handler) = config.handler(id).filter(|h| h.phase == r.phase) else {
        return (None, false);
    };
    let chain: Vec<&Handler> = config.chain_for(r.event, handler.phase);
    let Some(at) = chain.iter().position(|h| h.id == id) else {
        return (None, false);
    };
    match handler.when.as_ref().map(|w| w.eval(r.event, r.data)) {
        None | Some(Ok(true)) => {
            // Its place among the handlers that would run before it.
            let before = chain[..at]
                .iter()
                .filter(|h| {
                    h.when
                        .as_ref()
                        .is_none_or(|w| w.eval(r.event, r.data).unwrap_or(false))
                })
                .count();
            (Some(before), false)
        }
        Some(Ok(false)) => (None, false),
        Some(Err(_)) => (None, true),
    }
}

/// The impact of going from `live` (nothing, before the first sync) to
/// `proposed` on `events`, for the handlers `changed`.
pub fn impact(
    live: Option<&Config>,
    proposed: &Config,
    changed: &[(HandlerId, String)],
    events: &[Recorded<'_>],
) -> Impact {
    let mut out = Impact {
        events: events.len() as u64,
        handlers: Vec::new(),
    };
    for (id, name) in changed {
        let mut h = HandlerImpact {
            id: *id,
            name: name.clone(),
            ..Default::default()
        };
        for r in events {
            let (before, _) = live.map_or((None, false), |c| place(c, *id, r));
            let (after, bad) = place(proposed, *id, r);
            h.unevaluable += u64::from(bad);
            h.live += u64::from(before.is_some());
            h.proposed += u64::from(after.is_some());
            match (before, after) {
                (None, Some(_)) => h.new += 1,
                (Some(_), None) => h.lost += 1,
                (Some(a), Some(b)) if a != b => h.reordered += 1,
                _ => {}
            }
            let delta = i64::from(after.is_some()) - i64::from(before.is_some());
            if delta != 0 {
                *h.moved.entry(r.event.as_str().to_owned()).or_default() += delta;
            }
        }
        h.moved.retain(|_, d| *d != 0);
        out.handlers.push(h);
    }
    out
}

impl Impact {
    /// Lines for the plan's text, one per handler.
    pub fn render_text(&self, period: &str) -> String {
        let mut s = format!(
            "Impact on the {} events recorded {period} (no handler called; conditions on the data as sent):\n",
            self.events
        );
        for h in &self.handlers {
            s.push_str(&format!(
                "  {} {:?}: called for {} events (live: {}); +{} new, -{} lost, {} reordered{}{}\n",
                h.id,
                h.name,
                h.proposed,
                h.live,
                h.new,
                h.lost,
                h.reordered,
                moved(&h.moved),
                if h.unevaluable > 0 {
                    format!("; `when` could not be evaluated for {}", h.unevaluable)
                } else {
                    String::new()
                }
            ));
        }
        s
    }

    /// A Markdown table for the pull-request comment.
    pub fn render_markdown(&self, period: &str) -> String {
        let mut s = format!(
            "\n**Impact** on the {} events recorded {period} (no handler called; conditions evaluated on the data as sent):\n\n| id | handler | live | proposed | new | lost | reordered | event types that move |\n|---|---|---|---|---|---|---|---|\n",
            self.events
        );
        for h in &self.handlers {
            s.push_str(&format!(
                "| {} | {} | {} | {} | +{} | -{} | {} | {} |\n",
                h.id,
                h.name.replace('|', "\\|"),
                h.live,
                h.proposed,
                h.new,
                h.lost,
                h.reordered,
                moved(&h.moved).trim_start_matches("; ")
            ));
        }
        s
    }
}

fn moved(m: &BTreeMap<String, i64>) -> String {
    if m.is_empty() {
        return String::new();
    }
    let list: Vec<String> = m.iter().map(|(e, d)| format!("{e} {d:+}")).collect();
    format!("; {}", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ParseOptions;
    use serde_json::json;

    fn cfg(handlers: &str) -> Config {
        Config::parse(
            "t.toml",
            &format!("version = 1\n{handlers}"),
            &ParseOptions::default(),
        )
        .expect("valid")
    }

    fn h(id: u32, event: &str, priority: u32, extra: &str) -> String {
        format!(
            "[[handler]]\nid = {id}\nname = \"h{id}\"\nevent = \"{event}\"\npriority = {priority}\n{extra}\nhttp = {{ url = \"https://h.example.com\" }}\n"
        )
    }

    #[test]
    fn new_lost_reordered_and_moved_event_types_are_counted() {
        let live = cfg(&(h(1, "clients.*", 1, "") + &h(2, "clients.create", 2, "")));
        // 1 narrows to clients.create and gains a condition; 2 moves ahead of it.
        let proposed = cfg(&(h(1, "clients.create", 2, "when = 'data.balance < 0'")
            + &h(2, "clients.create", 1, "")
            + &h(3, "accounts.*", 1, "")));
        let d = |v: serde_json::Value| v.as_object().cloned().expect("object");
        let (neg, pos, none) = (
            d(json!({"balance": -5})),
            d(json!({"balance": 5})),
            d(json!({})),
        );
        let events = [
            Recorded {
                event: Event::ClientsCreate,
                phase: Phase::After,
                data: &neg,
            },
            Recorded {
                event: Event::ClientsCreate,
                phase: Phase::After,
                data: &pos,
            },
            Recorded {
                event: Event::ClientsUpdate,
                phase: Phase::After,
                data: &neg,
            },
            Recorded {
                event: Event::ClientsCreate,
                phase: Phase::After,
                data: &none,
            },
            Recorded {
                event: Event::AccountsCreate,
                phase: Phase::After,
                data: &none,
            },
        ];
        let changed = [
            (1, "h1".to_owned()),
            (2, "h2".to_owned()),
            (3, "h3".to_owned()),
        ];
        let i = impact(Some(&live), &proposed, &changed, &events);
        assert_eq!(i.events, 5);
        let one = &i.handlers[0];
        assert_eq!(
            (one.live, one.proposed, one.new, one.lost, one.reordered),
            (4, 1, 0, 3, 1)
        );
        assert_eq!(
            one.unevaluable, 1,
            "no balance: the condition cannot be evaluated"
        );
        assert_eq!(
            one.moved,
            BTreeMap::from([
                ("clients.create".to_owned(), -2),
                ("clients.update".to_owned(), -1)
            ])
        );
        let two = &i.handlers[1];
        assert_eq!((two.live, two.proposed, two.new, two.lost), (3, 3, 0, 0));
        assert_eq!(
            two.reordered, 3,
            "first now, where it ran after 1 (whether or not 1 still runs)"
        );
        let three = &i.handlers[2];
        assert_eq!((three.live, three.new), (0, 1));
        assert_eq!(
            three.moved,
            BTreeMap::from([("accounts.create".to_owned(), 1)])
        );
        let text = i.render_text("in the last 7 days");
        assert!(text.contains("1 \"h1\": called for 1 events (live: 4); +0 new, -3 lost, 1 reordered; clients.create -2, clients.update -1"), "{text}");
        assert!(
            i.render_markdown("x")
                .contains("| 3 | h3 | 0 | 1 | +1 | -0 | 0 | accounts.create +1 |")
        );
    }

    #[test]
    fn a_before_handler_counts_decisions_and_an_after_handler_events() {
        let live = cfg(&h(9, "accounts.*", 1, ""));
        let proposed = cfg(
            &(h(1, "clients.create", 1, "phase = \"before\"") + &h(2, "clients.create", 1, ""))
        );
        let data = Data::new();
        let r = |phase| Recorded {
            event: Event::ClientsCreate,
            phase,
            data: &data,
        };
        let events = [r(Phase::Before), r(Phase::After), r(Phase::After)];
        let i = impact(
            Some(&live),
            &proposed,
            &[(1, "a".into()), (2, "b".into())],
            &events,
        );
        assert_eq!((i.handlers[0].new, i.handlers[1].new), (1, 2));
    }

    #[test]
    fn a_first_sync_has_nothing_live() {
        let proposed = cfg(&h(1, "clients.*", 1, ""));
        let data = Data::new();
        let events = [Recorded {
            event: Event::ClientsCreate,
            phase: Phase::After,
            data: &data,
        }];
        let i = impact(None, &proposed, &[(1, "h1".into())], &events);
        assert_eq!((i.handlers[0].live, i.handlers[0].new), (0, 1));
    }
}

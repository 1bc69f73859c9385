//! The event catalogue: every event the billing system can send, and the
//! patterns a handler may listen to (`clients.create`, `clients.*`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Group of related events; the part before the dot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    Clients,
    Accounts,
    Subscriptions,
    Import,
}

impl Group {
    pub const ALL: [Group; 4] = [
        Group::Clients,
        Group::Accounts,
        Group::Subscriptions,
        Group::Import,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Group::Clients => "clients",
            Group::Accounts => "accounts",
            Group::Subscriptions => "subscriptions",
            Group::Import => "import",
        }
    }

    /// The events of this group, in catalogue order.
    pub fn events(self) -> impl Iterator<Item = Event> {
        Event::ALL.into_iter().filter(move |e| e.group() == self)
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! catalogue {
    ($( $variant:ident => $name:literal, $group:ident, $doc:literal; )*) => {
        /// One event of the catalogue.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Event {
            $( #[doc = $doc] $variant, )*
        }

        impl Event {
            /// Every event, in catalogue order.
            pub const ALL: [Event; catalogue!(@count $($variant)*)] = [$(Event::$variant,)*];

            /// The wire name, e.g. `clients.create`.
            pub fn as_str(self) -> &'static str {
                match self { $( Event::$variant => $name, )* }
            }

            pub fn group(self) -> Group {
                match self { $( Event::$variant => Group::$group, )* }
            }

            /// What the event means, for listings.
            pub fn description(self) -> &'static str {
                match self { $( Event::$variant => $doc, )* }
            }
        }
    };
    (@count) => { 0 };
    (@count $head:ident $($tail:ident)*) => { 1 + catalogue!(@count $($tail)*) };
}

catalogue! {
    ClientsCreate => "clients.create", Clients, "a client was created";
    ClientsUpdate => "clients.update", Clients, "a client was updated";
    ClientsDelete => "clients.delete", Clients, "a client was deleted";
    ClientsArchive => "clients.archive", Clients, "a client was archived";
    ClientsCustomFieldsUpdate => "clients.custom_fields_update", Clients, "a client's custom fields were updated";
    ClientsBalanceNonnegative => "clients.balance_nonnegative", Clients, "a client's balance became >= 0";
    ClientsBalanceNonpositive => "clients.balance_nonpositive", Clients, "a client's balance became <= 0";
    AccountsCreate => "accounts.create", Accounts, "an account was created";
    AccountsUpdate => "accounts.update", Accounts, "an account was updated";
    AccountsDelete => "accounts.delete", Accounts, "an account was deleted";
    SubscriptionsAssign => "subscriptions.assign", Subscriptions, "a subscription was assigned";
    SubscriptionsActivate => "subscriptions.activate", Subscriptions, "a subscription was activated";
    SubscriptionsDeactivate => "subscriptions.deactivate", Subscriptions, "a subscription was deactivated";
    SubscriptionsRenew => "subscriptions.renew", Subscriptions, "a subscription was renewed";
    SubscriptionsClose => "subscriptions.close", Subscriptions, "a subscription was closed";
    ImportFailed => "import.failed", Import, "an import process failed";
    ImportSucceeded => "import.succeeded", Import, "an import process succeeded";
}

/// An event name that is not in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event `{name}`{}", suggestion_suffix(.suggestion))]
pub struct UnknownEvent {
    pub name: String,
    /// The nearest catalogue entry, when one is close enough to be a typo.
    pub suggestion: Option<&'static str>,
}

fn suggestion_suffix(s: &Option<&'static str>) -> String {
    s.map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default()
}

impl FromStr for Event {
    type Err = UnknownEvent;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Event::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| UnknownEvent {
                name: s.to_owned(),
                suggestion: closest(s, Event::ALL.iter().map(|e| e.as_str())),
            })
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a handler listens to: one event, or every event of a group (`clients.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventPattern {
    Exact(Event),
    Group(Group),
}

impl EventPattern {
    pub fn matches(self, event: Event) -> bool {
        match self {
            EventPattern::Exact(e) => e == event,
            EventPattern::Group(g) => event.group() == g,
        }
    }

    /// Every spelling the parser accepts, for suggestions.
    pub fn all_spellings() -> impl Iterator<Item = String> {
        Event::ALL
            .iter()
            .map(|e| e.as_str().to_owned())
            .chain(Group::ALL.iter().map(|g| format!("{g}.*")))
    }
}

impl FromStr for EventPattern {
    type Err = UnknownEvent;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(group) = s.strip_suffix(".*")
            && let Some(g) = Group::ALL.into_iter().find(|g| g.as_str() == group)
        {
            return Ok(EventPattern::Group(g));
        }
        s.parse::<Event>().map(EventPattern::Exact).map_err(|_| {
            let spellings: Vec<String> = EventPattern::all_spellings().collect();
            UnknownEvent {
                name: s.to_owned(),
                suggestion: closest(s, spellings.iter().map(String::as_str)).and_then(|found| {
                    // map back to a 'static spelling
                    Event::ALL
                        .iter()
                        .map(|e| e.as_str())
                        .find(|e| *e == found)
                        .or_else(|| GROUP_PATTERNS.iter().copied().find(|p| *p == found))
                }),
            }
        })
    }
}

const GROUP_PATTERNS: [&str; 4] = ["clients.*", "accounts.*", "subscriptions.*", "import.*"];

impl fmt::Display for EventPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventPattern::Exact(e) => f.write_str(e.as_str()),
            EventPattern::Group(g) => write!(f, "{g}.*"),
        }
    }
}

impl Serialize for EventPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The candidate closest to `input` by edit distance, if it is close enough to be a typo.
pub fn closest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    // A typo is short; comparing a huge input would only cost time.
    if input.len() > 64 {
        return None;
    }
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(input, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_round_trips_through_its_name() {
        assert_eq!(Event::ALL.len(), 17);
        for e in Event::ALL {
            assert_eq!(e.as_str().parse::<Event>(), Ok(e));
            assert!(e.as_str().starts_with(e.group().as_str()));
        }
    }

    #[test]
    fn unknown_event_suggests_the_nearest() {
        let err = "clients.craete".parse::<Event>().unwrap_err();
        assert_eq!(err.suggestion, Some("clients.create"));
        assert_eq!(
            err.to_string(),
            "unknown event `clients.craete`; did you mean `clients.create`?"
        );
        let err = "payments.refund".parse::<Event>().unwrap_err();
        assert_eq!(err.suggestion, None);
    }

    #[test]
    fn group_patterns_match_their_group_only() {
        let p: EventPattern = "subscriptions.*".parse().unwrap();
        assert!(p.matches(Event::SubscriptionsRenew));
        assert!(!p.matches(Event::ClientsCreate));
        assert_eq!(Group::Subscriptions.events().count(), 5);
        let err = "client.*".parse::<EventPattern>().unwrap_err();
        assert_eq!(err.suggestion, Some("clients.*"));
    }
}

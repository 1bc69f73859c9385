//! The handlers' targets as dispatch calls them: HTTP endpoints
//! ([`http`], behind the SSRF guard of [`network`]) and scripts
//! ([`script`]). What a call is and answers is the domain's
//! ([`hooks_domain::targets`], re-exported here).

pub mod http;
pub mod network;
pub mod script;

pub use hooks_domain::targets::*;
pub use http::{HttpCaller, HttpOptions};
pub use network::{ALLOW_NETWORKS_ENV, ForbiddenAddress, NetworkPolicy};
pub use script::{ScriptOptions, ScriptRunner};

use crate::config::Target;

/// The real targets: one shared HTTP client and the script runner.
#[derive(Debug, Clone)]
pub struct Targets {
    http: HttpCaller,
    script: ScriptRunner,
}

impl Targets {
    pub fn new(http: HttpCaller, script: ScriptRunner) -> Self {
        Targets { http, script }
    }
}

impl Invoker for Targets {
    async fn invoke(&self, call: &Call<'_>) -> Reply {
        match &call.handler.target {
            Target::Http(t) => self.http.call(t, call).await,
            Target::Script(t) => self.script.call(t, call).await,
        }
    }
}

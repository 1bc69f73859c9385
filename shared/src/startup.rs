//! What both functions do when they start: build what their requests need
//! in Lambda's init phase when AWS answers then (a cold start pays for it
//! once, outside any request's time), else on the first request, which
//! tries again; and how long an invocation has left.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, SystemTime};

use tokio::sync::OnceCell;

/// A function's app, built once and kept for the life of the process.
pub struct Ready<T, B> {
    cell: OnceCell<T>,
    build: B,
}

impl<T, B> std::fmt::Debug for Ready<T, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ready")
            .field("built", &self.cell.initialized())
            .finish()
    }
}

impl<T, E, B, F> Ready<T, B>
where
    T: Send + Sync + 'static,
    B: Fn() -> F + Send + Sync + 'static,
    F: Future<Output = Result<T, E>> + Send,
    E: Display,
{
    /// Builds the app now. A failure that waiting may fix (`transient`: AWS
    /// unreachable or throttled) is logged and left to `first` (the first
    /// request or batch); any other stops the function.
    pub async fn start(
        build: B,
        transient: impl Fn(&E) -> bool,
        first: &str,
    ) -> Result<&'static Self, E> {
        let ready: &'static Self = Box::leak(Box::new(Ready {
            cell: OnceCell::new(),
            build,
        }));
        match (ready.build)().await {
            Ok(app) => {
                let _ = ready.cell.set(app);
            }
            Err(e) if transient(&e) => {
                tracing::error!(error = %e, "not ready: {first} tries again");
            }
            Err(e) => return Err(e),
        }
        Ok(ready)
    }

    /// The app, built now if the init phase could not.
    pub async fn get(&'static self) -> Result<&'static T, E> {
        self.cell.get_or_try_init(|| (self.build)()).await
    }
}

/// The time an invocation has left before `deadline`, or `fallback` when
/// the runtime gave none that lies ahead.
pub fn time_left(deadline: SystemTime, fallback: Duration) -> Duration {
    deadline
        .duration_since(SystemTime::now())
        .unwrap_or(fallback)
}

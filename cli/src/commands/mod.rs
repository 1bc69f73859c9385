pub(crate) mod bootstrap;
pub(crate) mod events;
pub(crate) mod history;
pub(crate) mod list;
pub(crate) mod plan;
pub(crate) mod sync;
pub(crate) mod try_;
pub(crate) mod validate;

pub(crate) mod events;
pub(crate) mod list;
pub(crate) mod try_;
pub(crate) mod validate;

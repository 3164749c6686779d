//! Authentication decisions: access policy, safe return paths and the
//! login flow, independent of pingora.

pub mod flow;
pub mod policy;
pub mod redirect;
pub mod skip;

//! The simulated Exchange server used by tests and by `exarch simulate` / `exarch demo`.

pub mod hostile;
pub mod model;
pub mod server;

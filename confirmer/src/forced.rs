//! The confirmer's forced-inclusion check (docs/PROTOCOL.md, Forced transactions): the checker
//! and the `censorship` evidence live in `chains::forced_check`, where a coordinator recovering
//! from the DA and the Arweave DA use the same code.

pub use chains::forced_check::*;

//! Errors of the node and the reasons a transaction is refused, with Bitcoin Core's RPC codes.

/// Bitcoin Core's RPC error codes (`src/rpc/protocol.h`) that this node answers with.
pub mod code {
    /// Generic application error.
    pub const MISC_ERROR: i32 = -1;
    /// Unexpected type was passed as parameter.
    pub const TYPE_ERROR: i32 = -3;
    /// Invalid address or key (also: block or transaction not found).
    pub const INVALID_ADDRESS_OR_KEY: i32 = -5;
    /// Invalid, missing or duplicate parameter.
    pub const INVALID_PARAMETER: i32 = -8;
    /// Error parsing or validating structure in raw format.
    pub const DESERIALIZATION_ERROR: i32 = -22;
    /// General error during transaction or block submission (missing inputs, fee above the maximum).
    pub const VERIFY_ERROR: i32 = -25;
    /// Transaction or block was rejected by network rules.
    pub const VERIFY_REJECTED: i32 = -26;
    /// Transaction outputs already in the UTXO set.
    pub const VERIFY_ALREADY_IN_CHAIN: i32 = -27;
    /// JSON-RPC: invalid request object.
    pub const INVALID_REQUEST: i32 = -32600;
    /// JSON-RPC: method not found.
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// JSON-RPC: parse error.
    pub const PARSE_ERROR: i32 = -32700;
}

/// Why the mempool refused a transaction: Core's RPC code and its reject reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (code {code})")]
pub struct Reject {
    /// The RPC error code `sendrawtransaction` answers with.
    pub code: i32,
    /// Core's reject reason, e.g. `txn-mempool-conflict`.
    pub reason: String,
}

impl Reject {
    /// Refused by policy or consensus (`-26`).
    pub fn rejected(reason: impl Into<String>) -> Self {
        Self { code: code::VERIFY_REJECTED, reason: reason.into() }
    }

    /// An input is missing or already spent in the chain (`-25`).
    pub fn missing_inputs() -> Self {
        Self { code: code::VERIFY_ERROR, reason: "bad-txns-inputs-missingorspent".into() }
    }

    /// The transaction's outputs are already in the UTXO set (`-27`).
    pub fn already_in_chain() -> Self {
        Self { code: code::VERIFY_ALREADY_IN_CHAIN, reason: "Transaction outputs already in utxo set".into() }
    }

    /// The reason `testmempoolaccept` reports (Core says `missing-inputs` there).
    pub fn test_reason(&self) -> &str {
        if self.code == code::VERIFY_ERROR && self.reason == "bad-txns-inputs-missingorspent" {
            "missing-inputs"
        } else {
            &self.reason
        }
    }
}

/// Failures of the node itself (not of what a caller sent).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The kernel could not be set up or failed an operation.
    #[error("bitcoin kernel: {0}")]
    Kernel(String),
    /// A block this node assembled was refused by the kernel: a bug in the node's block assembly.
    #[error("the kernel rejected block {hash} assembled by this node: {reason}")]
    BlockRejected {
        /// The block's hash.
        hash: String,
        /// The kernel's verdict.
        reason: String,
    },
    /// A block the kernel returned could not be decoded.
    #[error("block from the kernel does not decode: {0}")]
    Decode(String),
    /// The node's index disagrees with the kernel's block data (an outpoint spent twice).
    #[error("index out of step with the kernel's chain: {0}")]
    Index(String),
    /// A lock was poisoned by a panic in another thread; restart the node.
    #[error("node state poisoned by an earlier panic; restart the node")]
    Poisoned,
    /// The block to build on is unknown to the kernel.
    #[error("unknown block {0}: mine a branch only from a block the node has")]
    UnknownBlock(String),
    /// Data directory or listener setup failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl From<bitcoinkernel::KernelError> for NodeError {
    fn from(e: bitcoinkernel::KernelError) -> Self {
        Self::Kernel(e.to_string())
    }
}

//! Where a signed transaction goes. The coordinator when it answers; Arweave, as a forced
//! transaction, with `--force`, or when the user gave `--arweave-wallet` and the coordinator is
//! unavailable: unreachable, silent past the client's timeout (15 s, [`super::endpoints::Api`]),
//! busy (429) or failing (5xx). A refusal with a reason (a bad nonce, an overdraft, a fee too
//! low, a bad signature) is the user's to fix and is never posted: the batch would only record
//! the same refusal, at the user's Arweave fee.

use super::endpoints::ApiFailure;

/// What a failed call to the coordinator means for where the transaction goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoordinatorFailure {
    /// Not the user's fault: with an Arweave wallet, the transaction goes to Arweave instead.
    Unavailable,
    /// The coordinator answered with a reason: reported, never posted to Arweave.
    Refused,
}

/// Sorts a failed coordinator call: pure, so every case is named in one test.
pub fn classify(failure: &ApiFailure) -> CoordinatorFailure {
    match failure {
        // Connection refused, reset, DNS, TLS, or no answer within the client's timeout.
        ApiFailure::Unreachable { .. } => CoordinatorFailure::Unavailable,
        // A success status with a body that is not the API's: not the user's doing. Posting a
        // transaction the coordinator may have taken is safe: the protocol records a forced
        // duplicate as such and applies it once.
        ApiFailure::BadAnswer { .. } => CoordinatorFailure::Unavailable,
        // Timed out on its side, rate-limited, or failing.
        ApiFailure::Refused { status, .. } if *status == 408 || *status == 429 || *status >= 500 => {
            CoordinatorFailure::Unavailable
        }
        // 400 malformed, 401 signature, 409 nonce replayed, 422 overdraft/fee/nonce gap, and a
        // 404 or 405 from a URL that is not a coordinator's: the user's to fix.
        ApiFailure::Refused { .. } => CoordinatorFailure::Refused,
    }
}

/// The failure inside `error`, if it is a coordinator call's and the coordinator is unavailable.
pub fn unavailable(error: &anyhow::Error) -> Option<&ApiFailure> {
    error.downcast_ref::<ApiFailure>().filter(|failure| classify(failure) == CoordinatorFailure::Unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, code: &str) -> ApiFailure {
        ApiFailure::Refused {
            service: "coordinator",
            what: "POST /tx".into(),
            status,
            code: code.into(),
            message: String::new(),
        }
    }

    #[test]
    fn every_failure_is_sorted_into_unavailable_or_the_users_fault() {
        use CoordinatorFailure::{Refused, Unavailable};
        let unreachable = |reason: &str| ApiFailure::Unreachable {
            service: "coordinator",
            flag: "coordinator",
            url: "http://127.0.0.1:9".into(),
            reason: reason.into(),
        };
        let cases = [
            ("connection refused", unreachable("Connection refused (os error 111)"), Unavailable),
            ("no answer within the timeout", unreachable("operation timed out"), Unavailable),
            (
                "a body that is not the API's",
                ApiFailure::BadAnswer { service: "coordinator", what: "POST /tx".into(), reason: "eof".into() },
                Unavailable,
            ),
            ("request timeout", refused(408, "http_408"), Unavailable),
            ("rate-limited", refused(429, "rate_limited"), Unavailable),
            ("internal error", refused(500, "internal"), Unavailable),
            ("bad gateway", refused(502, "http_502"), Unavailable),
            ("sequencer stopped", refused(503, "sequencer_stopped"), Unavailable),
            ("gateway timeout", refused(504, "http_504"), Unavailable),
            ("malformed request", refused(400, "malformed"), Refused),
            ("bad signature", refused(401, "signer_mismatch"), Refused),
            ("not a coordinator's URL", refused(404, "not_found"), Refused),
            ("nonce replayed", refused(409, "nonce_replayed"), Refused),
            ("too large", refused(413, "too_large"), Refused),
            ("overdraft", refused(422, "overdraft"), Refused),
            ("fee too low", refused(422, "fee_too_low"), Refused),
            ("nonce gap", refused(422, "nonce_gap"), Refused),
        ];
        for (case, failure, expected) in cases {
            assert_eq!(classify(&failure), expected, "{case}");
        }
    }

    #[test]
    fn only_an_unavailable_coordinators_failure_is_found_in_an_error() {
        let busy = anyhow::Error::from(refused(503, "sequencer_stopped"));
        assert!(unavailable(&busy).is_some());
        let overdraft = anyhow::Error::from(refused(422, "overdraft"));
        assert!(unavailable(&overdraft).is_none());
        assert!(unavailable(&anyhow::anyhow!("not an API call")).is_none());
    }
}

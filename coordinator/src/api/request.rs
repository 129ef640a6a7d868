//! A signed transaction as clients send it: the EIP-712 message's fields and the signature, in
//! one flat JSON object. Parsed field by field so that every kind of bad input has its own
//! error code, and nothing reaches the sequencer unless it is well formed.

use bridge::passkey::PasskeyAssertion;
use bridge::signature::{Authorization, EcdsaSignature, SignatureError};
use bridge::{Address, Amount, AssetId, SignedUserTx, Transfer, UserTx, Withdraw};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::error::ApiError;
use bridge::address::AddressError;
use bridge::amount::AmountError;
use bridge::asset::AssetError;

/// A user transaction as it is posted to `POST /tx`, and each element of `POST /txs`.
/// `chain_id` and `vault`, if given, must be this network's: they let a wallet signing for the
/// wrong network hear so plainly, instead of a signer mismatch.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TxRequest {
    /// `transfer` or `withdraw`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The sending account, `0x` and 40 hex digits.
    pub from: String,
    /// Transfers only: the receiving account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Withdrawals only: the L1 address to pay, as signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// `eth:ETH`, `eth:0x<token>` or `btc:BTC`.
    pub asset: String,
    /// Base units as a decimal string.
    pub amount: String,
    /// Base units as a decimal string.
    pub fee: String,
    pub nonce: u64,
    /// The EIP-712 signature, 65 bytes `r ‖ s ‖ v` as `0x` hex. Exactly one of `signature` and
    /// `passkey` is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// A passkey account's WebAuthn assertion over the same digest (docs/PROTOCOL.md, Passkey
    /// accounts): `public_key` (x ‖ y), `authenticator_data`, `client_data_json` and
    /// `signature` (r ‖ s, low-S), each as `0x` hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub passkey: Option<bridge::passkey::PasskeyAssertion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vault: Option<String>,
}

impl TxRequest {
    /// The request form of a signed transaction (what a wallet or the CLI posts).
    pub fn from_signed(signed: &SignedUserTx) -> Self {
        let (signature, passkey) = match &signed.auth {
            Authorization::Eip712Secp256k1 { signature } => {
                (Some(format!("0x{}", hex::encode(signature.to_rsv()))), None)
            }
            Authorization::WebAuthnP256 { assertion } => (None, Some((**assertion).clone())),
        };
        match &signed.tx {
            UserTx::Transfer(t) => TxRequest {
                kind: "transfer".into(),
                from: t.from.to_string(),
                to: Some(t.to.to_string()),
                recipient: None,
                asset: t.asset.to_string(),
                amount: t.amount.to_string(),
                fee: t.fee.to_string(),
                nonce: t.nonce,
                signature,
                passkey,
                chain_id: None,
                vault: None,
            },
            UserTx::Withdraw(w) => TxRequest {
                kind: "withdraw".into(),
                from: w.from.to_string(),
                to: None,
                recipient: Some(w.recipient.clone()),
                asset: w.asset.to_string(),
                amount: w.amount.to_string(),
                fee: w.fee.to_string(),
                nonce: w.nonce,
                signature,
                passkey,
                chain_id: None,
                vault: None,
            },
        }
    }
}

/// The network a request must be for.
#[derive(Debug, Clone, Copy)]
pub struct Expected {
    pub chain_id: u64,
    pub vault: Address,
}

const TRANSFER_FIELDS: &[&str] =
    &["type", "from", "to", "asset", "amount", "fee", "nonce", "signature", "passkey", "chain_id", "vault"];
const WITHDRAW_FIELDS: &[&str] =
    &["type", "from", "recipient", "asset", "amount", "fee", "nonce", "signature", "passkey", "chain_id", "vault"];

/// Parses a request body holding one transaction.
pub fn parse_body(body: &[u8], expected: Expected) -> Result<SignedUserTx, ApiError> {
    parse_value(json_of(body)?, expected)
}

/// The JSON in a request body, or `malformed_json`.
pub fn json_of(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("malformed_json", format!("the body is not JSON: {e}")))
}

/// Parses one transaction object.
pub fn parse_value(value: Value, expected: Expected) -> Result<SignedUserTx, ApiError> {
    let Value::Object(fields) = value else {
        return Err(ApiError::bad_request("malformed_json", "a transaction is a JSON object"));
    };
    let kind = text(&fields, "type")?;
    let allowed = match kind {
        "transfer" => TRANSFER_FIELDS,
        "withdraw" => WITHDRAW_FIELDS,
        other => {
            return Err(ApiError::bad_request(
                "unknown_tx_type",
                format!("`type` must be `transfer` or `withdraw`, got {other:?}"),
            ));
        }
    };
    if let Some(unknown) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad_request(
            "unknown_field",
            format!("unknown field {unknown:?} for a {kind}; the fields are {}", allowed.join(", ")),
        ));
    }
    if let Some(chain_id) = fields.get("chain_id") {
        let chain_id = chain_id.as_u64().ok_or_else(|| invalid("chain_id", "a whole number"))?;
        if chain_id != expected.chain_id {
            return Err(wrong_domain(format!("chain_id {chain_id}, but this network's is {}", expected.chain_id)));
        }
    }
    if fields.contains_key("vault") {
        let vault = address(&fields, "vault")?;
        if vault != expected.vault {
            return Err(wrong_domain(format!("vault {vault}, but this network's is {}", expected.vault)));
        }
    }
    let from = address(&fields, "from")?;
    let asset = asset(&fields)?;
    let amount = amount_field(&fields, "amount")?;
    let fee = amount_field(&fields, "fee")?;
    let nonce = fields.get("nonce").ok_or_else(|| missing("nonce"))?;
    let nonce = nonce.as_u64().ok_or_else(|| invalid("nonce", "a whole number from 0 to 2^64-1"))?;
    let auth = authorization(&fields)?;
    let tx = match kind {
        "transfer" => UserTx::Transfer(Transfer { from, to: address(&fields, "to")?, asset, amount, fee, nonce }),
        _ => UserTx::Withdraw(Withdraw {
            from,
            asset,
            amount,
            fee,
            recipient: text(&fields, "recipient")?.to_owned(),
            nonce,
        }),
    };
    Ok(SignedUserTx { tx, auth })
}

/// `signature` (an Ethereum key's) or `passkey` (a WebAuthn assertion), never both.
fn authorization(fields: &Map<String, Value>) -> Result<Authorization, ApiError> {
    match (fields.contains_key("signature"), fields.get("passkey")) {
        (true, Some(_)) => Err(ApiError::bad_request(
            "two_authorizations",
            "give `signature` (an Ethereum key's) or `passkey` (a WebAuthn assertion), not both",
        )),
        (false, Some(passkey)) => {
            let assertion: PasskeyAssertion = serde_json::from_value(passkey.clone()).map_err(|e| {
                ApiError::bad_request(
                    "bad_passkey",
                    format!(
                        "passkey: {e}; it is an object of `public_key` (64 bytes x ‖ y), `authenticator_data`, `client_data_json` and `signature` (64 bytes r ‖ s), each 0x hex"
                    ),
                )
            })?;
            Ok(Authorization::WebAuthnP256 { assertion: Box::new(assertion) })
        }
        (_, None) => Ok(Authorization::Eip712Secp256k1 { signature: signature(fields)? }),
    }
}

fn missing(field: &str) -> ApiError {
    ApiError::bad_request("missing_field", format!("the field {field:?} is required"))
}

fn invalid(field: &str, what: &str) -> ApiError {
    ApiError::bad_request("invalid_field", format!("the field {field:?} must be {what}"))
}

fn wrong_domain(detail: String) -> ApiError {
    ApiError::bad_request(
        "wrong_domain",
        format!(
            "the transaction is for another network: {detail}; sign with this network's EIP-712 domain (GET /info)"
        ),
    )
}

fn text<'a>(fields: &'a Map<String, Value>, field: &str) -> Result<&'a str, ApiError> {
    fields.get(field).ok_or_else(|| missing(field))?.as_str().ok_or_else(|| invalid(field, "a string"))
}

fn address(fields: &Map<String, Value>, field: &str) -> Result<Address, ApiError> {
    text(fields, field)?.parse().map_err(|e: AddressError| {
        let code = if matches!(e, AddressError::Hex) { "bad_hex" } else { "bad_address" };
        ApiError::bad_request(code, format!("{field}: {e}"))
    })
}

fn asset(fields: &Map<String, Value>) -> Result<AssetId, ApiError> {
    text(fields, "asset")?.parse().map_err(|e: AssetError| {
        let code = match e {
            AssetError::Form(_) => "bad_asset",
            AssetError::Chain(_) | AssetError::BitcoinToken(_) => "unknown_asset",
            AssetError::Token { .. } => "bad_address",
        };
        ApiError::bad_request(code, format!("asset: {e}"))
    })
}

fn amount_field(fields: &Map<String, Value>, field: &str) -> Result<Amount, ApiError> {
    let value = fields.get(field).ok_or_else(|| missing(field))?;
    let Some(digits) = value.as_str() else {
        return Err(invalid(field, "a decimal string of base units (JSON numbers lose precision above 2^53)"));
    };
    digits.parse().map_err(|e: AmountError| {
        let code = match e {
            AmountError::TooLarge(_) => "amount_overflow",
            AmountError::NotDecimal(_) => "bad_amount",
        };
        ApiError::bad_request(code, format!("{field}: {e}"))
    })
}

fn signature(fields: &Map<String, Value>) -> Result<EcdsaSignature, ApiError> {
    let text = text(fields, "signature")?;
    let digits = text
        .strip_prefix("0x")
        .ok_or_else(|| ApiError::bad_request("bad_hex", "signature: a signature is `0x` followed by 130 hex digits"))?;
    let bytes =
        hex::decode(digits).map_err(|e| ApiError::bad_request("bad_hex", format!("signature: not hex ({e})")))?;
    EcdsaSignature::from_rsv(&bytes).map_err(|e| match e {
        SignatureError::Format => ApiError::bad_request(
            "bad_signature_length",
            format!("signature: {} bytes; a signature is 65 bytes (r ‖ s ‖ v)", bytes.len()),
        ),
        other => ApiError::bad_request("bad_signature", format!("signature: {other}")),
    })
}

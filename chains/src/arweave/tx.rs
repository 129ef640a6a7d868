//! Format-2 transactions: the fields, their JSON form on the wire, the deep-hash they sign, and
//! the checks a reader makes before believing one (its id is the hash of its signature, and the
//! signature verifies under its owner).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::deep_hash::{DeepHashItem, deep_hash};
use super::merkle;
use super::pss;
use super::wallet::{ArweaveWallet, EXPONENT, WalletError, address_of, b64, to_b64};

/// A name/value tag, as bytes (Arweave tags are arbitrary bytes; ours are UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

impl Tag {
    pub fn new(name: &str, value: impl AsRef<str>) -> Self {
        Tag { name: name.as_bytes().to_vec(), value: value.as_ref().as_bytes().to_vec() }
    }
}

/// A format-2 transaction carrying data (no transfer of AR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub id: [u8; 32],
    pub last_tx: Vec<u8>,
    pub owner: Vec<u8>,
    pub tags: Vec<Tag>,
    pub target: Vec<u8>,
    pub quantity: u128,
    pub data_size: u64,
    pub data_root: Vec<u8>,
    pub reward: u128,
    pub signature: Vec<u8>,
    /// Inline data; empty when the data travels in chunks.
    pub data: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum TxError {
    #[error("the transaction JSON is malformed: {0}")]
    Malformed(String),
    #[error("transaction {id}: its id is not the hash of its signature")]
    IdMismatch { id: String },
    #[error("transaction {id}: its signature does not verify under its owner")]
    BadSignature { id: String },
    #[error(transparent)]
    Wallet(#[from] WalletError),
}

impl Transaction {
    /// An unsigned transaction carrying `data`, anchored on `last_tx`, paying `reward`.
    pub fn with_data(data: Vec<u8>, tags: Vec<Tag>, last_tx: Vec<u8>, reward: u128, owner: Vec<u8>) -> Self {
        Transaction {
            id: [0; 32],
            last_tx,
            owner,
            tags,
            target: Vec::new(),
            quantity: 0,
            data_size: data.len() as u64,
            data_root: merkle::data_root(&data),
            reward,
            signature: Vec::new(),
            data,
        }
    }

    /// The deep hash a format-2 signature covers.
    pub fn signature_data(&self) -> [u8; 48] {
        let (quantity, reward, data_size) =
            (self.quantity.to_string(), self.reward.to_string(), self.data_size.to_string());
        let pairs: Vec<[DeepHashItem<'_>; 2]> =
            self.tags.iter().map(|t| [DeepHashItem::Blob(&t.name), DeepHashItem::Blob(&t.value)]).collect();
        let tags: Vec<DeepHashItem<'_>> = pairs.iter().map(|p| DeepHashItem::List(p)).collect();
        deep_hash(&DeepHashItem::List(&[
            DeepHashItem::Blob(b"2"),
            DeepHashItem::Blob(&self.owner),
            DeepHashItem::Blob(&self.target),
            DeepHashItem::Blob(quantity.as_bytes()),
            DeepHashItem::Blob(reward.as_bytes()),
            DeepHashItem::Blob(&self.last_tx),
            DeepHashItem::List(&tags),
            DeepHashItem::Blob(data_size.as_bytes()),
            DeepHashItem::Blob(&self.data_root),
        ]))
    }

    pub fn sign(&mut self, wallet: &ArweaveWallet) -> Result<(), TxError> {
        assert_eq!(self.owner, wallet.owner(), "a transaction is signed by its owner");
        self.signature = wallet.sign(&self.signature_data())?;
        self.id = Sha256::digest(&self.signature).into();
        Ok(())
    }

    /// Checks the id and the signature; says nothing about the data (see `data_matches`).
    pub fn verify(&self) -> Result<(), TxError> {
        if <[u8; 32]>::from(Sha256::digest(&self.signature)) != self.id {
            return Err(TxError::IdMismatch { id: self.id_b64() });
        }
        if !pss::verify(&self.owner, &EXPONENT, &self.signature_data(), &self.signature) {
            return Err(TxError::BadSignature { id: self.id_b64() });
        }
        Ok(())
    }

    /// True if `data` is what this transaction's `data_root` and `data_size` commit to.
    pub fn data_matches(&self, data: &[u8]) -> bool {
        data.len() as u64 == self.data_size && merkle::data_root(data) == self.data_root
    }

    pub fn id_b64(&self) -> String {
        to_b64(&self.id)
    }

    pub fn owner_address(&self) -> String {
        address_of(&self.owner)
    }

    /// The value of the first tag called `name`, if it is UTF-8.
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.tags.iter().find(|t| t.name == name.as_bytes()).and_then(|t| std::str::from_utf8(&t.value).ok())
    }

    /// The JSON `POST /tx` takes; `with_data` false leaves the data for `POST /chunk`.
    pub fn to_json(&self, with_data: bool) -> TxJson {
        TxJson {
            format: serde_json::Value::from(2),
            id: self.id_b64(),
            last_tx: to_b64(&self.last_tx),
            owner: to_b64(&self.owner),
            tags: self.tags.iter().map(|t| TagJson { name: to_b64(&t.name), value: to_b64(&t.value) }).collect(),
            target: to_b64(&self.target),
            quantity: NumberText(self.quantity.to_string()),
            data: if with_data { to_b64(&self.data) } else { String::new() },
            data_size: NumberText(self.data_size.to_string()),
            data_root: to_b64(&self.data_root),
            reward: NumberText(self.reward.to_string()),
            signature: to_b64(&self.signature),
        }
    }

    /// Parses a transaction as a gateway serves it (`GET /tx/{id}`).
    pub fn from_json(json: &TxJson) -> Result<Self, TxError> {
        let bytes = |field: &str, text: &str| b64(text).map_err(|e| TxError::Malformed(format!("{field}: {e}")));
        let number = |field: &str, text: &NumberText| {
            let text = if text.0.is_empty() { "0" } else { text.0.as_str() };
            text.parse::<u128>().map_err(|e| TxError::Malformed(format!("{field}: {e}")))
        };
        let format = json.format.as_u64().or_else(|| json.format.as_str().and_then(|s| s.parse().ok()));
        if format != Some(2) {
            return Err(TxError::Malformed(format!("format {} is not 2", json.format)));
        }
        let id: [u8; 32] =
            bytes("id", &json.id)?.try_into().map_err(|_| TxError::Malformed("id is not 32 bytes".into()))?;
        let data_size = u64::try_from(number("data_size", &json.data_size)?)
            .map_err(|_| TxError::Malformed("data_size is too large".into()))?;
        Ok(Transaction {
            id,
            last_tx: bytes("last_tx", &json.last_tx)?,
            owner: bytes("owner", &json.owner)?,
            tags: json
                .tags
                .iter()
                .map(|t| Ok(Tag { name: bytes("tag name", &t.name)?, value: bytes("tag value", &t.value)? }))
                .collect::<Result<_, TxError>>()?,
            target: bytes("target", &json.target)?,
            quantity: number("quantity", &json.quantity)?,
            data_size,
            data_root: bytes("data_root", &json.data_root)?,
            reward: number("reward", &json.reward)?,
            signature: bytes("signature", &json.signature)?,
            data: bytes("data", &json.data)?,
        })
    }
}

/// A transaction on the wire. Gateways differ in small ways (numbers as strings or numbers,
/// null for empty), so reading is lenient and the signature check decides.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TxJson {
    pub format: serde_json::Value,
    pub id: String,
    #[serde(default, deserialize_with = "text_or_null")]
    pub last_tx: String,
    pub owner: String,
    #[serde(default, deserialize_with = "tags_or_null")]
    pub tags: Vec<TagJson>,
    #[serde(default, deserialize_with = "text_or_null")]
    pub target: String,
    #[serde(default)]
    pub quantity: NumberText,
    #[serde(default, deserialize_with = "text_or_null")]
    pub data: String,
    #[serde(default)]
    pub data_size: NumberText,
    #[serde(default, deserialize_with = "text_or_null")]
    pub data_root: String,
    #[serde(default)]
    pub reward: NumberText,
    pub signature: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TagJson {
    pub name: String,
    pub value: String,
}

/// A decimal number that may arrive as a JSON string, a number, or null.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct NumberText(pub String);

impl<'de> Deserialize<'de> for NumberText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::Null => Ok(NumberText(String::new())),
            serde_json::Value::String(s) => Ok(NumberText(s)),
            serde_json::Value::Number(n) => Ok(NumberText(n.to_string())),
            other => Err(serde::de::Error::custom(format!("expected a number, found {other}"))),
        }
    }
}

fn text_or_null<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.unwrap_or_default())
}

fn tags_or_null<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<TagJson>, D::Error> {
    // Some gateways store tags as a JSON string.
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Null => Ok(Vec::new()),
        serde_json::Value::String(s) => serde_json::from_str(&s).map_err(serde::de::Error::custom),
        other => serde_json::from_value(other).map_err(serde::de::Error::custom),
    }
}

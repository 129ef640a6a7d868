//! The canonical byte encoding. Everything hashed or signed is borsh; a batch travels as
//! `magic ‖ codec version ‖ zstd(borsh(SignedBatch))`. Decoding is strict: trailing bytes, an
//! unknown version and any non-canonical form are errors (docs/PROTOCOL.md).

use std::io::Read;

use borsh::{BorshDeserialize, BorshSerialize};

use crate::batch::SignedBatch;

/// The first bytes of an encoded batch.
pub const MAGIC: [u8; 4] = *b"BRBT";
/// The version of the envelope and of everything inside it.
pub const CODEC_VERSION: u16 = 2;
/// The name of this codec, as the Arweave `Codec` tag carries it.
pub const CODEC_NAME: &str = "bridge-batch-v1+zstd";
/// The largest decompressed batch accepted; bigger is refused before it is read.
pub const MAX_BATCH_BYTES: u64 = 64 << 20;
const ZSTD_LEVEL: i32 = 3;
/// The largest zstd window a decoder accepts (16 MiB); level 3 uses at most 2 MiB.
const ZSTD_MAX_WINDOW_LOG: u32 = 24;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("the data is too short to be an encoded batch")]
    TooShort,
    #[error("the data does not start with the batch magic bytes: it is not a batch")]
    BadMagic,
    #[error(
        "batch codec version {0} is not supported (this build reads version {CODEC_VERSION}); upgrade the software"
    )]
    UnsupportedVersion(u16),
    #[error("the batch does not decompress: {0}")]
    Decompress(String),
    #[error("the batch decompresses to more than {MAX_BATCH_BYTES} bytes")]
    TooLarge,
    #[error("the batch does not decode: {0}")]
    Decode(String),
    #[error("the bytes are not in canonical form: re-encoding gives different bytes")]
    NonCanonical,
}

/// Borsh bytes of a value. Writing to a `Vec` cannot fail, so neither can this.
pub fn to_bytes<T: BorshSerialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    #[allow(clippy::expect_used)]
    value.serialize(&mut out).expect("borsh writes to a Vec infallibly");
    out
}

/// Decodes borsh bytes strictly: all bytes consumed, and re-encoding gives them back exactly.
pub fn from_bytes<T: BorshSerialize + BorshDeserialize>(bytes: &[u8]) -> Result<T, CodecError> {
    let value: T = borsh::from_slice(bytes).map_err(|e| CodecError::Decode(e.to_string()))?;
    if to_bytes(&value) != bytes {
        return Err(CodecError::NonCanonical);
    }
    Ok(value)
}

pub fn encode_batch(batch: &SignedBatch) -> Vec<u8> {
    let raw = to_bytes(batch);
    let mut out = Vec::with_capacity(raw.len() / 2 + 8);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&CODEC_VERSION.to_le_bytes());
    #[allow(clippy::expect_used)]
    let compressed = zstd::bulk::compress(&raw, ZSTD_LEVEL).expect("zstd compresses in memory infallibly");
    out.extend_from_slice(&compressed);
    out
}

pub fn decode_batch(bytes: &[u8]) -> Result<SignedBatch, CodecError> {
    if bytes.len() < 6 {
        return Err(CodecError::TooShort);
    }
    if bytes[..4] != MAGIC {
        return Err(CodecError::BadMagic);
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != CODEC_VERSION {
        return Err(CodecError::UnsupportedVersion(version));
    }
    let mut decoder =
        zstd::stream::read::Decoder::new(&bytes[6..]).map_err(|e| CodecError::Decompress(e.to_string()))?;
    // A hostile frame may ask for a huge window; ours never need more than 2^21 bytes.
    decoder.window_log_max(ZSTD_MAX_WINDOW_LOG).map_err(|e| CodecError::Decompress(e.to_string()))?;
    let mut raw = Vec::new();
    decoder.take(MAX_BATCH_BYTES + 1).read_to_end(&mut raw).map_err(|e| CodecError::Decompress(e.to_string()))?;
    if raw.len() as u64 > MAX_BATCH_BYTES {
        return Err(CodecError::TooLarge);
    }
    from_bytes(&raw)
}

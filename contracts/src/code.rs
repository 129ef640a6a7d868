//! Is the code at an address the committed vault? The artifact holds the creation code only;
//! its runtime part is the creation code's tail, with zeros where the constructor writes the
//! `immutable` values (the guardian). Deployed code matches when every byte equals that tail
//! except 32-byte windows that are zero in the artifact and hold one of the given immutable
//! words on chain. Used by `contracts`' deploy command and by every role's preflight.

use alloy::primitives::Address;

/// Why deployed code is not the committed vault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeMismatch {
    #[error("there is no contract at the vault address (wrong address, or wrong chain?)")]
    NoCode,
    #[error("the deployed code is {deployed} bytes, longer than the committed artifact's {artifact}")]
    TooLong { deployed: usize, artifact: usize },
    #[error(
        "the deployed code differs from the committed artifact from byte {offset} of {len} \
         (another contract or another build of the vault)"
    )]
    Differs { offset: usize, len: usize },
}

/// The width of an EVM word, and so of an `immutable` slot in runtime code.
const WORD: usize = 32;

/// Whether `deployed` is the runtime part of `creation` with `immutables` (32-byte words)
/// written into zeroed slots.
pub fn runtime_matches(creation: &[u8], deployed: &[u8], immutables: &[[u8; WORD]]) -> Result<(), CodeMismatch> {
    if deployed.is_empty() {
        return Err(CodeMismatch::NoCode);
    }
    if deployed.len() > creation.len() {
        return Err(CodeMismatch::TooLong { deployed: deployed.len(), artifact: creation.len() });
    }
    let template = &creation[creation.len() - deployed.len()..];
    // Which bytes an immutable accounts for: a window zero in the template and equal to one of
    // the immutable words on chain.
    let mut masked = vec![false; deployed.len()];
    if deployed.len() >= WORD {
        for start in 0..=deployed.len() - WORD {
            let window = start..start + WORD;
            if template[window.clone()].iter().all(|b| *b == 0)
                && immutables.iter().any(|word| deployed[window.clone()] == word[..])
            {
                masked[window].iter_mut().for_each(|m| *m = true);
            }
        }
    }
    match (0..deployed.len()).find(|&i| !masked[i] && deployed[i] != template[i]) {
        None => Ok(()),
        Some(offset) => Err(CodeMismatch::Differs { offset, len: deployed.len() }),
    }
}

/// Whether `deployed` is the committed vault (`artifacts/Vault.json`) built with `guardian`.
pub fn verify_vault(deployed: &[u8], guardian: Address) -> Result<(), CodeMismatch> {
    let mut word = [0u8; WORD];
    word[WORD - 20..].copy_from_slice(guardian.as_slice());
    runtime_matches(&crate::Vault::BYTECODE, deployed, &[word])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(byte: u8) -> [u8; WORD] {
        let mut w = [0; WORD];
        w[WORD - 20..].fill(byte);
        w
    }

    /// Creation code `init ++ runtime` where the runtime has a zeroed immutable slot.
    fn creation() -> (Vec<u8>, Vec<u8>) {
        let mut runtime = vec![0x60, 0x80, 0x7f];
        runtime.extend_from_slice(&[0; WORD]);
        runtime.extend_from_slice(&[0x56, 0xfe, 0xa2]);
        let mut creation = vec![0x60, 0xa0, 0x39, 0xf3];
        creation.extend_from_slice(&runtime);
        (creation, runtime)
    }

    #[test]
    fn the_runtime_with_its_immutable_written_matches() {
        let (creation, mut runtime) = creation();
        runtime[3..3 + WORD].copy_from_slice(&word(0xab));
        assert_eq!(runtime_matches(&creation, &runtime, &[word(0xab)]), Ok(()));
    }

    #[test]
    fn another_immutable_value_or_a_changed_byte_differs() {
        let (creation, mut runtime) = creation();
        runtime[3..3 + WORD].copy_from_slice(&word(0xab));
        // A guardian the caller did not name: the window is not accounted for.
        assert!(matches!(runtime_matches(&creation, &runtime, &[word(0xcd)]), Err(CodeMismatch::Differs { .. })));
        let (creation, mut runtime) = self::creation();
        runtime[1] = 0x81;
        assert_eq!(runtime_matches(&creation, &runtime, &[]), Err(CodeMismatch::Differs { offset: 1, len: 38 }));
    }

    #[test]
    fn no_code_and_longer_code_are_refused() {
        let (creation, _) = creation();
        assert_eq!(runtime_matches(&creation, &[], &[]), Err(CodeMismatch::NoCode));
        let long = vec![0; creation.len() + 1];
        assert!(matches!(runtime_matches(&creation, &long, &[]), Err(CodeMismatch::TooLong { .. })));
    }
}

//! Arweave's deep hash: the SHA-384 structure hash that format-2 transactions sign. A blob is
//! hashed with its length under the tag "blob"; a list folds its items' deep hashes into an
//! accumulator seeded with its length under the tag "list".

use sha2::{Digest, Sha384};

/// One item of a deep-hashed structure.
#[derive(Debug, Clone, Copy)]
pub enum DeepHashItem<'a> {
    Blob(&'a [u8]),
    List(&'a [DeepHashItem<'a>]),
}

pub fn deep_hash(item: &DeepHashItem<'_>) -> [u8; 48] {
    match item {
        DeepHashItem::Blob(data) => {
            let tag = sha384(&[b"blob", data.len().to_string().as_bytes()]);
            sha384(&[&tag, &sha384(&[data])])
        }
        DeepHashItem::List(items) => {
            let mut acc = sha384(&[b"list", items.len().to_string().as_bytes()]);
            for child in *items {
                acc = sha384(&[&acc, &deep_hash(child)]);
            }
            acc
        }
    }
}

fn sha384(parts: &[&[u8]]) -> [u8; 48] {
    let mut hasher = Sha384::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_list_is_the_hash_of_its_tag() {
        assert_eq!(deep_hash(&DeepHashItem::List(&[])), sha384(&[b"list0"]));
    }

    #[test]
    fn nesting_changes_the_hash() {
        let flat = deep_hash(&DeepHashItem::List(&[DeepHashItem::Blob(b"a"), DeepHashItem::Blob(b"b")]));
        let inner = [DeepHashItem::Blob(b"a")];
        let nested = deep_hash(&DeepHashItem::List(&[DeepHashItem::List(&inner), DeepHashItem::Blob(b"b")]));
        assert_ne!(flat, nested);
    }
}

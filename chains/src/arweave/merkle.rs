//! The `data_root` of a transaction: data is cut into chunks of at most 256 KiB (the last two
//! rebalanced so that none is under 32 KiB, exactly as arweave-js cuts them), each chunk becomes
//! a leaf, and leaves are paired upwards, an odd node out being promoted unchanged. Each chunk
//! carries a `data_path` proof that `POST /chunk` needs.

use sha2::{Digest, Sha256};

pub const MAX_CHUNK_SIZE: usize = 256 * 1024;
pub const MIN_CHUNK_SIZE: usize = 32 * 1024;

/// One chunk of a transaction's data, with its proof against the data root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Byte range `start..end` of the data.
    pub start: usize,
    pub end: usize,
    /// `data_path`: the branch ids and byte ranges from the root down, then the leaf.
    pub data_path: Vec<u8>,
}

impl Chunk {
    /// The offset `POST /chunk` expects: the chunk's last byte.
    pub fn offset(&self) -> usize {
        self.end.saturating_sub(1)
    }
}

/// Data cut into chunks, with the root they prove against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedData {
    pub data_root: [u8; 32],
    pub chunks: Vec<Chunk>,
}

/// Chunks `data` and computes its root; `None` for empty data, whose `data_root` is empty.
pub fn chunk_data(data: &[u8]) -> Option<ChunkedData> {
    if data.is_empty() {
        return None;
    }
    let ranges = chunk_ranges(data.len());
    let leaves: Vec<Node> = ranges
        .iter()
        .map(|&(start, end)| {
            let data_hash = sha256(&[&data[start..end]]);
            Node::Leaf { id: sha256(&[&sha256(&[&data_hash]), &sha256(&[&note(end)])]), data_hash, end }
        })
        .collect();
    let root = build_layers(leaves)?;
    let mut paths = Vec::with_capacity(ranges.len());
    collect_paths(&root, Vec::new(), &mut paths);
    assert_eq!(paths.len(), ranges.len(), "every leaf has exactly one path");
    let mut chunks: Vec<Chunk> =
        ranges.into_iter().zip(paths).map(|((start, end), data_path)| Chunk { start, end, data_path }).collect();
    // Data that is a whole number of maximum chunks ends with an empty leaf: it counts in the
    // root (arweave-js builds it) but is never uploaded.
    if chunks.len() > 1 && chunks.last().is_some_and(|c| c.start == c.end) {
        chunks.pop();
    }
    Some(ChunkedData { data_root: root.id(), chunks })
}

/// The `data_root` of `data` (empty for empty data).
pub fn data_root(data: &[u8]) -> Vec<u8> {
    chunk_data(data).map(|c| c.data_root.to_vec()).unwrap_or_default()
}

fn chunk_ranges(len: usize) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut cursor = 0;
    while len - cursor >= MAX_CHUNK_SIZE {
        let rest = len - cursor;
        let mut size = MAX_CHUNK_SIZE;
        let next = rest - MAX_CHUNK_SIZE;
        if next > 0 && next < MIN_CHUNK_SIZE {
            size = rest.div_ceil(2);
        }
        ranges.push((cursor, cursor + size));
        cursor += size;
    }
    ranges.push((cursor, len));
    ranges
}

enum Node {
    Leaf { id: [u8; 32], data_hash: [u8; 32], end: usize },
    Branch { id: [u8; 32], split: usize, end: usize, left: Box<Node>, right: Box<Node> },
}

impl Node {
    fn id(&self) -> [u8; 32] {
        match self {
            Node::Leaf { id, .. } | Node::Branch { id, .. } => *id,
        }
    }

    fn end(&self) -> usize {
        match self {
            Node::Leaf { end, .. } | Node::Branch { end, .. } => *end,
        }
    }
}

fn build_layers(mut nodes: Vec<Node>) -> Option<Node> {
    while nodes.len() > 1 {
        let mut next = Vec::with_capacity(nodes.len().div_ceil(2));
        let mut iter = nodes.into_iter();
        while let Some(left) = iter.next() {
            match iter.next() {
                None => next.push(left),
                Some(right) => {
                    let split = left.end();
                    let id = sha256(&[&sha256(&[&left.id()]), &sha256(&[&right.id()]), &sha256(&[&note(split)])]);
                    next.push(Node::Branch {
                        id,
                        split,
                        end: right.end(),
                        left: Box::new(left),
                        right: Box::new(right),
                    });
                }
            }
        }
        nodes = next;
    }
    nodes.pop()
}

fn collect_paths(node: &Node, prefix: Vec<u8>, out: &mut Vec<Vec<u8>>) {
    match node {
        Node::Leaf { data_hash, end, .. } => {
            let mut path = prefix;
            path.extend_from_slice(data_hash);
            path.extend_from_slice(&note(*end));
            out.push(path);
        }
        Node::Branch { split, left, right, .. } => {
            let mut path = prefix;
            path.extend_from_slice(&left.id());
            path.extend_from_slice(&right.id());
            path.extend_from_slice(&note(*split));
            collect_paths(left, path.clone(), out);
            collect_paths(right, path, out);
        }
    }
}

/// A byte offset as the 32-byte big-endian "note" Arweave hashes.
fn note(value: usize) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[24..].copy_from_slice(&(value as u64).to_be_bytes());
    out
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// Checks a chunk's `data_path` against `data_root`: walks the branches, each choosing the side
/// that holds `offset`, and checks that the leaf's data hash is the chunk's. Returns the byte
/// range the proof assigns to the chunk.
pub fn verify_chunk(
    data_root: &[u8; 32],
    offset: usize,
    data_size: usize,
    data_path: &[u8],
    chunk: &[u8],
) -> Option<(usize, usize)> {
    let (mut expected, mut start, mut end, mut path) = (*data_root, 0usize, data_size, data_path);
    while path.len() > 64 {
        let (left, rest) = path.split_at(32);
        let (right, rest) = rest.split_at(32);
        let (split_note, rest) = rest.split_at(32);
        let split = note_value(split_note)?;
        if sha256(&[&sha256(&[left]), &sha256(&[right]), &sha256(&[split_note])]) != expected {
            return None;
        }
        if offset < split {
            expected = left.try_into().ok()?;
            end = end.min(split);
        } else {
            expected = right.try_into().ok()?;
            start = start.max(split);
        }
        path = rest;
    }
    if path.len() != 64 {
        return None;
    }
    let (data_hash, end_note) = path.split_at(32);
    let leaf_end = note_value(end_note)?;
    if sha256(&[&sha256(&[data_hash]), &sha256(&[end_note])]) != expected || sha256(&[chunk]) != data_hash {
        return None;
    }
    let leaf_start = leaf_end.checked_sub(chunk.len())?;
    (leaf_start >= start && leaf_end <= end).then_some((leaf_start, leaf_end))
}

fn note_value(note: &[u8]) -> Option<usize> {
    if note[..24].iter().any(|&b| b != 0) {
        return None;
    }
    usize::try_from(u64::from_be_bytes(note[24..].try_into().ok()?)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(len: usize) -> Vec<usize> {
        chunk_ranges(len).iter().map(|(s, e)| e - s).collect()
    }

    #[test]
    fn chunks_are_rebalanced_like_arweave_js() {
        assert_eq!(sizes(10), vec![10]);
        assert_eq!(sizes(MAX_CHUNK_SIZE), vec![MAX_CHUNK_SIZE, 0]);
        assert_eq!(sizes(MAX_CHUNK_SIZE + 1), vec![MAX_CHUNK_SIZE / 2 + 1, MAX_CHUNK_SIZE / 2]);
        assert_eq!(sizes(MAX_CHUNK_SIZE + MIN_CHUNK_SIZE), vec![MAX_CHUNK_SIZE, MIN_CHUNK_SIZE]);
    }

    #[test]
    fn every_chunk_proves_against_the_root() {
        for len in [1, 1000, MAX_CHUNK_SIZE, MAX_CHUNK_SIZE * 2, MAX_CHUNK_SIZE * 3 + 5, MAX_CHUNK_SIZE * 5 + 40_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let chunked = chunk_data(&data).unwrap();
            assert_eq!(chunked.chunks.last().unwrap().end, len);
            for chunk in &chunked.chunks {
                let range = verify_chunk(
                    &chunked.data_root,
                    chunk.offset(),
                    len,
                    &chunk.data_path,
                    &data[chunk.start..chunk.end],
                );
                assert_eq!(range, Some((chunk.start, chunk.end)), "len {len}");
                let mut bad = data[chunk.start..chunk.end].to_vec();
                bad[0] ^= 1;
                assert_eq!(verify_chunk(&chunked.data_root, chunk.offset(), len, &chunk.data_path, &bad), None);
            }
        }
    }
}

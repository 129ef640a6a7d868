//! Properties over random inputs: the codec round-trips and never panics, value is conserved,
//! refusals change nothing, and replay from genesis is deterministic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use bridge::batch::{BatchBuilder, replay};
use bridge::codec::{decode_batch, encode_batch, to_bytes};
use bridge::signature::{Authorization, EcdsaSignature};
use bridge::tx::{BatchTx, Deposit, L1Ref, SignedUserTx, SystemTx, Transfer, UserTx, Withdraw};
use bridge::withdrawals::BtcWithdrawals;
use bridge::{Address, Amount, AssetId, BatchHeader, Chain, SignedBatch, State, Tx, apply};
use common::*;
use proptest::prelude::*;

fn address() -> impl Strategy<Value = Address> {
    any::<[u8; 20]>().prop_map(Address)
}

fn asset() -> impl Strategy<Value = AssetId> {
    prop_oneof![Just(AssetId::Eth), Just(AssetId::Btc), address().prop_map(AssetId::Erc20)]
}

fn amount() -> impl Strategy<Value = Amount> {
    prop_oneof![any::<u128>(), 0u128..1_000_000].prop_map(Amount)
}

fn signature() -> impl Strategy<Value = EcdsaSignature> {
    (any::<[u8; 32]>(), any::<[u8; 32]>(), any::<bool>()).prop_map(|(r, s, y_parity)| EcdsaSignature { r, s, y_parity })
}

fn batch_tx() -> impl Strategy<Value = BatchTx> {
    let transfer = (address(), address(), asset(), amount(), amount(), any::<u64>()).prop_map(
        |(from, to, asset, amount, fee, nonce)| UserTx::Transfer(Transfer { from, to, asset, amount, fee, nonce }),
    );
    let withdraw = (address(), asset(), amount(), amount(), "[a-zA-Z0-9]{0,70}", any::<u64>()).prop_map(
        |(from, asset, amount, fee, recipient, nonce)| {
            UserTx::Withdraw(Withdraw { from, asset, amount, fee, recipient, nonce })
        },
    );
    let user = (prop_oneof![transfer, withdraw], signature()).prop_map(|(tx, signature)| {
        BatchTx::User(SignedUserTx { tx, auth: Authorization::Eip712Secp256k1 { signature } })
    });
    let l1_ref = prop_oneof![
        (any::<[u8; 32]>(), any::<u32>()).prop_map(|(tx_hash, log_in_tx)| L1Ref::Ethereum { tx_hash, log_in_tx }),
        (any::<[u8; 32]>(), any::<u32>()).prop_map(|(txid, vout)| L1Ref::Bitcoin { txid, vout }),
    ];
    let deposit = (l1_ref, address(), asset(), amount()).prop_map(|(l1_ref, account, asset, amount)| {
        BatchTx::System(SystemTx::Deposit(Deposit {
            chain: l1_ref.chain(),
            l1_ref,
            account,
            asset,
            amount,
            l1_height: 0,
        }))
    });
    prop_oneof![user, deposit]
}

fn signed_batch() -> impl Strategy<Value = SignedBatch> {
    (any::<[[u8; 32]; 5]>(), any::<(u64, u64, u32, u64)>(), prop::collection::vec(batch_tx(), 0..8), any::<[u8; 32]>())
        .prop_map(|(roots, (number, timestamp, count, total_sat), body, sig)| {
            let mut signature = [0u8; 64];
            signature[..32].copy_from_slice(&sig);
            SignedBatch {
                header: BatchHeader {
                    version: 1,
                    network: roots[0],
                    number,
                    prev_hash: roots[1],
                    timestamp,
                    tx_count: count,
                    txs_root: roots[2],
                    post_state_root: roots[3],
                    eth_withdrawals_root: roots[4],
                    btc_withdrawals: BtcWithdrawals { count, total_sat, digest: roots[0] },
                    forced: None,
                },
                signature,
                body,
                forced: Vec::new(),
            }
        })
}

/// One step of a random history, over a few accounts so that they interact.
#[derive(Debug, Clone)]
enum Op {
    Deposit { account: u8, asset: u8, amount: u128, l1: u8 },
    Transfer { from: u8, to: u8, asset: u8, amount: u128, fee: u128, nonce_skew: i8 },
    Withdraw { from: u8, asset: u8, amount: u128, fee: u128, nonce_skew: i8 },
}

fn op() -> impl Strategy<Value = Op> {
    let small = prop_oneof![0u128..2_000, Just(u128::MAX), Just(u128::MAX / 2)];
    let skew = prop_oneof![8 => Just(0i8), 1 => Just(-1i8), 1 => Just(1i8)];
    prop_oneof![
        (0u8..4, 0u8..3, small.clone(), 0u8..12).prop_map(|(account, asset, amount, l1)| Op::Deposit {
            account,
            asset,
            amount,
            l1
        }),
        (0u8..4, 0u8..4, 0u8..3, small.clone(), 0u128..20, skew.clone()).prop_map(
            |(from, to, asset, amount, fee, nonce_skew)| Op::Transfer { from, to, asset, amount, fee, nonce_skew }
        ),
        (0u8..4, 0u8..3, small, 0u128..20, skew).prop_map(|(from, asset, amount, fee, nonce_skew)| Op::Withdraw {
            from,
            asset,
            amount,
            fee,
            nonce_skew
        }),
    ]
}

fn asset_of(i: u8) -> AssetId {
    [AssetId::Eth, AssetId::Erc20(TOKEN), AssetId::Btc][i as usize]
}

fn to_tx(state: &State, op: &Op) -> Tx {
    let nonce = |from: u8, skew: i8| state.nonce(&wallet(from as u64).address()).saturating_add_signed(skew as i64);
    match *op {
        Op::Deposit { account, asset, amount, l1 } => {
            let asset = asset_of(asset);
            let l1_ref = match asset.chain() {
                Chain::Ethereum => L1Ref::Ethereum { tx_hash: [l1; 32], log_in_tx: 0 },
                Chain::Bitcoin => L1Ref::Bitcoin { txid: [l1; 32], vout: 0 },
            };
            let account = wallet(account as u64).address();
            Tx::System(SystemTx::Deposit(Deposit {
                chain: asset.chain(),
                l1_ref,
                account,
                asset,
                amount: Amount(amount),
                l1_height: 0,
            }))
        }
        Op::Transfer { from, to, asset, amount, fee, nonce_skew } => transfer(
            &wallet(from as u64),
            wallet(to as u64).address(),
            asset_of(asset),
            amount,
            fee,
            nonce(from, nonce_skew),
        ),
        Op::Withdraw { from, asset, amount, fee, nonce_skew } => {
            let asset = asset_of(asset);
            let recipient = match asset.chain() {
                Chain::Ethereum => wallet(7).address().to_string(),
                Chain::Bitcoin => REGTEST_P2TR.to_string(),
            };
            withdraw(&wallet(from as u64), asset, amount, fee, &recipient, nonce(from, nonce_skew))
        }
    }
}

/// Conservation checked from outside the ledger: for each asset, the balances of every account
/// (fee account included) plus what was withdrawn equal what was deposited.
fn assert_conserved(state: &State, deposited: &[u128; 3], withdrawn: &[u128; 3]) {
    for (i, asset) in (0..3).map(|i| (i, asset_of(i as u8))) {
        let mut held: u128 = (0..4).map(|a| state.balance(&wallet(a).address(), &asset).units()).sum();
        held += state.balance(&fee_account(), &asset).units();
        assert_eq!(held.checked_add(withdrawn[i]), Some(deposited[i]), "conservation of {asset}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn decode_inverts_encode(batch in signed_batch()) {
        prop_assert_eq!(decode_batch(&encode_batch(&batch)).unwrap(), batch.clone());
        prop_assert_eq!(bridge::codec::from_bytes::<SignedBatch>(&to_bytes(&batch)).unwrap(), batch);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_batch(&bytes);
        // Past the envelope, so the borsh decoder sees the bytes too.
        let mut framed = bridge::codec::MAGIC.to_vec();
        framed.extend(bridge::codec::CODEC_VERSION.to_le_bytes());
        framed.extend(zstd::bulk::compress(&bytes, 1).unwrap());
        let _ = decode_batch(&framed);
        let _ = bridge::codec::from_bytes::<SignedBatch>(&bytes);
    }

    #[test]
    fn mutated_encodings_never_panic(batch in signed_batch(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut raw = to_bytes(&batch);
        let i = at.index(raw.len());
        raw[i] = byte;
        let _ = bridge::codec::from_bytes::<SignedBatch>(&raw);
    }

    #[test]
    fn value_is_conserved_and_refusals_change_nothing(ops in prop::collection::vec(op(), 1..60)) {
        let mut state = genesis();
        let mut deposited = [0u128; 3];
        let mut withdrawn = [0u128; 3];
        for op in &ops {
            let tx = to_tx(&state, op);
            let before = state.fingerprint();
            match apply(&mut state, &tx) {
                Ok(receipt) => {
                    match (op, &receipt.effect) {
                        (Op::Deposit { asset, amount, .. }, _) => deposited[*asset as usize] += amount,
                        // A Bitcoin withdrawal's fee leaves with it, to pay the miners.
                        (Op::Withdraw { asset: 2, amount, fee, .. }, _) => withdrawn[2] += amount + fee,
                        (Op::Withdraw { asset, amount, .. }, _) => withdrawn[*asset as usize] += amount,
                        _ => {}
                    }
                }
                Err(_) => prop_assert_eq!(state.fingerprint(), before),
            }
            assert_conserved(&state, &deposited, &withdrawn);
        }
    }

    #[test]
    fn replay_from_genesis_is_deterministic(ops in prop::collection::vec(op(), 1..80), cuts in prop::collection::vec(1usize..20, 1..6)) {
        let key = coordinator_key();
        let mut coordinator = genesis();
        let mut batches = Vec::new();
        let mut ops = ops.into_iter();
        for (n, cut) in cuts.into_iter().enumerate() {
            let mut builder = BatchBuilder::new(&coordinator);
            for op in ops.by_ref().take(cut) {
                let tx = to_tx(&coordinator, &op);
                let _ = builder.apply(&mut coordinator, tx);
            }
            batches.push(builder.seal(&mut coordinator, n as u64, &key).unwrap().batch);
        }
        for _ in 0..2 {
            let mut follower = genesis();
            for batch in &batches {
                replay(&mut follower, &decode_batch(&encode_batch(batch)).unwrap()).unwrap();
            }
            prop_assert_eq!(follower.state_root(), coordinator.state_root());
            prop_assert_eq!(follower.fingerprint(), coordinator.fingerprint());
        }
    }
}

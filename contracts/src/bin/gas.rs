//! The vault's gas table, from anvil receipts: `cargo run --release -p contracts --bin gas`.
//! Prints a Markdown table (the README quotes it).

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use bridge::eth_settlement::withdrawals_message;
use bridge::withdrawals::{EthWithdrawal, EthWithdrawalTree};
use bridge::{Address as BridgeAddress, Amount};
use contracts::bench::{Bip340, Bip340Gas};
use contracts::harness::{Setup, payouts, withdrawn};
use contracts::{TestToken, from_alloy, group_key, sign, to_alloy};

const BATCH_SIZES: [usize; 3] = [1, 10, 100];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Asset {
    Eth,
    Erc20,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let setup = Setup::new().await?;
    let mut rows: Vec<(String, String, String)> = Vec::new();

    // The BIP-340 check alone, measured inside the EVM (gasleft() before and after), and the
    // whole transaction that carries it.
    let bench = Bip340Gas::deploy(setup.provider.clone()).await?;
    let message = [0x5a; 32];
    let sig = sign(&setup.key, message);
    let sig = Bip340::Signature { r: sig.r, ry: sig.ry, s: sig.s };
    let receipt = bench.measure(group_key(&setup.key), B256::from(message), sig).send().await?.get_receipt().await?;
    let measured = receipt.decoded_log::<Bip340Gas::Measured>().ok_or_else(|| anyhow::anyhow!("no Measured event"))?;
    anyhow::ensure!(measured.valid, "the benchmark signature must verify");
    rows.push(("BIP-340 check alone (in the EVM)".into(), measured.gasUsed.to_string(), "goal < 10,000".into()));
    rows.push((
        "BIP-340 check, whole transaction".into(),
        receipt.gas_used.to_string(),
        "incl. 21,000 base + calldata".into(),
    ));

    // Fund the vault with ether and a test token.
    let token = TestToken::deploy(setup.provider.clone()).await?;
    token.mint(setup.deployer, U256::from(u128::MAX)).send().await?.get_receipt().await?;
    token.approve(setup.vault_address(), U256::MAX).send().await?.get_receipt().await?;
    setup
        .vault
        .depositERC20(*token.address(), U256::from(1u128 << 100), Address::ZERO)
        .send()
        .await?
        .get_receipt()
        .await?;
    setup
        .vault
        .depositETH(Address::ZERO)
        .value(U256::from(100u128 * 10u128.pow(18)))
        .send()
        .await?
        .get_receipt()
        .await?;

    let mut batch = 0u64;
    let mut recipient_seed = 1u32;
    let mut submit_gas = 0;
    for asset in [Asset::Eth, Asset::Erc20] {
        for existing in [true, false] {
            for size in BATCH_SIZES {
                batch += 1;
                let token_address = match asset {
                    Asset::Eth => BridgeAddress::ZERO,
                    Asset::Erc20 => from_alloy(*token.address()),
                };
                let withdrawals: Vec<EthWithdrawal> = (0..size)
                    .map(|i| {
                        recipient_seed += 1;
                        let mut recipient = [0x99u8; 20];
                        recipient[..4].copy_from_slice(&recipient_seed.to_be_bytes());
                        EthWithdrawal {
                            batch,
                            index: i as u32,
                            token: token_address,
                            recipient: BridgeAddress(recipient),
                            amount: Amount(1_000_000 + i as u128),
                        }
                    })
                    .collect();
                if existing {
                    // Recipients that already hold ether (or the token): the common case.
                    for w in &withdrawals {
                        let who = to_alloy(w.recipient);
                        match asset {
                            Asset::Eth => {
                                let _: serde_json::Value =
                                    setup.provider.raw_request("anvil_setBalance".into(), (who, U256::from(1))).await?;
                            }
                            Asset::Erc20 => {
                                token.transfer(who, U256::from(1)).send().await?.get_receipt().await?;
                            }
                        }
                    }
                }
                let tree = EthWithdrawalTree::new(withdrawals);
                let root = tree.root();
                let sig = sign(&setup.key, withdrawals_message(&setup.domain(0), batch, batch, root));
                let receipt = setup
                    .vault
                    .submitWithdrawals(batch, batch, B256::from(root), sig)
                    .send()
                    .await?
                    .get_receipt()
                    .await?;
                submit_gas = receipt.gas_used;
                let all = payouts(&tree, 0..size as u32);
                let range = setup.vault.rangeCount().call().await? - 1;
                let receipt = setup.vault.withdrawMany(range, all).send().await?.get_receipt().await?;
                anyhow::ensure!(receipt.status(), "withdrawMany reverted");
                let name = match asset {
                    Asset::Eth => "ETH",
                    Asset::Erc20 => "ERC-20",
                };
                let to = if existing { "existing accounts" } else { "new accounts" };
                rows.push((
                    format!("withdrawMany, {name} to {to}, batch of {size}"),
                    format!("{} / payout", receipt.gas_used / size as u64),
                    format!("tx {}", receipt.gas_used),
                ));
            }
        }
    }
    // One recipient among ten burns every unit of gas it gets: the batch is still paid, and
    // that recipient costs at most its PAYOUT_GAS stipend more.
    let burner = contracts::recipients::GasBurner::deploy(setup.provider.clone()).await?;
    batch += 1;
    let withdrawals: Vec<EthWithdrawal> = (0..10u32)
        .map(|i| {
            let recipient = if i == 0 { from_alloy(*burner.address()) } else { BridgeAddress([0x40 + i as u8; 20]) };
            EthWithdrawal { batch, index: i, token: BridgeAddress::ZERO, recipient, amount: Amount(1_000_000) }
        })
        .collect();
    for w in withdrawals.iter().skip(1) {
        let _: serde_json::Value =
            setup.provider.raw_request("anvil_setBalance".into(), (to_alloy(w.recipient), U256::from(1))).await?;
    }
    let tree = EthWithdrawalTree::new(withdrawals);
    let sig = sign(&setup.key, withdrawals_message(&setup.domain(0), batch, batch, tree.root()));
    setup.vault.submitWithdrawals(batch, batch, B256::from(tree.root()), sig).send().await?.get_receipt().await?;
    let range = setup.vault.rangeCount().call().await? - 1;
    let receipt = setup.vault.withdrawMany(range, payouts(&tree, 0..10)).send().await?.get_receipt().await?;
    anyhow::ensure!(receipt.status(), "withdrawMany reverted");
    rows.push((
        "withdrawMany, ETH, batch of 10, one recipient burning all its gas".into(),
        format!("{} / payout", receipt.gas_used / 10),
        format!("tx {} (9 paid, 1 reported unpaid)", receipt.gas_used),
    ));
    rows.insert(
        2,
        ("submitWithdrawals (a range of one batch)".into(), submit_gas.to_string(), "whole transaction".into()),
    );

    // A busy network: a batch a second, one ETH withdrawal to an existing account in each, and
    // one range root per 30 s window (the devnet's default), sent with its payouts in one
    // `submitAndWithdraw` as the watchmen do. Each withdrawal's gas is its share of the window's
    // transaction, over three windows in a row (so the paid bitmap's fresh words, one per 256
    // batches, are counted as they come).
    const WINDOW_BATCHES: u64 = 30;
    const WINDOWS: u64 = 3;
    let mut total = 0u64;
    for _ in 0..WINDOWS {
        let first = batch + 1;
        let withdrawals: Vec<EthWithdrawal> = (0..WINDOW_BATCHES)
            .map(|i| {
                recipient_seed += 1;
                let mut recipient = [0x77u8; 20];
                recipient[..4].copy_from_slice(&recipient_seed.to_be_bytes());
                EthWithdrawal {
                    batch: first + i,
                    index: 0,
                    token: BridgeAddress::ZERO,
                    recipient: BridgeAddress(recipient),
                    amount: Amount(1_000_000),
                }
            })
            .collect();
        for w in &withdrawals {
            let _: serde_json::Value =
                setup.provider.raw_request("anvil_setBalance".into(), (to_alloy(w.recipient), U256::from(1))).await?;
        }
        batch = first + WINDOW_BATCHES - 1;
        let tree = EthWithdrawalTree::new(withdrawals);
        let sig = sign(&setup.key, withdrawals_message(&setup.domain(0), first, batch, tree.root()));
        let all = payouts(&tree, 0..WINDOW_BATCHES as u32);
        let receipt = setup
            .vault
            .submitAndWithdraw(first, batch, B256::from(tree.root()), sig, all)
            .send()
            .await?
            .get_receipt()
            .await?;
        anyhow::ensure!(receipt.status(), "submitAndWithdraw reverted");
        anyhow::ensure!(withdrawn(&receipt) == WINDOW_BATCHES as usize, "not every leaf was paid");
        total += receipt.gas_used;
    }
    let leaves = WINDOW_BATCHES * WINDOWS;
    rows.push((
        format!(
            "gas per withdrawal including its share of the root, one withdrawal per batch, a batch a second ({WINDOW_BATCHES} s window, ETH to existing accounts)"
        ),
        format!("{} / withdrawal", total / leaves),
        format!("goal <= 30,000; {WINDOWS} windows: submitAndWithdraw {} per range (root and payouts in one transaction)", total / WINDOWS),
    ));

    println!("| what | gas | note |");
    println!("|---|---:|---|");
    for (what, gas, note) in rows {
        println!("| {what} | {gas} | {note} |");
    }
    Ok(())
}

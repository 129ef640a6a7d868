//! The Ethereum vault: alloy bindings generated from the committed artifacts
//! (`contracts/artifacts/*.json`, built from `contracts/sol` by `contracts/build.sh`), and the
//! helpers tests, the benchmark and `chains::ethereum` share: an anvil per test and BIP-340
//! signatures in the form the vault takes.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::{Provider, ProviderBuilder};
use anyhow::{Context, bail};
use bridge::eth_settlement::EvmSchnorrSignature;
use bridge::withdrawals::EthWithdrawalTree;
use secp256k1::{Keypair, Message, SECP256K1};

pub mod code;

/// The vault's bindings (with the `Bip340` types its ABI names).
#[allow(clippy::too_many_arguments)] // `withdraw` takes a range, the leaf's five fields and its proof
mod vault_bindings {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        Vault,
        "artifacts/Vault.json"
    );
}
pub use vault_bindings::*;

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    TestToken,
    "artifacts/TestToken.json"
);

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    FeeToken,
    "artifacts/FeeToken.json"
);

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    BlacklistToken,
    "artifacts/BlacklistToken.json"
);

/// Misbehaving withdrawal recipients, for the tests that prove one cannot stop the others.
pub mod recipients {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        RevertingRecipient,
        "artifacts/RevertingRecipient.json"
    );

    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        GasBurner,
        "artifacts/GasBurner.json"
    );

    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        ReturnBomb,
        "artifacts/ReturnBomb.json"
    );
}

/// The gas harness of the BIP-340 check (its `Bip340` types are its own).
pub mod bench {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        Bip340Gas,
        "artifacts/Bip340Gas.json"
    );
}

/// The vault's signature argument, from the bridge's form of a BIP-340 signature.
pub fn vault_signature(sig: &EvmSchnorrSignature) -> Bip340::Signature {
    Bip340::Signature { r: U256::from_be_bytes(sig.r), ry: U256::from_be_bytes(sig.ry), s: U256::from_be_bytes(sig.s) }
}

/// Signs `message` with BIP-340 (what a FROST group signature is) and puts it in the vault's form.
pub fn sign(key: &Keypair, message: [u8; 32]) -> Bip340::Signature {
    let sig = SECP256K1.sign_schnorr_no_aux_rand(&Message::from_digest(message), key);
    let evm = EvmSchnorrSignature::from_bip340(&sig.serialize());
    // A valid signature's r is always the x of a curve point.
    #[allow(clippy::expect_used)]
    vault_signature(&evm.expect("a BIP-340 signature's r is on the curve"))
}

/// The x-only public key as the vault stores it.
pub fn group_key(key: &Keypair) -> U256 {
    U256::from_be_bytes(key.x_only_public_key().0.serialize())
}

/// The bridge's address type as alloy's.
pub fn to_alloy(address: bridge::Address) -> Address {
    Address::from(address.0)
}

pub fn from_alloy(address: Address) -> bridge::Address {
    bridge::Address(address.0.0)
}

/// The pinned tools directory (`ops/tools/node_modules/.bin`).
pub fn tools_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ops/tools/node_modules/.bin")
}

/// The first of anvil's default accounts, funded with 10,000 ether.
pub const ANVIL_KEY_0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// The second default account.
pub const ANVIL_KEY_1: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// An anvil node on a free port, killed when dropped.
#[derive(Debug)]
pub struct Anvil {
    child: tokio::process::Child,
    pub port: u16,
}

impl Anvil {
    /// Starts `anvil --port P --silent` from ops/tools (extra `args` appended) and waits until
    /// it answers.
    pub async fn start(args: &[&str]) -> anyhow::Result<Anvil> {
        let mut last = None;
        for _ in 0..5 {
            // Held until anvil answers: a port picked and released could be picked by another
            // test's anvil too, and then one test talks to the other's node until it is killed.
            let mut hold = loopback::PortHold::new();
            let port = hold.any()?;
            // anvil runs under a small shell that kills it when its stdin closes: when this
            // `Anvil` is dropped, and also when the test process dies without dropping it.
            let child = tokio::process::Command::new("bash")
                .arg("-c")
                .arg(r#"anvil="$1"; shift; "$anvil" "$@" & pid=$!; cat >/dev/null; kill "$pid" 2>/dev/null; wait"#)
                .arg("anvil-watchdog")
                .arg(tools_bin().join("anvil"))
                .arg("--port")
                .arg(port.to_string())
                .arg("--silent")
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting anvil from ops/tools (run ops/tools/install.sh)")?;
            let mut anvil = Anvil { child, port };
            let ready = anvil.wait_ready().await;
            drop(hold);
            match ready {
                Ok(()) => return Ok(anvil),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("anvil did not start")))
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let provider = ProviderBuilder::new().connect_http(self.url().parse()?);
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait()? {
                bail!("anvil exited with {status}");
            }
            if provider.get_chain_id().await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("anvil did not answer on port {} within 10 s", self.port)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        // Closing the shell's stdin makes it kill anvil and exit.
        drop(self.child.stdin.take());
    }
}

/// A bytes32 of a 32-byte array.
pub fn b256(bytes: [u8; 32]) -> B256 {
    B256::from(bytes)
}

/// The vault's call arguments for the leaves at `positions` of `tree` (a range's tree; in one
/// batch's tree a position is the leaf's index).
pub fn payouts(tree: &EthWithdrawalTree, positions: impl IntoIterator<Item = u32>) -> Vec<Vault::Payout> {
    positions
        .into_iter()
        .filter_map(|i| {
            let w = tree.withdrawals().get(i as usize)?;
            Some(Vault::Payout {
                batch: w.batch,
                index: w.index,
                token: to_alloy(w.token),
                recipient: to_alloy(w.recipient),
                amount: U256::from(w.amount.0),
                proof: tree.proof(i)?.into_iter().map(b256).collect(),
            })
        })
        .collect()
}

/// A vault deployed on a fresh anvil, for tests and the benchmark.
pub mod harness {
    use alloy::network::EthereumWallet;
    use alloy::primitives::{Address, U256};
    use alloy::providers::{DynProvider, Provider, ProviderBuilder};
    use alloy::rpc::types::TransactionReceipt;
    use alloy::signers::local::PrivateKeySigner;
    use anyhow::{Context, ensure};
    use bridge::eth_settlement::{VaultDomain, withdrawals_message};
    use bridge::withdrawals::EthWithdrawalTree;
    use secp256k1::{Keypair, SECP256K1, SecretKey};

    pub use super::payouts;
    use super::{ANVIL_KEY_0, ANVIL_KEY_1, Anvil, Vault, b256, from_alloy, group_key, sign};

    pub type VaultContract = Vault::VaultInstance<DynProvider>;

    /// A test group key from a seed byte.
    pub fn keypair(seed: u8) -> Keypair {
        #[allow(clippy::expect_used)]
        let secret = SecretKey::from_slice(&[seed.max(1); 32]).expect("a nonzero scalar below n");
        Keypair::from_secret_key(SECP256K1, &secret)
    }

    /// A provider that signs with `key` (hex private key). Nonces are read from the node for
    /// each transaction (not cached), so several providers may sign for one account and a
    /// reorg that drops transactions does not leave a gap.
    pub fn signing_provider(url: &str, key: &str) -> anyhow::Result<DynProvider> {
        let signer: PrivateKeySigner = key.parse()?;
        Ok(ProviderBuilder::default()
            .with_gas_estimation()
            .with_simple_nonce_management()
            .fetch_chain_id()
            .wallet(EthereumWallet::from(signer))
            .connect_http(url.parse()?)
            .erased())
    }

    #[derive(Debug)]
    pub struct Setup {
        pub anvil: Anvil,
        /// Signs as anvil's account 0, which deployed the vault.
        pub provider: DynProvider,
        /// Signs as anvil's account 1, the guardian.
        pub guardian: DynProvider,
        pub vault: VaultContract,
        pub key: Keypair,
        pub chain_id: u64,
        pub deployer: Address,
    }

    impl Setup {
        pub async fn new() -> anyhow::Result<Setup> {
            Self::with_anvil(Anvil::start(&[]).await?).await
        }

        pub async fn with_anvil(anvil: Anvil) -> anyhow::Result<Setup> {
            let provider = signing_provider(&anvil.url(), ANVIL_KEY_0)?;
            let guardian = signing_provider(&anvil.url(), ANVIL_KEY_1)?;
            let guardian_address = ANVIL_KEY_1.parse::<PrivateKeySigner>()?.address();
            let deployer = ANVIL_KEY_0.parse::<PrivateKeySigner>()?.address();
            let key = keypair(7);
            let vault = Vault::deploy(provider.clone(), group_key(&key), guardian_address).await?;
            let chain_id = provider.get_chain_id().await?;
            Ok(Setup { anvil, provider, guardian, vault, key, chain_id, deployer })
        }

        pub fn vault_address(&self) -> Address {
            *self.vault.address()
        }

        pub fn domain(&self, epoch: u64) -> VaultDomain {
            VaultDomain { chain_id: self.chain_id, vault: from_alloy(self.vault_address()), epoch }
        }

        /// Submits `tree`'s root for the range of batches from the one after the vault's
        /// `settledThrough` to `last`, signed by the current key at epoch `epoch`; returns the
        /// range's number.
        pub async fn submit(&self, last: u64, tree: &EthWithdrawalTree, epoch: u64) -> anyhow::Result<u64> {
            let first = self.vault.settledThrough().call().await? + 1;
            self.submit_range(first, last, tree, epoch).await?;
            Ok(self.vault.rangeCount().call().await? - 1)
        }

        /// Submits `tree`'s root for the range of batches `first..=last`, signed by the current
        /// key at epoch `epoch`.
        pub async fn submit_range(
            &self,
            first: u64,
            last: u64,
            tree: &EthWithdrawalTree,
            epoch: u64,
        ) -> anyhow::Result<TransactionReceipt> {
            let message = withdrawals_message(&self.domain(epoch), first, last, tree.root());
            let sig = sign(&self.key, message);
            let receipt =
                self.vault.submitWithdrawals(first, last, b256(tree.root()), sig).send().await?.get_receipt().await?;
            ensure!(receipt.status(), "submitWithdrawals reverted");
            Ok(receipt)
        }

        /// Submits `tree`'s root for the batches after the vault's last one through `last` (as
        /// [`Setup::submit`]) and pays its leaves at `positions` in one `withdrawMany`.
        pub async fn pay(
            &self,
            last: u64,
            tree: &EthWithdrawalTree,
            positions: impl IntoIterator<Item = u32>,
        ) -> anyhow::Result<TransactionReceipt> {
            let range = self.submit(last, tree, 0).await?;
            let receipt = self.vault.withdrawMany(range, payouts(tree, positions)).send().await?.get_receipt().await?;
            ensure!(receipt.status(), "withdrawMany reverted");
            Ok(receipt)
        }

        /// Deposits `wei` of ether to the vault for `account`, from anvil's account 0.
        pub async fn deposit_eth(&self, account: Address, wei: u128) -> anyhow::Result<TransactionReceipt> {
            let receipt = self.vault.depositETH(account).value(U256::from(wei)).send().await?.get_receipt().await?;
            ensure!(receipt.status(), "depositETH reverted");
            Ok(receipt)
        }

        pub async fn balance(&self, who: Address) -> anyhow::Result<U256> {
            self.provider.get_balance(who).await.context("eth_getBalance")
        }
    }

    /// How many leaves a payout transaction paid: its `Withdrawn` events.
    pub fn withdrawn(receipt: &TransactionReceipt) -> usize {
        receipt.inner.logs().iter().filter(|log| log.log_decode::<Vault::Withdrawn>().is_ok()).count()
    }

    /// The custom error a vault call reverted with, if it did.
    pub fn vault_error(error: &alloy::contract::Error) -> Option<Vault::VaultErrors> {
        error.as_decoded_interface_error::<Vault::VaultErrors>()
    }
}

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    Spoofer,
    "artifacts/Spoofer.json"
);

//! The Ethereum settlement tests' start: three watchmen's key shares from a 2-of-3 DKG over
//! libp2p, the vault deployed on anvil with their group key, a coordinator watching it, and one
//! user whose deposit of 1,000,000 wei the coordinator has credited.

use std::path::Path;
use std::sync::Arc;

use alloy::primitives::{Address as EthAddress, U256};
use alloy::providers::Provider;
use bridge::eth_settlement::VaultDomain;
use bridge::{AssetId, NetworkParams, Wallet};
use chains::da::DirDa;
use chains::ethereum::EthDepositVerifier;
use confirmer::deposits::DepositVerifiers;
use confirmer::follower::Follower;
use confirmer::store::ConfirmerStore;
use contracts::{Vault, from_alloy, to_alloy};
use coordinator::node::Node;
use tss::GroupKey;

use super::coordinator_api::{balance, until};
use super::{coordinator_watching, dkg, params, wallet};

/// The user's credited deposit, in wei.
pub const DEPOSIT: u128 = 1_000_000;

pub struct EthGroup {
    pub identities: Vec<libp2p::identity::Keypair>,
    pub shares: Vec<tss::KeyShare>,
    pub setup: contracts::harness::Setup,
    pub vault_address: EthAddress,
    pub domain: VaultDomain,
    /// The network, with the vault's address and anvil's chain id.
    pub params: NetworkParams,
    /// The coordinator's data (its DA directory is `da` in it).
    pub dir: tempfile::TempDir,
    pub coordinator: Node,
    pub user: Wallet,
}

impl EthGroup {
    pub async fn start() -> EthGroup {
        let identities: Vec<_> = (0..3).map(|_| libp2p::identity::Keypair::generate_ed25519()).collect();
        let shares = dkg(&identities).await;
        let group = GroupKey::of(&shares[0].public).unwrap();
        let setup = contracts::harness::Setup::new().await.unwrap();
        let vault =
            Vault::deploy(setup.provider.clone(), U256::from_be_bytes(group.output_key), setup.deployer).await.unwrap();
        let vault_address = *vault.address();
        let domain = VaultDomain { chain_id: setup.chain_id, vault: from_alloy(vault_address), epoch: 0 };
        let dir = tempfile::tempdir().unwrap();
        let mut params = params();
        params.eth_vault = from_alloy(vault_address);
        params.chain_id = setup.chain_id;
        let coordinator = Node::start(&coordinator_watching(dir.path(), &params, setup.anvil.url())).await.unwrap();
        let user = wallet(1);
        vault
            .depositETH(to_alloy(user.address()))
            .value(U256::from(DEPOSIT))
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        let _: serde_json::Value = setup.provider.raw_request("anvil_mine".into(), (2,)).await.unwrap();
        until("the deposit credited", async || {
            (balance(&coordinator, user.address(), AssetId::Eth).await == DEPOSIT).then_some(())
        })
        .await;
        EthGroup { identities, shares, setup, vault_address, domain, params, dir, coordinator, user }
    }

    /// The vault's binding, on the deployer's provider.
    pub fn vault(&self) -> contracts::harness::VaultContract {
        Vault::new(self.vault_address, self.setup.provider.clone())
    }
}

/// Watchman `i`'s follower as the settlement tests start it: the batches published in `da`, its
/// own SQLite record `w{i}.db` in `dir`, and deposits checked against the anvil at `anvil` at
/// depth 1.
pub async fn watchman_follower(da: &Path, dir: &Path, i: usize, params: &NetworkParams, anvil: &str) -> Follower {
    let da = DirDa::open(da, params.coordinator_key).unwrap();
    let store = ConfirmerStore::open(&format!("sqlite://{}", dir.join(format!("w{i}.db")).display())).await.unwrap();
    let verifier = EthDepositVerifier::connect(
        anvil,
        &Default::default(),
        params.eth_vault,
        chains::ethereum::Confirmation::Depth(1),
    )
    .unwrap();
    let verifiers = DepositVerifiers::none().with(bridge::Chain::Ethereum, Arc::new(verifier));
    Follower::open(Arc::new(da), store, params.clone(), verifiers).await.unwrap()
}

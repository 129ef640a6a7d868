#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The mesh admits only allow-listed watchmen; refresh keeps the key and retires old shares.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Cluster, Member, identities, request, start_member, verify_bip340};
use tss::frost;
use tss::mesh::MeshError;
use tss::messages::Request;
use tss::{GroupKey, SessionId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_not_on_the_allow_list_cannot_connect() {
    let cluster = Cluster::start(3, 2, |_| Member::honest()).await;
    let insiders: BTreeSet<_> = cluster.entries.iter().skip(1).map(|e| e.peer_id).collect();
    cluster.node(0).mesh().wait_for(&insiders, Duration::from_secs(20), |_, _| {}).await.unwrap();

    // An outsider lists watchman 0 as its peer and dials it; watchman 0 does not list it.
    let (outsider_keys, mut outsider_entries) = identities(1);
    outsider_entries.push(cluster.entries[0].clone());
    let outsider = start_member(outsider_keys[0].clone(), &outsider_entries, 0, 2, Member::honest()).await;
    let target = cluster.entries[0].peer_id;
    let ask = outsider.mesh().request(target, Request::Commit { session: SessionId::random(), count: 1 }).await;
    assert!(matches!(ask, Err(MeshError::Request { .. })), "{ask:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!cluster.node(0).mesh().connected().contains(&outsider.peer_id()));
    assert!(!outsider.mesh().connected().contains(&target));

    // And watchman 0 will not send to it either.
    let back = cluster
        .node(0)
        .mesh()
        .request(outsider.peer_id(), Request::Commit { session: SessionId::random(), count: 1 })
        .await;
    assert!(matches!(back, Err(MeshError::NotAllowed(_))), "{back:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_gives_new_shares_of_the_same_key_and_old_shares_no_longer_combine_with_new() {
    let cluster = Cluster::start(5, 3, |_| Member::honest()).await;
    let old = cluster.dkg().await;
    let group = GroupKey::of(&old[0].public).unwrap();

    let session = SessionId::random();
    let runs = cluster.nodes.iter().flatten().map(|n| n.refresh(session, Duration::from_secs(60), |_| {}));
    let new: Vec<_> = futures::future::join_all(runs).await.into_iter().map(|r| r.unwrap()).collect();
    for (old, new) in old.iter().zip(&new) {
        assert_eq!(GroupKey::of(&new.public).unwrap(), group, "the group key survives a refresh");
        assert_ne!(old.key_package.signing_share(), new.key_package.signing_share(), "every share changed");
    }

    // The mesh signs with the new shares.
    let outcome = cluster.node(1).sign(vec![request([4; 32])]).await.unwrap();
    assert!(verify_bip340(&outcome.signatures[0].signature, &[4; 32], &group.output_key));

    // Two new shares and one old one make no valid signature.
    let mixed = [&new[0], &new[1], &old[2]];
    let mut nonces = Vec::new();
    let mut commitments = std::collections::BTreeMap::new();
    for share in mixed {
        let (n, c) = frost::round1::commit(share.key_package.signing_share(), &mut rand_core::OsRng);
        nonces.push(n);
        commitments.insert(share.identifier(), c);
    }
    let package = frost::SigningPackage::new(commitments, b"mixed shares");
    let mut shares = std::collections::BTreeMap::new();
    for (share, nonce) in mixed.iter().zip(&nonces) {
        shares.insert(
            share.identifier(),
            frost::round2::sign_with_tweak(&package, nonce, &share.key_package, None).unwrap(),
        );
    }
    let combined = frost::aggregate_with_tweak(&package, &shares, &new[0].public, None);
    assert!(combined.is_err(), "an old share combined with new ones");
    // The same with three new shares works, so the failure is the old share's.
    let (n, c) = frost::round1::commit(new[2].key_package.signing_share(), &mut rand_core::OsRng);
    let mut commitments = package.signing_commitments().clone();
    commitments.insert(new[2].identifier(), c);
    nonces[2] = n;
    let package = frost::SigningPackage::new(commitments, b"mixed shares");
    let mut shares = std::collections::BTreeMap::new();
    for (share, nonce) in [&new[0], &new[1], &new[2]].iter().zip(&nonces) {
        shares.insert(
            share.identifier(),
            frost::round2::sign_with_tweak(&package, nonce, &share.key_package, None).unwrap(),
        );
    }
    assert!(frost::aggregate_with_tweak(&package, &shares, &new[0].public, None).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_sending_different_round_one_packages_to_different_peers_is_named_and_the_dkg_aborts() {
    let cluster = Cluster::start(3, 2, |_| Member::honest()).await;
    let cheat = cluster.node(2);
    let cheater = cheat.peer_id();
    let session = SessionId::random();
    let me = tss::dkg::identifier_of(&cheater).unwrap();
    let (_, package_a) = frost::keys::dkg::part1(me, 3, 2, rand_core::OsRng).unwrap();
    let (_, package_b) = frost::keys::dkg::part1(me, 3, 2, rand_core::OsRng).unwrap();
    let honest = [cluster.entries[0].peer_id, cluster.entries[1].peer_id];
    for (peer, package) in honest.iter().zip([package_a, package_b]) {
        let step = tss::messages::DkgStep::Round1(tss::messages::Encoded(package.serialize().unwrap()));
        cheat.mesh().request(*peer, Request::Dkg { session, step }).await.unwrap();
    }
    let runs = [0, 1].map(|i| cluster.node(i).dkg(session, Duration::from_secs(20), |_| {}));
    for result in futures::future::join_all(runs).await {
        match result {
            Err(tss::dkg::DkgError::Inconsistent { culprit }) => assert_eq!(culprit, cheater),
            other => panic!("expected the DKG to abort naming the cheater, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_sending_bytes_that_are_no_round_one_package_is_named_and_the_dkg_aborts() {
    let cluster = Cluster::start(3, 2, |_| Member::honest()).await;
    let cheat = cluster.node(2);
    let cheater = cheat.peer_id();
    let session = SessionId::random();
    for i in [0, 1] {
        let step = tss::messages::DkgStep::Round1(tss::messages::Encoded(vec![0xff; 40]));
        cheat.mesh().request(cluster.entries[i].peer_id, Request::Dkg { session, step }).await.unwrap();
    }
    let runs = [0, 1].map(|i| cluster.node(i).dkg(session, Duration::from_secs(20), |_| {}));
    for result in futures::future::join_all(runs).await {
        match result {
            Err(tss::dkg::DkgError::Frost { stage: "round 1", culprit, .. }) => assert_eq!(culprit, Some(cheater)),
            other => panic!("expected the DKG to abort naming the sender of garbage, got {other:?}"),
        }
    }
}

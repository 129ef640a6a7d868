//! `transfer` and `withdraw`: check the arguments, choose the route (the coordinator, or Arweave
//! as a forced transaction: [`super::route`]), sign the EIP-712 message with the wallet's key,
//! send it, and follow it: to hard finality for a transfer, to payment on L1 for a withdrawal.

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bridge::recipient::Recipient;
use bridge::{Address, Amount, AssetId, Chain, Transfer, UserTx, Withdraw};
use chains::arweave::Gateway;
use coordinator::api::request::TxRequest;
use coordinator::api::views::Accepted;
use serde_json::json;

use super::endpoints::{Api, EndpointArgs, Endpoints};
use super::forced::{self, ForceArgs, ForcedNetwork};
use super::l1::{BtcPayout, EthPayout, Seen};
use super::network::{Network, parse_account, parse_amount, parse_asset};
use super::route;
use super::stages::{self, Tracker};
use super::{Account, OutputArgs, WalletArgs, print_json};

/// What every signed transaction takes besides its own fields.
#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// The asset: eth, btc, erc20 (the devnet's test token), a token address 0x…, or a full
    /// asset id eth:ETH, eth:0x<token>, btc:BTC.
    #[arg(long)]
    asset: String,
    /// The amount in base units (wei, satoshi, the token's smallest unit), a whole number.
    #[arg(long)]
    amount: String,
    /// The fee in base units of the same asset; default: the network's least fee for it.
    #[arg(long)]
    fee: Option<String>,
    /// The nonce to sign; default: the account's next nonce, from the coordinator.
    #[arg(long)]
    nonce: Option<u64>,
    /// Return once the coordinator has accepted it, without following it further.
    #[arg(long)]
    no_wait: bool,
    /// How long to follow it before giving up (the command then fails; the transaction stays).
    #[arg(long, default_value = "300")]
    timeout_secs: u64,
    /// How often to ask each service and chain, in milliseconds.
    #[arg(long, default_value = "50")]
    poll_ms: u64,
    #[command(flatten)]
    wallet: WalletArgs,
    #[command(flatten)]
    force: ForceArgs,
    #[command(flatten)]
    endpoints: EndpointArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, clap::Args)]
pub struct TransferArgs {
    /// The receiving bridge account, 0x and 40 hex digits.
    #[arg(long)]
    to: String,
    #[command(flatten)]
    send: SendArgs,
}

#[derive(Debug, clap::Args)]
pub struct WithdrawArgs {
    /// Who is paid on L1: an Ethereum address for eth and ERC-20 assets (default: your own
    /// address, the same key), a Bitcoin address for btc.
    #[arg(long)]
    recipient: Option<String>,
    #[command(flatten)]
    send: SendArgs,
}

/// The parts of a transaction known before the network is asked.
struct Draft {
    asset: AssetId,
    amount: Amount,
    fee: Option<Amount>,
}

impl SendArgs {
    /// The follow timeout and poll interval.
    fn waits(&self) -> (Duration, Duration) {
        (Duration::from_secs(self.timeout_secs), Duration::from_millis(self.poll_ms.max(1)))
    }

    fn draft(&self, endpoints: &Endpoints) -> anyhow::Result<Draft> {
        Ok(Draft {
            asset: parse_asset(&self.asset, endpoints.devnet_erc20())?,
            amount: parse_amount("amount", &self.amount)?,
            fee: self.fee.as_deref().map(|fee| parse_amount("fee", fee)).transpose()?,
        })
    }
}

/// How a withdrawal's L1 stages are watched.
enum Payout {
    Ethereum(EthPayout),
    Bitcoin(BtcPayout),
}

/// Where the transaction goes, decided before it is signed (see [`route`]).
enum Route {
    Coordinator { api: Api, network: Network },
    Arweave(Box<Forced>),
}

/// A forced send's confirmer and the network's rules, from that confirmer.
struct Forced {
    confirmer: Api,
    network: ForcedNetwork,
}

/// A transaction sent one way or the other, with the clock of its stages started.
enum Sent {
    Coordinator { api: Api, hash: String, tracker: Tracker },
    Arweave { forced: Box<Forced>, hash: String, arweave_id: String, gateway: Gateway, tracker: Tracker },
}

impl Sent {
    fn hash(&self) -> &str {
        match self {
            Sent::Coordinator { hash, .. } | Sent::Arweave { hash, .. } => hash,
        }
    }

    fn tracker(&self) -> &Tracker {
        match self {
            Sent::Coordinator { tracker, .. } | Sent::Arweave { tracker, .. } => tracker,
        }
    }
}

impl Forced {
    async fn fetch(endpoints: &Endpoints) -> anyhow::Result<Box<Self>> {
        let url = endpoints.confirmer().context(
            "a forced transaction needs a confirmer: the network's rules and the account's nonce come from it",
        )?;
        let confirmer = Api::confirmer(url, &endpoints.tls()?)?;
        let network = ForcedNetwork::fetch(&confirmer).await?;
        Ok(Box::new(Forced { confirmer, network }))
    }
}

/// The coordinator when it answers; Arweave with `--force`, or when it is unavailable and the
/// user gave an Arweave wallet.
async fn choose_route(send: &SendArgs, endpoints: &Endpoints) -> anyhow::Result<Route> {
    if !send.force.force {
        let api = endpoints.coordinator_api()?;
        match Network::fetch(&api).await {
            Ok(network) => return Ok(Route::Coordinator { api, network }),
            Err(error) => match route::unavailable(&error) {
                Some(failure) if send.force.arweave_wallet.is_some() => {
                    eprintln!("{failure}");
                    eprintln!("the coordinator is unavailable: falling back to Arweave (a forced transaction)");
                }
                _ => return Err(error),
            },
        }
    }
    Ok(Route::Arweave(Forced::fetch(endpoints).await?))
}

impl Route {
    /// The network to sign for and the nonce to sign (`given` wins).
    async fn network_and_nonce(&self, address: Address, given: Option<u64>) -> anyhow::Result<(Network, u64)> {
        match self {
            Route::Coordinator { api, network } => Ok((network.clone(), nonce_of(api, address, given).await?)),
            Route::Arweave(forced) => Ok((
                Network::from_params(&forced.network.params),
                ForcedNetwork::nonce(&forced.confirmer, address, given).await?,
            )),
        }
    }

    /// Sends `signed` its way. If `POST /tx` finds the coordinator unavailable and the user
    /// gave an Arweave wallet, the same signed bytes go to Arweave as a forced transaction.
    async fn send(
        self,
        args: &SendArgs,
        endpoints: &Endpoints,
        signed: &bridge::SignedUserTx,
        domain: &bridge::eip712::Domain,
    ) -> anyhow::Result<Sent> {
        let forced = match self {
            Route::Arweave(forced) => forced,
            Route::Coordinator { api, .. } => match post(&api, signed, args).await {
                Ok((hash, tracker)) => return Ok(Sent::Coordinator { api, hash, tracker }),
                Err(error) => match route::unavailable(&error) {
                    Some(failure) if args.force.arweave_wallet.is_some() => {
                        eprintln!("{failure}");
                        eprintln!(
                            "the coordinator did not take it: falling back to Arweave (the same signed transaction)"
                        );
                        let forced = Forced::fetch(endpoints).await?;
                        // Signed for the coordinator's domain: the confirmer's network must be that one.
                        let theirs = bridge::eip712::Domain::new(&forced.network.params);
                        if signed.tx.signing_hash(&theirs) != signed.tx.signing_hash(domain) {
                            bail!(
                                "the confirmer follows network {} whose signing domain is not the coordinator's: \
                                 check --confirmer and --coordinator name the same network",
                                forced.network.params.name
                            );
                        }
                        forced
                    }
                    _ => return Err(error),
                },
            },
        };
        let (timeout, poll) = args.waits();
        let (hash, arweave_id, gateway, tracker) =
            forced::post(&args.force, endpoints, &forced.network, signed, timeout, poll).await?;
        Ok(Sent::Arweave { forced, hash, arweave_id, gateway, tracker })
    }
}

pub async fn transfer(args: TransferArgs) -> anyhow::Result<()> {
    let to = parse_account("to", &args.to)?;
    let endpoints = Endpoints::resolve(&args.send.endpoints);
    let draft = args.send.draft(&endpoints)?;
    let waiting = !args.send.no_wait;
    // Every endpoint the wait will need, before anything is signed or sent.
    let confirmer = if waiting { Some(Api::confirmer(confirmer_url(&endpoints)?, &endpoints.tls()?)?) } else { None };
    let wallet = args.send.wallet.open()?;
    let route = choose_route(&args.send, &endpoints).await?;
    let (network, nonce) = route.network_and_nonce(wallet.address(), args.send.nonce).await?;
    let fee = fee_of(&network, &draft)?;
    let tx =
        UserTx::Transfer(Transfer { from: wallet.address(), to, asset: draft.asset, amount: draft.amount, fee, nonce });
    let domain = network.domain();
    let signed = wallet.sign(tx, &domain);
    let mut sent = route.send(&args.send, &endpoints, &signed, &domain).await?;
    let outcome = match (&mut sent, &confirmer) {
        (_, None) => Ok(()),
        (Sent::Coordinator { api, hash, tracker }, Some(confirmer)) => {
            follow_transfer(tracker, api, confirmer, hash).await
        }
        (Sent::Arweave { forced, hash, arweave_id, gateway, tracker }, Some(_)) => {
            forced::until_hard_final(tracker, gateway, &forced.confirmer, &forced.network, arweave_id, hash)
                .await
                .map(|_| ())
        }
    };
    report(&args.send, &signed.tx, sent.hash(), sent.tracker(), outcome)
}

pub async fn withdraw(args: WithdrawArgs) -> anyhow::Result<()> {
    let endpoints = Endpoints::resolve(&args.send.endpoints);
    let draft = args.send.draft(&endpoints)?;
    let waiting = !args.send.no_wait;
    let recipient_text = match (&args.recipient, draft.asset.chain()) {
        (Some(text), _) => Some(text.trim().to_owned()),
        (None, Chain::Ethereum) => None, // the wallet's own address, known once it is open
        (None, Chain::Bitcoin) => bail!("a Bitcoin withdrawal needs --recipient <Bitcoin address>"),
    };
    // Every endpoint the wait will need, before anything is signed or sent.
    let confirmer = if waiting { Some(Api::confirmer(confirmer_url(&endpoints)?, &endpoints.tls()?)?) } else { None };
    let paid_on = "following the withdrawal until it is paid needs its chain's node (or pass --no-wait)";
    let chain = draft.asset.chain();
    let eth_rpc = if waiting && chain == Chain::Ethereum { Some(endpoints.eth_rpc().context(paid_on)?) } else { None };
    let btc_rpc = if waiting && chain == Chain::Bitcoin { Some(endpoints.btc_rpc().context(paid_on)?) } else { None };
    let wallet = args.send.wallet.open()?;
    let recipient_text = recipient_text.unwrap_or_else(|| wallet.address().to_string());
    let route = choose_route(&args.send, &endpoints).await?;
    let (network, nonce) = route.network_and_nonce(wallet.address(), args.send.nonce).await?;
    let fee = fee_of(&network, &draft)?;
    let recipient =
        Recipient::parse(&recipient_text, &draft.asset, draft.amount, network.btc_network, &network.eth_vault)
            .map_err(|e| anyhow!("--recipient {recipient_text}: {e}"))?;
    let tx = UserTx::Withdraw(Withdraw {
        from: wallet.address(),
        asset: draft.asset,
        amount: draft.amount,
        fee,
        recipient: recipient_text,
        nonce,
    });
    let domain = network.domain();
    let signed = wallet.sign(tx, &domain);
    // The chain's starting point is noted before sending, so nothing that follows is missed.
    let mut payout = match (&recipient, eth_rpc, btc_rpc) {
        (Recipient::Ethereum(to), Some(url), _) => {
            let token = draft.asset.eth_token().unwrap_or(Address::ZERO);
            Some(Payout::Ethereum(
                EthPayout::start(&url, &endpoints.tls()?, network.eth_vault, token, *to, draft.amount.units()).await?,
            ))
        }
        (Recipient::Bitcoin(script), _, Some(node)) => {
            let sat = u64::try_from(draft.amount.units())
                .map_err(|_| anyhow!("--amount is above all the bitcoin there is"))?;
            Some(Payout::Bitcoin(BtcPayout::start(&node, script.clone(), sat).await?))
        }
        _ => None,
    };
    let mut sent = route.send(&args.send, &endpoints, &signed, &domain).await?;
    let outcome = match (&mut sent, &confirmer, payout.as_mut()) {
        (Sent::Coordinator { api, hash, tracker }, Some(confirmer), Some(payout)) => {
            follow_withdrawal(tracker, api, confirmer, hash, payout).await
        }
        (Sent::Arweave { forced, hash, arweave_id, gateway, tracker }, Some(_), Some(payout)) => {
            match forced::until_hard_final(tracker, gateway, &forced.confirmer, &forced.network, arweave_id, hash).await
            {
                Ok(batch) => until_paid(tracker, batch, payout).await,
                Err(e) => Err(e),
            }
        }
        _ => Ok(()),
    };
    report(&args.send, &signed.tx, sent.hash(), sent.tracker(), outcome)
}

fn confirmer_url(endpoints: &Endpoints) -> anyhow::Result<String> {
    endpoints.confirmer().context("following the transaction to hard finality needs a confirmer (or pass --no-wait)")
}

fn fee_of(network: &Network, draft: &Draft) -> anyhow::Result<Amount> {
    let min_fee = network.min_fee(&draft.asset)?;
    match draft.fee {
        Some(fee) if fee < min_fee => {
            bail!("--fee {fee} is below this network's least fee for {} ({min_fee})", draft.asset)
        }
        Some(fee) => Ok(fee),
        None => Ok(min_fee),
    }
}

async fn nonce_of(coordinator: &Api, address: Address, given: Option<u64>) -> anyhow::Result<u64> {
    if let Some(nonce) = given {
        return Ok(nonce);
    }
    let account: Account = coordinator.get(&format!("/accounts/{address}")).await?;
    Ok(account.nonce)
}

/// Posts the transaction; the clock of every stage starts when the coordinator answers.
async fn post(coordinator: &Api, signed: &bridge::SignedUserTx, args: &SendArgs) -> anyhow::Result<(String, Tracker)> {
    let accepted: Accepted = coordinator.post("/tx", &TxRequest::from_signed(signed)).await?;
    let start = Instant::now();
    let mut tracker =
        Tracker::new(start, Duration::from_secs(args.timeout_secs), Duration::from_millis(args.poll_ms.max(1)));
    eprintln!("{} {}", kind(&signed.tx), accepted.hash);
    tracker.reach(stages::ACCEPTED, None);
    Ok((accepted.hash, tracker))
}

fn kind(tx: &UserTx) -> &'static str {
    match tx {
        UserTx::Transfer(_) => "transfer",
        UserTx::Withdraw(_) => "withdraw",
    }
}

async fn follow_transfer(tracker: &mut Tracker, coordinator: &Api, confirmer: &Api, hash: &str) -> anyhow::Result<()> {
    stages::until_published(tracker, coordinator, hash).await?;
    stages::until_hard_final(tracker, confirmer, hash).await
}

async fn follow_withdrawal(
    tracker: &mut Tracker,
    coordinator: &Api,
    confirmer: &Api,
    hash: &str,
    payout: &mut Payout,
) -> anyhow::Result<()> {
    let batch = stages::until_published(tracker, coordinator, hash).await?;
    stages::until_hard_final(tracker, confirmer, hash).await?;
    until_paid(tracker, batch, payout).await
}

/// Follows a hard-final withdrawal of `batch` until L1 pays it.
async fn until_paid(tracker: &mut Tracker, batch: u64, payout: &mut Payout) -> anyhow::Result<()> {
    let mut problem = None;
    loop {
        let seen = match payout {
            Payout::Ethereum(eth) => eth.poll(batch).await,
            Payout::Bitcoin(btc) => btc.poll().await,
        };
        match seen {
            Ok(Seen::Nothing) => {}
            Ok(Seen::Signed(detail)) => tracker.reach(stages::SIGNED, Some(detail)),
            Ok(Seen::Paid(detail)) => {
                tracker.reach(stages::SIGNED, None);
                tracker.reach(stages::PAID, Some(detail));
                return Ok(());
            }
            // Chain nodes hiccup; keep the last problem for the timeout's message.
            Err(e) => problem = Some(format!("{e:#}")),
        }
        let waiting_for = if tracker.has(stages::SIGNED) {
            "the payout to be paid on L1"
        } else {
            "the watchmen to sign the payout (are they running? see their /health)"
        };
        tracker.pause(waiting_for, &problem).await?;
    }
}

/// Prints the result (for `--json`, also after a failure, with the stages reached and the error)
/// and passes the failure on.
fn report(
    args: &SendArgs,
    tx: &UserTx,
    hash: &str,
    tracker: &Tracker,
    outcome: anyhow::Result<()>,
) -> anyhow::Result<()> {
    if args.output.json {
        let (asset, amount, fee, nonce, party) = match tx {
            UserTx::Transfer(t) => (t.asset, t.amount, t.fee, t.nonce, json!({ "to": t.to.to_string() })),
            UserTx::Withdraw(w) => (w.asset, w.amount, w.fee, w.nonce, json!({ "recipient": w.recipient })),
        };
        let mut value = json!({
            "hash": hash,
            "type": kind(tx),
            "from": tx.from().to_string(),
            "asset": asset.to_string(),
            "amount": amount.to_string(),
            "fee": fee.to_string(),
            "nonce": nonce,
            "batch": tracker.batch,
            "stages": tracker.stages,
            "complete": outcome.is_ok(),
        });
        if let (Some(object), Some(extra)) = (value.as_object_mut(), party.as_object()) {
            object.extend(extra.clone());
            if let Err(e) = &outcome {
                object.insert("error".into(), json!(format!("{e:#}")));
            }
        }
        print_json(&value)?;
    } else if outcome.is_ok() {
        println!("{hash}");
    }
    outcome
}

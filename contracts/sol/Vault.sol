// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.27;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {BitMaps} from "@openzeppelin/contracts/utils/structs/BitMaps.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

import {Bip340} from "./Bip340.sol";

/// @title The bridge's Ethereum vault.
/// @notice Holds ether and ERC-20 tokens deposited to bridge accounts. Funds leave only through
/// a withdrawals root signed by the watchmen's FROST group key (an ordinary BIP-340 signature),
/// one leaf at a time, each at most once. Each root covers a range of batches [first, last];
/// the ranges follow each other with no gap and no overlap, and a leaf keeps its own (batch,
/// index), so the paid bitmap, keyed by batch and index, pays it once whichever range holds it. Every message the group signs is described in
/// docs/PROTOCOL.md ("Ethereum vault messages") and computed in Rust by `bridge::eth_settlement`.
contract Vault is ReentrancyGuard {
    using SafeERC20 for IERC20;
    using BitMaps for BitMaps.BitMap;

    // ---------------------------------------------------------------- message kinds
    bytes32 internal constant WITHDRAWALS_KIND = keccak256("bridge/eth/withdrawals-range/v2");
    bytes32 internal constant SET_CAP_KIND = keccak256("bridge/eth/set-cap/v1");
    bytes32 internal constant UNPAUSE_KIND = keccak256("bridge/eth/unpause/v1");
    bytes32 internal constant ROTATE_KIND = keccak256("bridge/eth/rotate-key/v2");
    bytes32 internal constant ACCEPT_KIND = keccak256("bridge/eth/accept-key/v1");

    // ---------------------------------------------------------------- payouts
    /// The gas each leaf's transfer gets inside `withdrawMany`: enough for a smart-contract
    /// wallet's `receive` or a proxied token's `transfer` with a blacklist check (USDC's costs
    /// about 40,000 to a new holder), small enough that a recipient burning all it gets costs
    /// the submitter a bounded amount. A recipient that needs more is paid through `withdraw`,
    /// which forwards all the caller's gas.
    uint256 public constant PAYOUT_GAS = 100_000;
    /// What must be left before a leaf's transfer so that it really gets `PAYOUT_GAS` (EIP-150
    /// keeps 1/64 back) and the value-transfer, new-account and cold-access costs are covered:
    /// a leaf never fails because the submitter sent too little gas.
    uint256 internal constant PAYOUT_GAS_NEEDED = PAYOUT_GAS + PAYOUT_GAS / 63 + 40_000;

    // ---------------------------------------------------------------- types
    /// One leaf of a range's withdrawals tree, with its proof: leaf `index` of batch `batch`.
    struct Payout {
        uint64 batch;
        uint32 index;
        address token;
        address recipient;
        uint256 amount;
        bytes32[] proof;
    }

    /// A withdrawals root and the batches it covers. `first` and `last` share one slot.
    struct Range {
        bytes32 root;
        uint64 first;
        uint64 last;
    }

    /// A rolling per-token cap: a bucket of `limit` that refills linearly over `window` seconds.
    /// `limit == 0` means no cap.
    struct Cap {
        uint128 limit;
        uint64 window;
        // The bucket's level (what is still available) at `updatedAt`.
        uint128 available;
        uint64 updatedAt;
    }

    // ---------------------------------------------------------------- errors
    error PlainEtherRefused();
    error ZeroAmount();
    error AmountTooLarge(uint256 amount);
    error NothingReceived(address token);
    error Paused();
    error NotPaused();
    error NotGuardian(address caller);
    error InvalidSignature();
    error InvalidKey(uint256 px);
    error EmptyRoot(uint64 first, uint64 last);
    /// `last < first`: a range covers at least one batch.
    error EmptyRange(uint64 first, uint64 last);
    /// The range does not start right after the last range held (`expected`): batches between
    /// would have no root.
    error RangeGap(uint64 expected, uint64 first);
    /// The range starts at or before the last batch a range already covers.
    error RangeOverlap(uint64 expected, uint64 first);
    error UnknownRange(uint64 range);
    /// The leaf's batch is not one of the range's batches.
    error BatchOutsideRange(uint64 range, uint64 batch);
    error AlreadyPaid(uint64 batch, uint32 index);
    error InvalidProof(uint64 batch, uint32 index);
    /// `withdraw` could not pay the leaf (the recipient refused ether, or the token refused the
    /// transfer); it stays unpaid and can be tried again.
    error WithdrawalRefused(uint64 batch, uint32 index, address token, address recipient, uint256 amount);
    /// `withdrawMany` was sent with too little gas left to give the next leaf `PAYOUT_GAS`.
    error InsufficientGasForPayout(uint64 batch, uint32 index);
    error CapExceeded(address token, uint256 amount, uint256 available, uint256 retryAfter);
    error StaleNonce(uint64 expected, uint64 given);
    error BadEpoch(uint64 expected, uint64 given);
    error NoPendingKey();
    error InvalidWindow();

    // ---------------------------------------------------------------- events
    /// A deposit credited to the bridge account `account`: `amount` is what the vault received.
    /// `token` is the zero address for ether. `nonce` counts the vault's deposits from 0.
    event Deposited(
        uint64 indexed nonce, address indexed token, address indexed account, address sender, uint256 amount
    );
    event WithdrawalsSubmitted(uint64 indexed range, uint64 first, uint64 last, bytes32 root, uint64 epoch);
    event Withdrawn(
        uint64 indexed batch, uint32 indexed index, address indexed token, address recipient, uint256 amount
    );
    /// `withdrawMany` could not pay this leaf: the recipient refused ether, burnt its gas, or the
    /// token refused the transfer (a blacklist). The leaf stays unpaid: anyone may pay it later
    /// with `withdraw` and its proof, and the rest of the call went on.
    event WithdrawalFailed(
        uint64 indexed batch, uint32 indexed index, address indexed token, address recipient, uint256 amount
    );
    event PausedBy(address guardian);
    event Unpaused(uint64 nonce);
    event CapSet(address indexed token, uint128 limit, uint64 window, uint64 nonce);
    event KeyRotationProposed(uint256 newKeyX, uint64 newEpoch, uint64 nonce);
    event KeyRotated(uint256 newKeyX, uint64 newEpoch);

    // ---------------------------------------------------------------- state
    /// The guardian may pause; only the group key unpauses.
    address public immutable guardian;
    /// The group key's x coordinate (BIP-340 x-only, even y).
    uint256 public groupKey;
    /// Bumped by each key rotation; every signed message names it.
    uint64 public keyEpoch;
    /// The next nonce of a signed unpause, cap setting or key proposal (replay protection): each
    /// such call consumes it, so every admin signature is good once and only until another
    /// admin call lands.
    uint64 public adminNonce;
    /// Deposits so far: the next deposit's nonce.
    uint64 public depositCount;
    bool public paused;

    uint256 public pendingKey;
    uint64 public pendingEpoch;

    /// Ranges submitted so far: the next range's number. Range numbers start at 0.
    uint64 public rangeCount;
    /// The last batch a range covers (0 before the first): the next range starts right after.
    uint64 public settledThrough;
    /// Each range submitted, by number.
    mapping(uint64 range => Range) public ranges;
    mapping(address token => Cap cap) public caps;
    /// Leaf `index` of batch `batch` is paid iff its bit is set (`_bit`): each storage word holds
    /// a tile of 16 consecutive batches by 16 consecutive indices, so paying one withdrawal per
    /// batch writes a fresh word once per 16 batches, and a busy batch once per 16 leaves.
    BitMaps.BitMap private _paid;

    constructor(uint256 groupKey_, address guardian_) {
        if (!Bip340.isValidKey(groupKey_)) revert InvalidKey(groupKey_);
        groupKey = groupKey_;
        guardian = guardian_;
    }

    receive() external payable {
        revert PlainEtherRefused();
    }

    fallback() external payable {
        revert PlainEtherRefused();
    }

    modifier whenNotPaused() {
        if (paused) revert Paused();
        _;
    }

    // ---------------------------------------------------------------- deposits
    /// Deposits the ether sent to `account` (the sender when zero).
    function depositETH(address account) external payable whenNotPaused {
        _credit(address(0), account, msg.value);
    }

    /// Deposits `amount` of `token` to `account` (the sender when zero). The credit is the
    /// vault's measured balance increase, which is less than `amount` for a fee-on-transfer token.
    function depositERC20(address token, uint256 amount, address account) external nonReentrant whenNotPaused {
        if (token == address(0)) revert NothingReceived(token);
        uint256 before = IERC20(token).balanceOf(address(this));
        IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = IERC20(token).balanceOf(address(this)) - before;
        if (received == 0 && amount != 0) revert NothingReceived(token);
        _credit(token, account, received);
    }

    function _credit(address token, address account, uint256 amount) private {
        if (amount == 0) revert ZeroAmount();
        if (amount > type(uint128).max) revert AmountTooLarge(amount);
        if (account == address(0)) account = msg.sender;
        uint64 nonce = depositCount;
        depositCount = nonce + 1;
        emit Deposited(nonce, token, account, msg.sender, amount);
    }

    // ---------------------------------------------------------------- withdrawals
    /// Accepts the withdrawals root of batches [first, last], signed by the group key of the
    /// current epoch. The range must start right after the last one held: no gap, no overlap.
    function submitWithdrawals(uint64 first, uint64 last, bytes32 root, Bip340.Signature calldata sig)
        external
        whenNotPaused
    {
        _submitWithdrawals(first, last, root, sig);
    }

    /// `submitWithdrawals`, then `withdrawMany` over the range it records, in one transaction:
    /// a lone withdrawal is paid in the root's own block instead of the next, and the second
    /// transaction's base cost is saved. If the root is refused, nothing is paid.
    function submitAndWithdraw(
        uint64 first,
        uint64 last,
        bytes32 root,
        Bip340.Signature calldata sig,
        Payout[] calldata payouts
    ) external nonReentrant whenNotPaused {
        _withdrawMany(_submitWithdrawals(first, last, root, sig), payouts);
    }

    function _submitWithdrawals(uint64 first, uint64 last, bytes32 root, Bip340.Signature calldata sig)
        private
        returns (uint64 range)
    {
        if (last < first) revert EmptyRange(first, last);
        if (root == bytes32(0)) revert EmptyRoot(first, last);
        uint64 expected = settledThrough + 1;
        if (first < expected) revert RangeOverlap(expected, first);
        if (first > expected) revert RangeGap(expected, first);
        uint64 epoch = keyEpoch;
        _requireGroupSignature(
            keccak256(abi.encode(WITHDRAWALS_KIND, block.chainid, address(this), epoch, first, last, root)), sig
        );
        range = rangeCount;
        ranges[range] = Range({root: root, first: first, last: last});
        rangeCount = range + 1;
        settledThrough = last;
        emit WithdrawalsSubmitted(range, first, last, root, epoch);
    }

    /// The range covering batch `batch`, if one does (a view for clients: binary search).
    function rangeOf(uint64 batch) external view returns (bool found, uint64 range) {
        if (batch == 0 || batch > settledThrough) return (false, 0);
        uint64 lo = 0;
        uint64 hi = rangeCount - 1;
        while (lo < hi) {
            uint64 mid = lo + (hi - lo) / 2;
            if (ranges[mid].last < batch) lo = mid + 1;
            else hi = mid;
        }
        return (ranges[lo].first <= batch, lo);
    }

    /// Pays leaf `index` of batch `batch` under range `range`. Anyone may call it; a leaf is
    /// paid once. The transfer gets all the gas the caller sends, and a refused transfer reverts
    /// (`WithdrawalRefused`): this is how a leaf `withdrawMany` could not pay is claimed later.
    function withdraw(
        uint64 range,
        uint64 batch,
        uint32 index,
        address token,
        address recipient,
        uint256 amount,
        bytes32[] calldata proof
    ) external nonReentrant whenNotPaused {
        bytes32 root = _rootFor(range, batch);
        uint256 bit = _bit(batch, index);
        if (_paid.get(bit)) revert AlreadyPaid(batch, index);
        _paid.set(bit);
        _verifyLeaf(root, batch, index, token, recipient, amount, proof);
        _consumeCap(token, amount);
        if (!_transfer(token, recipient, amount, gasleft())) {
            revert WithdrawalRefused(batch, index, token, recipient, amount);
        }
        emit Withdrawn(batch, index, token, recipient, amount);
    }

    /// Pays several leaves of range `range`. Leaves already paid (say by another submitter
    /// racing this one) are skipped, so the call stays useful; an invalid proof, or a leaf of a
    /// batch outside the range, reverts it all. Each transfer gets `PAYOUT_GAS`; one that fails
    /// is reported (`WithdrawalFailed`) and left unpaid, so one recipient can neither stop the
    /// others nor burn more than that.
    function withdrawMany(uint64 range, Payout[] calldata payouts) external nonReentrant whenNotPaused {
        _withdrawMany(range, payouts);
    }

    function _withdrawMany(uint64 range, Payout[] calldata payouts) private {
        Range memory r = ranges[range];
        if (r.root == bytes32(0)) revert UnknownRange(range);
        uint256 count = payouts.length;
        for (uint256 i = 0; i < count; ++i) {
            Payout calldata p = payouts[i];
            uint64 batch = p.batch;
            if (batch < r.first || batch > r.last) revert BatchOutsideRange(range, batch);
            uint256 bit = _bit(batch, p.index);
            if (_paid.get(bit)) continue;
            _verifyLeaf(r.root, batch, p.index, p.token, p.recipient, p.amount, p.proof);
            if (gasleft() < PAYOUT_GAS_NEEDED) revert InsufficientGasForPayout(batch, p.index);
            // Effects first (the bit, the cap), undone if the transfer fails.
            _paid.set(bit);
            _consumeCap(p.token, p.amount);
            if (_transfer(p.token, p.recipient, p.amount, PAYOUT_GAS)) {
                emit Withdrawn(batch, p.index, p.token, p.recipient, p.amount);
            } else {
                _paid.unset(bit);
                _refundCap(p.token, p.amount);
                emit WithdrawalFailed(batch, p.index, p.token, p.recipient, p.amount);
            }
        }
    }

    /// The root of range `range`, which must cover `batch`.
    function _rootFor(uint64 range, uint64 batch) private view returns (bytes32) {
        Range memory r = ranges[range];
        if (r.root == bytes32(0)) revert UnknownRange(range);
        if (batch < r.first || batch > r.last) revert BatchOutsideRange(range, batch);
        return r.root;
    }

    /// The word is `(batch >> 4, index >> 4)`, the bit in it `(batch & 15) * 16 + (index & 15)`.
    function _bit(uint64 batch, uint32 index) private pure returns (uint256) {
        return (uint256(batch >> 4) << 36) | (uint256(index >> 4) << 8) | (uint256(batch & 15) << 4) | (index & 15);
    }

    /// True iff leaf `index` of batch `batch` has been paid.
    function isPaid(uint64 batch, uint32 index) external view returns (bool) {
        return _paid.get(_bit(batch, index));
    }

    function _verifyLeaf(
        bytes32 root,
        uint64 batch,
        uint32 index,
        address token,
        address recipient,
        uint256 amount,
        bytes32[] calldata proof
    ) private pure {
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(batch, index, token, recipient, amount))));
        if (!MerkleProof.verifyCalldata(proof, root, leaf)) revert InvalidProof(batch, index);
    }

    /// Sends `amount` of `token` (ether for the zero address) with at most `gasLimit` gas, and
    /// says whether it was paid. Return data is never copied beyond one word, so a recipient
    /// cannot make the vault pay for a huge answer. A token call succeeds as SafeERC20 decides:
    /// no return data from a contract, or a return value of `true`.
    function _transfer(address token, address recipient, uint256 amount, uint256 gasLimit) private returns (bool ok) {
        if (token == address(0)) {
            assembly ("memory-safe") {
                ok := call(gasLimit, recipient, amount, 0, 0, 0, 0)
            }
            return ok;
        }
        bytes memory data = abi.encodeCall(IERC20.transfer, (recipient, amount));
        uint256 size;
        uint256 value;
        assembly ("memory-safe") {
            ok := call(gasLimit, token, 0, add(data, 0x20), mload(data), 0, 0x20)
            size := returndatasize()
            value := mload(0)
        }
        return ok && (size == 0 ? token.code.length > 0 : value == 1);
    }

    // ---------------------------------------------------------------- caps
    /// What token `token` may still pay out now under its cap (`type(uint256).max` if uncapped).
    function availableUnderCap(address token) public view returns (uint256) {
        Cap memory cap = caps[token];
        if (cap.limit == 0) return type(uint256).max;
        return _level(cap);
    }

    function _level(Cap memory cap) private view returns (uint256) {
        uint256 refill = (block.timestamp - cap.updatedAt) * uint256(cap.limit) / cap.window;
        uint256 level = uint256(cap.available) + refill;
        return level > cap.limit ? cap.limit : level;
    }

    function _consumeCap(address token, uint256 amount) private {
        Cap storage stored = caps[token];
        uint128 limit = stored.limit;
        if (limit == 0) return;
        Cap memory cap = stored;
        uint256 level = _level(cap);
        if (amount > level) {
            // Seconds until the bucket holds `amount` (never, if above the limit itself).
            uint256 retryAfter = amount > limit
                ? type(uint256).max
                : ((amount - level) * cap.window + limit - 1) / limit;
            revert CapExceeded(token, amount, level, retryAfter);
        }
        stored.available = uint128(level - amount);
        stored.updatedAt = uint64(block.timestamp);
    }

    /// Gives back what `_consumeCap` took in this same transaction for a leaf that was not paid.
    function _refundCap(address token, uint256 amount) private {
        Cap storage stored = caps[token];
        uint128 limit = stored.limit;
        if (limit == 0) return;
        uint256 level = uint256(stored.available) + amount;
        stored.available = uint128(level > limit ? limit : level);
    }

    /// Sets the rolling cap of `token` (the zero address for ether): at most `limit` per
    /// `window` seconds, refilling linearly; `limit == 0` removes the cap. Signed by the group.
    function setCap(address token, uint128 limit, uint64 window, uint64 nonce, Bip340.Signature calldata sig) external {
        uint64 expected = adminNonce;
        if (nonce != expected) revert StaleNonce(expected, nonce);
        if (limit != 0 && window == 0) revert InvalidWindow();
        _requireGroupSignature(
            keccak256(abi.encode(SET_CAP_KIND, block.chainid, address(this), keyEpoch, nonce, token, limit, window)), sig
        );
        adminNonce = expected + 1;
        caps[token] = Cap({limit: limit, window: window, available: limit, updatedAt: uint64(block.timestamp)});
        emit CapSet(token, limit, window, nonce);
    }

    // ---------------------------------------------------------------- pause
    /// The guardian stops deposits and withdrawals.
    function pause() external {
        if (msg.sender != guardian) revert NotGuardian(msg.sender);
        paused = true;
        emit PausedBy(msg.sender);
    }

    /// Only a group signature resumes.
    function unpause(uint64 nonce, Bip340.Signature calldata sig) external {
        if (!paused) revert NotPaused();
        uint64 expected = adminNonce;
        if (nonce != expected) revert StaleNonce(expected, nonce);
        _requireGroupSignature(keccak256(abi.encode(UNPAUSE_KIND, block.chainid, address(this), keyEpoch, nonce)), sig);
        adminNonce = expected + 1;
        paused = false;
        emit Unpaused(nonce);
    }

    // ---------------------------------------------------------------- key rotation
    /// Step one: the current key names its successor and the next epoch. The signature names
    /// `adminNonce` too and consumes it, so a proposal that was replaced (or overtaken by any
    /// other admin call) can never be put back by replaying its signature: it is dead.
    function proposeKey(uint256 newKey, uint64 nonce, Bip340.Signature calldata sig) external {
        if (!Bip340.isValidKey(newKey)) revert InvalidKey(newKey);
        uint64 expected = adminNonce;
        if (nonce != expected) revert StaleNonce(expected, nonce);
        uint64 epoch = keyEpoch;
        uint64 next = epoch + 1;
        _requireGroupSignature(
            keccak256(abi.encode(ROTATE_KIND, block.chainid, address(this), epoch, nonce, newKey, next)), sig
        );
        adminNonce = expected + 1;
        pendingKey = newKey;
        pendingEpoch = next;
        emit KeyRotationProposed(newKey, next, nonce);
    }

    /// Step two: the new key signs its acceptance; from then on only it signs, and every message
    /// signed for an earlier epoch is void.
    function acceptKey(Bip340.Signature calldata sig) external {
        uint256 newKey = pendingKey;
        if (newKey == 0) revert NoPendingKey();
        uint64 next = pendingEpoch;
        if (next != keyEpoch + 1) revert BadEpoch(keyEpoch + 1, next);
        bytes32 m = keccak256(abi.encode(ACCEPT_KIND, block.chainid, address(this), next, newKey));
        if (!Bip340.verify(newKey, m, sig)) revert InvalidSignature();
        groupKey = newKey;
        keyEpoch = next;
        pendingKey = 0;
        pendingEpoch = 0;
        emit KeyRotated(newKey, next);
    }

    // ---------------------------------------------------------------- signatures
    function _requireGroupSignature(bytes32 m, Bip340.Signature calldata sig) private view {
        if (!Bip340.verify(groupKey, m, sig)) revert InvalidSignature();
    }

    /// The BIP-340 check alone, for clients and tests: is `sig` a signature of `m` by `px`?
    function verifyBip340(uint256 px, bytes32 m, Bip340.Signature calldata sig) external view returns (bool) {
        return Bip340.verify(px, m, sig);
    }
}

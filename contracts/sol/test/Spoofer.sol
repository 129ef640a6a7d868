// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.27;

/// Test only: emits an event identical to the vault's `Deposited` without holding anything,
/// as an attacker's contract would (the THORChain 2021 lesson: check who emitted the log).
contract Spoofer {
    event Deposited(
        uint64 indexed nonce, address indexed token, address indexed account, address sender, uint256 amount
    );

    function fake(uint64 nonce, address token, address account, uint256 amount) external {
        emit Deposited(nonce, token, account, msg.sender, amount);
    }
}

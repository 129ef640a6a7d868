// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.27;

import {Bip340} from "../Bip340.sol";

/// Test only: measures the gas of the BIP-340 check alone.
contract Bip340Gas {
    event Measured(bool valid, uint256 gasUsed);

    function measure(uint256 px, bytes32 m, Bip340.Signature calldata sig) external returns (bool valid) {
        Bip340.Signature memory copy = sig;
        uint256 before = gasleft();
        valid = Bip340.verify(px, m, copy);
        uint256 used = before - gasleft();
        emit Measured(valid, used);
    }
}

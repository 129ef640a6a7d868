// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.27;

/// Test only: a withdrawal recipient that refuses every ether payment until told otherwise.
contract RevertingRecipient {
    error NoThanks();

    bool public accepting;

    function setAccepting(bool accepting_) external {
        accepting = accepting_;
    }

    receive() external payable {
        if (!accepting) revert NoThanks();
    }
}

/// Test only: a withdrawal recipient that burns every unit of gas it is given, then fails.
contract GasBurner {
    receive() external payable {
        while (true) {}
    }
}

/// Test only: a recipient that answers a payment with 150 kB of return data (what 100,000 gas buys), which a
/// caller copying return data into memory would pay for (a "return bomb").
contract ReturnBomb {
    fallback() external payable {
        assembly {
            return(0, 150000)
        }
    }
}

#!/usr/bin/env node
// The reference client's view, for the cross-check tests in chains/tests/arweave_da.rs:
//   generate                          print a new JWK (arweave-js wallets.generate)
//   verify <gateway> <txid>           fetch a transaction and verify it with arweave-js; exit 1 if it fails
//   create <gateway> <jwk> <hexdata>  create, sign and post a tagged transaction with arweave-js; print its id
//   data-root <file>                  print the base64url data_root arweave-js computes for the file's bytes
// Tags for `create` come from the environment as TAG_<name>=<value>, in sorted order.
'use strict';
const Arweave = require('arweave');
const fs = require('fs');

function connect(gateway) {
  const url = new URL(gateway);
  return Arweave.init({ host: url.hostname, port: Number(url.port), protocol: url.protocol.replace(':', ''), logging: false });
}

async function main() {
  const [command, ...args] = process.argv.slice(2);
  if (command === 'generate') {
    const arweave = Arweave.init({});
    process.stdout.write(JSON.stringify(await arweave.wallets.generate()));
    return;
  }
  if (command === 'data-root') {
    const { computeRootHash } = require('arweave/node/lib/merkle');
    const root = await computeRootHash(fs.readFileSync(args[0]));
    process.stdout.write(Buffer.from(root).toString('base64url'));
    return;
  }
  if (command === 'verify') {
    const [gateway, id] = args;
    const arweave = connect(gateway);
    const tx = await arweave.transactions.get(id);
    const ok = await arweave.transactions.verify(tx);
    if (!ok) {
      console.error(`arweave-js: transaction ${id} does not verify`);
      process.exit(1);
    }
    process.stdout.write('ok');
    return;
  }
  if (command === 'create') {
    const [gateway, jwkPath, hex] = args;
    const arweave = connect(gateway);
    const jwk = JSON.parse(fs.readFileSync(jwkPath, 'utf8'));
    const tx = await arweave.createTransaction({ data: Buffer.from(hex, 'hex') }, jwk);
    for (const name of Object.keys(process.env).filter((k) => k.startsWith('TAG_')).sort()) {
      tx.addTag(name.slice(4), process.env[name]);
    }
    await arweave.transactions.sign(tx, jwk);
    const response = await arweave.transactions.post(tx);
    if (response.status >= 300) {
      console.error(`arweave-js: posting failed with ${response.status}: ${JSON.stringify(response.data)}`);
      process.exit(1);
    }
    process.stdout.write(tx.id);
    return;
  }
  console.error('usage: arweave-check.js generate | verify <gateway> <txid> | create <gateway> <jwk> <hexdata>');
  process.exit(2);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

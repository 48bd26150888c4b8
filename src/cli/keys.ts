/**
 * `safeshift keys`: a decider makes a key pair (`init`; the private key stays in their config, 0600), an
 * administrator registers the public key in the ledger (`add`, audited), anyone lists what is registered (`list`).
 */
import { userInfo } from 'node:os';
import { withClient } from '../db';
import { keysDir, listKeys, registerKey, writeKeyFile } from '../keys';
import { CliError, connectionString, EXIT_OK } from './exit';

type Print = (line: string) => void;

function defaultName(): string {
  return process.env.SAFESHIFT_AS || userInfo().username;
}

export async function keysInit(options: { name?: string; force?: boolean; json?: boolean }, print: Print): Promise<number> {
  const name = options.name ?? defaultName();
  let key;
  try {
    key = writeKeyFile(keysDir(), name, { overwrite: options.force });
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  if (options.json) {
    print(JSON.stringify({ name: key.name, publicKey: key.publicKey, file: `${keysDir()}/${name.toLowerCase()}.key` }));
  } else {
    print(`private key for ${key.name} written to ${keysDir()}/${name.toLowerCase()}.key (mode 0600; never share it)`);
    print(`public key: ${key.publicKey}`);
    print(`an administrator registers it with: safeshift keys add ${key.name} ${key.publicKey}`);
  }
  return EXIT_OK;
}

export async function keysAdd(name: string, publicKey: string, options: { as?: string; database: string }, print: Print): Promise<number> {
  const url = connectionString(options.database);
  const addedBy = options.as ?? defaultName();
  const result = await withClient(url, (client) => registerKey(client, name, publicKey.trim().toLowerCase(), addedBy), 'safeshift keys')
    .catch((err: unknown) => { throw new CliError(`keys add: ${(err as Error).message}`); });
  print(result === 'added'
    ? `registered ${publicKey.slice(0, 16)}… for ${name.toLowerCase()} (audited as keys:add by ${addedBy}); migrations started from now on accept ${name.toLowerCase()}'s signature`
    : `${publicKey.slice(0, 16)}… was already registered for ${name.toLowerCase()}`);
  return EXIT_OK;
}

export async function keysList(options: { json?: boolean; database: string }, print: Print): Promise<number> {
  const rows = await withClient(connectionString(options.database), (client) => listKeys(client), 'safeshift keys');
  if (options.json) print(JSON.stringify(rows));
  else if (!rows.length) print('no keys registered');
  else for (const r of rows) print(`${r.name}  ${r.publicKey}  added by ${r.addedBy} at ${r.addedAt}`);
  return EXIT_OK;
}

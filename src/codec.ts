/**
 * Encrypted Temporal history (issue 14, item 5): a PayloadCodec doing AES-256-GCM with `node:crypto`. Every
 * payload the worker, the CLI and the tests send (workflow input, i.e. the whole plan; activity arguments and
 * results; query and update results; memo; static summary and details) is stored by Temporal as ciphertext. Codecs
 * run outside the workflow sandbox (the worker's and the client's `dataConverter.payloadCodecs`), so workflow code
 * is unaffected.
 *
 * Keys: `SAFESHIFT_CODEC_KEYS=id1:base64key,id2:base64key` (newest first) or `SAFESHIFT_CODEC_KEYS_FILE` (the
 * same list, one or more per line, `#` comments; the file must not be readable by group or others). The newest key
 * encrypts; any listed key decrypts what it encrypted, found by the key id in the payload's metadata, so a rotated
 * key stays listed (second or later) until no history needs it. `SAFESHIFT_CODEC_KEYS=off` sends plaintext, on
 * purpose. With nothing set, connecting refuses: history is never plaintext by accident.
 *
 * Encrypted payload: metadata `encoding: binary/encrypted`, `encryption-key-id: <id>`, `encryption-cipher:
 * AES-256-GCM`; data = 12-byte IV, ciphertext, 16-byte tag. The plaintext is the original Payload message in
 * protobuf wire format (what other SDKs' encryption codecs encrypt, too); the key id is authenticated data, so a
 * payload cannot be relabelled to another key.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { Payload, PayloadCodec } from '@temporalio/common';

export const ENCODING_ENCRYPTED = 'binary/encrypted';
export const METADATA_KEY_ID = 'encryption-key-id';
export const METADATA_CIPHER = 'encryption-cipher';
const CIPHER = 'AES-256-GCM';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_ID = /^[A-Za-z0-9._-]{1,64}$/;

export interface CodecKey {
  id: string;
  key: Buffer;
}

/** A problem with the codec's configuration or with a payload; the message never holds key material. */
export class CodecError extends Error {}

const utf8 = (b: Uint8Array | null | undefined): string => (b ? Buffer.from(b).toString('utf8') : '');

/**
 * `id:base64key` entries separated by commas or newlines, newest first. `source` names where they came from in
 * errors (never the key itself).
 */
export function parseCodecKeys(text: string, source: string): CodecKey[] {
  const keys: CodecKey[] = [];
  const entries = text
    .split('\n')
    .map((line) => line.replace(/#.*$/, ''))
    .flatMap((line) => line.split(','))
    .map((e) => e.trim())
    .filter(Boolean);
  for (const [i, entry] of entries.entries()) {
    const colon = entry.indexOf(':');
    const id = colon < 0 ? '' : entry.slice(0, colon).trim();
    if (!KEY_ID.test(id)) {
      throw new CodecError(`${source}: entry ${i + 1} must be <id>:<base64 key>, the id 1-64 of A-Z a-z 0-9 . _ -`);
    }
    const encoded = entry.slice(colon + 1).trim();
    const key = Buffer.from(encoded, 'base64');
    if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(encoded) || key.length !== 32) {
      throw new CodecError(`${source}: key ${id} must be 32 bytes in base64 (e.g. \`openssl rand -base64 32\`)`);
    }
    if (keys.some((k) => k.id === id)) throw new CodecError(`${source}: key id ${id} is listed twice`);
    keys.push({ id, key });
  }
  if (keys.length === 0) throw new CodecError(`${source}: no key (expected <id>:<base64 key>, newest first)`);
  return keys;
}

/** A file of keys must be the owner's alone, as an SSH key must. */
export function readCodecKeysFile(file: string): CodecKey[] {
  let mode: number;
  let text: string;
  try {
    mode = statSync(file).mode;
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new CodecError(`SAFESHIFT_CODEC_KEYS_FILE=${file} cannot be read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  if ((mode & 0o077) !== 0) {
    throw new CodecError(`SAFESHIFT_CODEC_KEYS_FILE=${file} is readable or writable by others (mode ${(mode & 0o777).toString(8)}); chmod 600 it`);
  }
  return parseCodecKeys(text, `SAFESHIFT_CODEC_KEYS_FILE=${file}`);
}

// --- Payload <-> protobuf wire format (temporal.api.common.v1.Payload: map<string, bytes> metadata = 1; bytes data = 2)

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}

function field(tag: number, bytes: Uint8Array): Buffer[] {
  return [Buffer.from([tag]), varint(bytes.length), Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)];
}

export function serializePayload(p: Payload): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(p.metadata ?? {})) {
    parts.push(...field(0x0a, Buffer.concat([...field(0x0a, Buffer.from(k, 'utf8')), ...field(0x12, v ?? new Uint8Array())])));
  }
  if (p.data && p.data.length > 0) parts.push(...field(0x12, p.data));
  return Buffer.concat(parts);
}

/** Reads length-delimited fields; skips unknown fields of the other wire types. */
function* fields(buf: Buffer): Generator<{ no: number; bytes?: Buffer }> {
  let at = 0;
  const readVarint = (): number => {
    let n = 0;
    let mul = 1;
    for (;;) {
      if (at >= buf.length) throw new CodecError('decrypted payload is not a protobuf Payload');
      const b = buf[at++]!;
      n += (b & 0x7f) * mul;
      if (b < 0x80) return n;
      mul *= 128;
    }
  };
  while (at < buf.length) {
    const key = readVarint();
    const no = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 2) {
      const len = readVarint();
      if (at + len > buf.length) throw new CodecError('decrypted payload is not a protobuf Payload');
      yield { no, bytes: buf.subarray(at, at + len) };
      at += len;
    } else if (wire === 0) {
      readVarint();
      yield { no };
    } else if (wire === 1 || wire === 5) {
      at += wire === 1 ? 8 : 4;
      yield { no };
    } else {
      throw new CodecError('decrypted payload is not a protobuf Payload');
    }
  }
}

export function deserializePayload(buf: Buffer): Payload {
  const metadata: Record<string, Uint8Array> = {};
  let data: Uint8Array = new Uint8Array();
  for (const f of fields(buf)) {
    if (f.no === 1 && f.bytes) {
      let k = '';
      let v: Uint8Array = new Uint8Array();
      for (const e of fields(f.bytes)) {
        if (e.no === 1 && e.bytes) k = e.bytes.toString('utf8');
        if (e.no === 2 && e.bytes) v = new Uint8Array(e.bytes);
      }
      metadata[k] = v;
    } else if (f.no === 2 && f.bytes) {
      data = new Uint8Array(f.bytes);
    }
  }
  return { metadata, data };
}

// --- the codec

const aad = (keyId: string): Buffer => Buffer.from(`safeshift-codec:v1:${keyId}`, 'utf8');

export class AesGcmCodec implements PayloadCodec {
  private readonly byId: Map<string, Buffer>;

  /** `keys` newest first: the first encrypts; all decrypt. No keys: plaintext out, and encrypted payloads refused in. */
  constructor(readonly keys: readonly CodecKey[]) {
    this.byId = new Map(keys.map((k) => [k.id, k.key]));
  }

  get encrypting(): boolean {
    return this.keys.length > 0;
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    const newest = this.keys[0];
    if (!newest) return payloads;
    return payloads.map((p) => {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', newest.key, iv, { authTagLength: TAG_BYTES });
      cipher.setAAD(aad(newest.id));
      const body = Buffer.concat([cipher.update(serializePayload(p)), cipher.final()]);
      return {
        metadata: {
          encoding: Buffer.from(ENCODING_ENCRYPTED),
          [METADATA_KEY_ID]: Buffer.from(newest.id),
          [METADATA_CIPHER]: Buffer.from(CIPHER),
        },
        data: Buffer.concat([iv, body, cipher.getAuthTag()]),
      };
    });
  }

  /** Payloads that are not encrypted (history from before the codec was on) pass through unchanged. */
  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => (utf8(p.metadata?.encoding) === ENCODING_ENCRYPTED ? this.decrypt(p) : p));
  }

  private decrypt(p: Payload): Payload {
    const keyId = utf8(p.metadata?.[METADATA_KEY_ID]);
    const key = this.byId.get(keyId);
    if (!key) {
      throw new CodecError(
        this.keys.length === 0
          ? `payload is encrypted (key id ${keyId || '(none)'}) and no codec key is configured: set SAFESHIFT_CODEC_KEYS or SAFESHIFT_CODEC_KEYS_FILE`
          : `payload is encrypted with key id ${keyId || '(none)'}, which is not among the codec keys (${this.keys.map((k) => k.id).join(', ')}); list it in SAFESHIFT_CODEC_KEYS after the newest key`,
      );
    }
    const data = Buffer.from(p.data ?? new Uint8Array());
    if (data.length < IV_BYTES + TAG_BYTES) throw new CodecError(`payload encrypted with key id ${keyId} is truncated`);
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES });
      decipher.setAAD(aad(keyId));
      decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
      const plain = Buffer.concat([decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)), decipher.final()]);
      return deserializePayload(plain);
    } catch (e) {
      if (e instanceof CodecError) throw e;
      throw new CodecError(`payload encrypted with key id ${keyId} does not decrypt (altered, or another key of the same id)`);
    }
  }
}

/**
 * The codec the environment configures. Refuses when nothing is configured: every safeshift process that talks
 * to Temporal must agree, and a silent plaintext fallback is exactly the leak this exists to close.
 */
export function payloadCodecFromEnv(env: NodeJS.ProcessEnv = process.env): AesGcmCodec {
  const inline = env.SAFESHIFT_CODEC_KEYS?.trim();
  if (inline === 'off') return new AesGcmCodec([]);
  if (inline) return new AesGcmCodec(parseCodecKeys(inline, 'SAFESHIFT_CODEC_KEYS'));
  const file = env.SAFESHIFT_CODEC_KEYS_FILE?.trim();
  if (file) return new AesGcmCodec(readCodecKeysFile(file));
  throw new CodecError(
    'no payload codec key: set SAFESHIFT_CODEC_KEYS=<id>:<base64 32-byte key>[,<older id>:<key>...] or ' +
      'SAFESHIFT_CODEC_KEYS_FILE=<file, mode 600> (`safeshift dev` makes one), or SAFESHIFT_CODEC_KEYS=off to keep ' +
      'Temporal history in plaintext',
  );
}

/** A fresh key list for `safeshift dev`: one random key, its id dated so a later rotation reads naturally. */
export function generateCodecKeys(now: Date = new Date()): string {
  const id = `dev-${now.toISOString().slice(0, 10).replace(/-/g, '')}-${randomBytes(3).toString('hex')}`;
  return `${id}:${randomBytes(32).toString('base64')}\n`;
}

/**
 * The payload codec (issue 14, item 5): AES-256-GCM, key id in the metadata, the newest key encrypts and every
 * listed key decrypts, so a rotated key still reads old history. Keys come from the environment or a file that is
 * the owner's alone; nothing configured is refused, never a silent plaintext fallback.
 */
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import {
  AesGcmCodec, CodecError, deserializePayload, ENCODING_ENCRYPTED, generateCodecKeys, METADATA_KEY_ID, parseCodecKeys,
  payloadCodecFromEnv, serializePayload,
} from '../../src/codec';

const key = (id: string) => ({ id, key: randomBytes(32) });
const entry = (k: { id: string; key: Buffer }) => `${k.id}:${k.key.toString('base64')}`;
const SECRET = { create: 'CREATE TABLE public.payroll_v2 (id int PRIMARY KEY, salary numeric)', source: 'public.payroll' };
const text = (p: Payload) => Buffer.from(p.data ?? []).toString('latin1') + JSON.stringify(p.metadata);
const meta = (p: Payload, k: string) => Buffer.from(p.metadata?.[k] ?? []).toString('utf8');

test('a payload round-trips through the protobuf wire format, metadata and empty data included', () => {
  const p = defaultPayloadConverter.toPayload(SECRET);
  const back = deserializePayload(serializePayload(p));
  expect(defaultPayloadConverter.fromPayload(back)).toEqual(SECRET);
  expect(meta(back, 'encoding')).toBe('json/plain');
  const empty = deserializePayload(serializePayload({ metadata: { encoding: Buffer.from('binary/null') } }));
  expect(meta(empty, 'encoding')).toBe('binary/null');
  expect(Buffer.from(empty.data ?? []).length).toBe(0);
});

test('encode hides the plan: binary/encrypted, key id in metadata, no plaintext; decode gives the payload back', async () => {
  const codec = new AesGcmCodec([key('k1')]);
  const plain = defaultPayloadConverter.toPayload(SECRET);
  const [enc] = await codec.encode([plain]);
  expect(meta(enc!, 'encoding')).toBe(ENCODING_ENCRYPTED);
  expect(meta(enc!, METADATA_KEY_ID)).toBe('k1');
  expect(text(enc!)).not.toMatch(/payroll|CREATE TABLE|salary|json\/plain/);
  const [dec] = await codec.decode([enc!]);
  expect(defaultPayloadConverter.fromPayload(dec!)).toEqual(SECRET);
  // Same input twice: different ciphertexts (a fresh IV each time).
  const [again] = await codec.encode([plain]);
  expect(Buffer.from(again!.data!).equals(Buffer.from(enc!.data!))).toBe(false);
});

test('a rotated key still decrypts old payloads; new payloads use the newest key', async () => {
  const old = key('2026-01');
  const fresh = key('2026-06');
  const [before] = await new AesGcmCodec([old]).encode([defaultPayloadConverter.toPayload(SECRET)]);
  const rotated = payloadCodecFromEnv({ SAFESHIFT_CODEC_KEYS: `${entry(fresh)},${entry(old)}` });
  expect(defaultPayloadConverter.fromPayload((await rotated.decode([before!]))[0]!)).toEqual(SECRET);
  const [after] = await rotated.encode([defaultPayloadConverter.toPayload(SECRET)]);
  expect(meta(after!, METADATA_KEY_ID)).toBe('2026-06');
  // Once the old key is removed, its payloads are refused by name, not misread.
  await expect(new AesGcmCodec([fresh]).decode([before!])).rejects.toThrow(/key id 2026-01, which is not among the codec keys \(2026-06\)/);
});

test('an altered payload, a relabelled key id or a wrong key of the same id does not decrypt', async () => {
  const k = key('k1');
  const codec = new AesGcmCodec([k, key('k2')]);
  const [enc] = await codec.encode([defaultPayloadConverter.toPayload(SECRET)]);
  const flipped = Buffer.from(enc!.data!);
  flipped[20] = flipped[20]! ^ 1;
  await expect(codec.decode([{ ...enc!, data: flipped }])).rejects.toThrow(CodecError);
  await expect(codec.decode([{ ...enc!, metadata: { ...enc!.metadata, [METADATA_KEY_ID]: Buffer.from('k2') } }])).rejects.toThrow(/does not decrypt/);
  await expect(new AesGcmCodec([key('k1')]).decode([enc!])).rejects.toThrow(/does not decrypt/);
  await expect(codec.decode([{ ...enc!, data: Buffer.alloc(10) }])).rejects.toThrow(/truncated/);
});

test('plaintext payloads (history from before the codec) pass through; off encrypts nothing and names the missing key', async () => {
  const plain = defaultPayloadConverter.toPayload(SECRET);
  expect(await new AesGcmCodec([key('k1')]).decode([plain])).toEqual([plain]);
  const off = payloadCodecFromEnv({ SAFESHIFT_CODEC_KEYS: 'off' });
  expect(off.encrypting).toBe(false);
  expect(await off.encode([plain])).toEqual([plain]);
  const [enc] = await new AesGcmCodec([key('k9')]).encode([plain]);
  await expect(off.decode([enc!])).rejects.toThrow(/encrypted \(key id k9\) and no codec key is configured/);
});

test('keys from the environment: bad entries are refused by position or id, and no key material is ever quoted', () => {
  const k = randomBytes(32).toString('base64');
  expect(() => parseCodecKeys(`k1:${k},k1:${k}`, 'X')).toThrow('X: key id k1 is listed twice');
  expect(() => parseCodecKeys(`nocolon${k}`, 'X')).toThrow(/X: entry 1 must be <id>:<base64 key>/);
  expect(() => parseCodecKeys(`bad id:${k}`, 'X')).toThrow(/entry 1/);
  const short = randomBytes(16).toString('base64');
  let message = '';
  try {
    parseCodecKeys(`k1:${k},k2:${short}`, 'X');
  } catch (e) {
    message = (e as Error).message;
  }
  expect(message).toMatch(/key k2 must be 32 bytes in base64/);
  expect(message.includes(short) || message.includes(k)).toBe(false);
  expect(() => parseCodecKeys(' ,\n# only a comment\n', 'X')).toThrow(/no key/);
  expect(parseCodecKeys(`# rotated 2026-06\na:${k}\n b:${k} # old\n`, 'X').map((x) => x.id)).toEqual(['a', 'b']);
  expect(() => payloadCodecFromEnv({})).toThrow(/no payload codec key: set SAFESHIFT_CODEC_KEYS/);
});

test('a keys file must be the owner\'s alone; the dev key generator writes a valid list', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'codec-keys-'));
  const file = join(dir, 'codec.keys');
  writeFileSync(file, generateCodecKeys(new Date('2026-11-30T00:00:00Z')));
  chmodSync(file, 0o644);
  expect(() => payloadCodecFromEnv({ SAFESHIFT_CODEC_KEYS_FILE: file })).toThrow(/readable or writable by others \(mode 644\); chmod 600/);
  chmodSync(file, 0o600);
  const codec = payloadCodecFromEnv({ SAFESHIFT_CODEC_KEYS_FILE: file });
  expect(codec.keys[0]!.id).toMatch(/^dev-20261130-[0-9a-f]{6}$/);
  const [enc] = await codec.encode([defaultPayloadConverter.toPayload(SECRET)]);
  expect(defaultPayloadConverter.fromPayload((await codec.decode([enc!]))[0]!)).toEqual(SECRET);
  expect(() => payloadCodecFromEnv({ SAFESHIFT_CODEC_KEYS_FILE: join(dir, 'missing') })).toThrow(/cannot be read: ENOENT/);
});

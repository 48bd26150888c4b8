/**
 * The key registry's trust (issue 14 item 1, the audit's finding): a decider's key counts only with a registration
 * signed by an administrator whose public key comes from outside the database (src/identity.ts, src/admin-keys.ts).
 */
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { adminKeysFromEnv, parseAdminKeys, requireAdminKeys } from '../../src/admin-keys';
import {
  generateKeyPair, keyFingerprint, keyStatementText, parseDecisionPayload, parseKeyStatement, signDecision, signKeyStatement,
  verifyKeyStatement, type AdminKey, type KeyStatement,
} from '../../src/identity';

const admin = generateKeyPair();
const mallory = generateKeyPair();
const bob = generateKeyPair();
const admins: AdminKey[] = [{ name: 'root', publicKey: admin.publicKey }];
const registration: KeyStatement = { action: 'keys:add', name: 'Bob', publicKey: bob.publicKey, admin: 'Root', time: '2026-11-30T10:00:00.000Z' };
const want = { action: 'keys:add' as const, name: 'bob', publicKey: bob.publicKey };

test('a registration has one canonical form: sorted members, names lower-cased, nothing else', () => {
  const text = keyStatementText(registration);
  expect(text).toBe(`{"action":"keys:add","admin":"root","name":"bob","publicKey":"${bob.publicKey}","time":"2026-11-30T10:00:00.000Z"}`);
  expect(keyStatementText({ time: registration.time, admin: 'ROOT', publicKey: bob.publicKey, name: 'BOB', action: 'keys:add' })).toBe(text);
  expect(parseKeyStatement(text)).toEqual({ ...registration, name: 'bob', admin: 'root' });
  // Any other spelling of the same content, or one more member, is not a statement.
  expect(parseKeyStatement(text.replace('{"action"', '{ "action"'))).toBeUndefined();
  expect(parseKeyStatement(text.replace('"admin":"root"', '"admin":"Root"'))).toBeUndefined();
  expect(parseKeyStatement(text.replace('}', ',"extra":1}'))).toBeUndefined();
  expect(parseKeyStatement(text.replace(bob.publicKey, 'zz'))).toBeUndefined();
});

test('a registration counts only when an administrator of the list signed exactly this name and key', () => {
  const signed = signKeyStatement(registration, admin.privateKey);
  expect(verifyKeyStatement(signed.statement, signed.signature, want, admins)).toMatchObject({ ok: true });
  // Inserted directly: no statement, no signature.
  expect(verifyKeyStatement(null, null, want, admins)).toMatchObject({ ok: false, reason: expect.stringMatching(/not signed by an administrator/) });
  // Signed by a non-administrator, whatever name it claims.
  const byMallory = signKeyStatement({ ...registration, admin: 'mallory' }, mallory.privateKey);
  expect(verifyKeyStatement(byMallory.statement, byMallory.signature, want, admins)).toMatchObject({ ok: false, reason: expect.stringMatching(/mallory, who is not an administrator/) });
  const claimsRoot = signKeyStatement(registration, mallory.privateKey);
  expect(verifyKeyStatement(claimsRoot.statement, claimsRoot.signature, want, admins)).toMatchObject({ ok: false, reason: "the signature is not root's" });
  // A good registration copied onto another name's row, or another key's row, does not carry over.
  expect(verifyKeyStatement(signed.statement, signed.signature, { ...want, name: 'alice' }, admins)).toMatchObject({ ok: false });
  expect(verifyKeyStatement(signed.statement, signed.signature, { ...want, publicKey: mallory.publicKey }, admins)).toMatchObject({ ok: false });
  // A revocation is not a registration, and the other way round.
  const revocation = signKeyStatement({ ...registration, action: 'keys:revoke' }, admin.privateKey);
  expect(verifyKeyStatement(revocation.statement, revocation.signature, want, admins)).toMatchObject({ ok: false });
  expect(verifyKeyStatement(signed.statement, signed.signature, { ...want, action: 'keys:revoke' }, admins)).toMatchObject({ ok: false });
  // Reasons name a fingerprint, never a key.
  const other = verifyKeyStatement(signed.statement, signed.signature, { ...want, publicKey: mallory.publicKey }, admins);
  expect(JSON.stringify(other)).not.toContain(bob.publicKey);
});

test('a key statement and a decision cannot pass for each other', () => {
  const signed = signKeyStatement(registration, admin.privateKey);
  expect(parseDecisionPayload(signed.statement)).toBeUndefined();
  const decision = signDecision({ by: 'root', workflowId: 'w', runId: 'r', gate: null, action: 'pause', planHash: 'a'.repeat(64), reason: null, time: registration.time }, admin.privateKey);
  expect(parseKeyStatement(decision.payload)).toBeUndefined();
  expect(verifyKeyStatement(decision.payload, decision.signature, want, admins)).toMatchObject({ ok: false });
});

test('a fingerprint is short, stable and not the key', () => {
  expect(keyFingerprint(bob.publicKey)).toMatch(/^[0-9a-f]{16}$/);
  expect(keyFingerprint(bob.publicKey)).toBe(keyFingerprint(bob.publicKey));
  expect(bob.publicKey.startsWith(keyFingerprint(bob.publicKey))).toBe(false);
});

test('administrators come from SAFESHIFT_ADMIN_KEYS or a file nobody else may write; none means nothing starts', () => {
  const b64 = Buffer.from(admin.publicKey, 'hex').toString('base64');
  expect(parseAdminKeys(`Root=${admin.publicKey}, ops=${b64}\n# comment\n`, 'X')).toEqual([
    { name: 'root', publicKey: admin.publicKey }, { name: 'ops', publicKey: admin.publicKey }]);
  expect(() => parseAdminKeys(`root=${admin.publicKey},ops=short`, 'SAFESHIFT_ADMIN_KEYS')).toThrow(/SAFESHIFT_ADMIN_KEYS: entry 2 is not name=public-key/);
  expect(() => parseAdminKeys(admin.publicKey, 'X')).toThrow(/entry 1/);
  expect(adminKeysFromEnv({})).toBeUndefined();
  expect(() => requireAdminKeys({})).toThrow(/SAFESHIFT_ADMIN_KEYS .*SAFESHIFT_ADMIN_KEYS_FILE/);
  const dir = mkdtempSync(join(tmpdir(), 'admins-'));
  const file = join(dir, 'admin.keys');
  writeFileSync(file, `# the administrators\nroot=${admin.publicKey}\n`, { mode: 0o600 });
  expect(adminKeysFromEnv({ SAFESHIFT_ADMIN_KEYS_FILE: file, SAFESHIFT_ADMIN_KEYS: `ops=${b64}` })).toEqual([
    { name: 'ops', publicKey: admin.publicKey }, { name: 'root', publicKey: admin.publicKey }]);
  chmodSync(file, 0o666);
  expect(() => adminKeysFromEnv({ SAFESHIFT_ADMIN_KEYS_FILE: file })).toThrow(/writable by group or others/);
  expect(() => adminKeysFromEnv({ SAFESHIFT_ADMIN_KEYS_FILE: join(dir, 'missing') })).toThrow(/cannot read it \(ENOENT\)/);
  expect(() => adminKeysFromEnv({ SAFESHIFT_ADMIN_KEYS: ' , ' })).toThrow(/lists no administrator/);
});

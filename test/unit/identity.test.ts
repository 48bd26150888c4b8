/** Signed decisions and the plan hash (src/identity.ts): pure, the same code the workflow runs in its sandbox. */
import {
  canonicalJson, generateKeyPair, parseDecisionPayload, planHashOf, publicKeyOf, sameName, signDecision, verifySignature,
  type DecisionPayload,
} from '../../src/identity';

const decision: DecisionPayload = {
  by: 'bob', workflowId: 'migration-x', runId: 'r1', gate: 'cutover', action: 'approve', planHash: 'a'.repeat(64),
  reason: null, time: '2026-01-01T00:00:00.000Z',
};

test('canonical JSON: key order never matters, undefined members are left out, nesting is sorted too', () => {
  expect(canonicalJson({ b: 1, a: { d: [1, { f: 2, e: 'x' }], c: undefined } })).toBe('{"a":{"d":[1,{"e":"x","f":2}]},"b":1}');
  expect(canonicalJson({ a: 1, b: 2 })).toBe(canonicalJson({ b: 2, a: 1 }));
});

test('the plan hash covers the target DDL and every expression, not only the file around them', () => {
  const plan = { name: 'p', createSql: 'CREATE TABLE t (a int)', columns: { a: 'a' }, reverse: { a: 'a' } };
  const h = planHashOf(plan);
  expect(h).toMatch(/^[0-9a-f]{64}$/);
  expect(planHashOf({ reverse: { a: 'a' }, columns: { a: 'a' }, createSql: 'CREATE TABLE t (a int)', name: 'p' })).toBe(h);
  expect(planHashOf({ ...plan, createSql: 'CREATE TABLE t (a bigint)' })).not.toBe(h);
  expect(planHashOf({ ...plan, columns: { a: 'password_hash' } })).not.toBe(h);
  expect(planHashOf({ ...plan, reverse: { a: 'a::text' } })).not.toBe(h);
});

test('a signature verifies only with the signer\'s key and only over the exact text signed', () => {
  const bob = generateKeyPair();
  const mallory = generateKeyPair();
  expect(publicKeyOf(bob.privateKey)).toBe(bob.publicKey);
  const signed = signDecision(decision, bob.privateKey);
  expect(signed.signature).toMatch(/^[0-9a-f]{128}$/);
  expect(verifySignature(signed.payload, signed.signature, bob.publicKey)).toBe(true);
  expect(verifySignature(signed.payload, signed.signature, mallory.publicKey)).toBe(false);
  expect(verifySignature(signed.payload.replace('cutover', 'drop'), signed.signature, bob.publicKey)).toBe(false);
  expect(verifySignature(signed.payload, 'zz', bob.publicKey)).toBe(false);
  expect(parseDecisionPayload(signed.payload)).toEqual(decision);
});

test('a payload without the fields of a decision is not one', () => {
  expect(parseDecisionPayload('not json')).toBeUndefined();
  expect(parseDecisionPayload('{}')).toBeUndefined();
  expect(parseDecisionPayload(JSON.stringify({ ...decision, action: 'drop-table' }))).toBeUndefined();
  expect(parseDecisionPayload(JSON.stringify({ ...decision, time: 'yesterday' }))).toBeUndefined();
  expect(parseDecisionPayload(JSON.stringify({ ...decision, by: '' }))).toBeUndefined();
});

test('names compare in any letter case', () => {
  expect(sameName('Mallory', 'mallory')).toBe(true);
  expect(sameName('CAROL', 'carol')).toBe(true);
  expect(sameName('carol', 'carol2')).toBe(false);
});

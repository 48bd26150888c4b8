/**
 * readKeysAtStart (workflows/shared.ts): the keys a workflow fixes at its start, and the ignored registrations it
 * audits in its own numbered record. A worker from before readDeciderKeys returned ignored keys answered the keys
 * alone: a history holding that answer is read the same way on replay.
 */
import { readKeysAtStart } from '../../workflows/shared';

const input = { db: 'postgres://x', names: ['alice', 'bob'] };
const key = 'a'.repeat(64);

test('an answer from an older worker (the keys alone) is read as the keys, with nothing ignored and nothing audited', async () => {
  const audited: unknown[] = [];
  const read = await readKeysAtStart(async () => ({ alice: [key], bob: [] }), input, async (...row) => { audited.push(row); });
  expect(read).toEqual({ keys: { alice: [key], bob: [] }, ignored: [] });
  expect(audited).toEqual([]);
});

test('a person named "keys" in an older answer is a person, not the new shape', async () => {
  const read = await readKeysAtStart(async () => ({ keys: [key] }), input, async () => undefined);
  expect(read).toEqual({ keys: { keys: [key] }, ignored: [] });
});

test('each ignored registration is audited by the workflow, person, fingerprint and reason, never the key', async () => {
  const audited: unknown[][] = [];
  const ignored = [{ name: 'bob', fingerprint: '0123456789abcdef', reason: 'not signed by an administrator' }];
  const read = await readKeysAtStart(async () => ({ keys: { alice: [key], bob: [] }, ignored }), input, async (...row) => { audited.push(row); });
  expect(read.keys).toEqual({ alice: [key], bob: [] });
  expect(audited).toEqual([['safeshift', 'keys:ignored', { name: 'bob', fingerprint: '0123456789abcdef', reason: 'not signed by an administrator' }]]);
});

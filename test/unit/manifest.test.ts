/**
 * The pure half of "manifests are data, never SQL": a column type is accepted only if PostgreSQL's parser reads it
 * as one type name; the manifest's MAC changes with any value; exports are encrypted whenever a key is configured.
 */
import { randomBytes } from 'node:crypto';
import { exportKeyEnv } from '../../src/export';
import { manifestMac, typeNameProblem, type Manifest } from '../../src/manifest';

test.each([
  'integer', 'numeric(30,10)', 'timestamp with time zone', 'interval day to second(3)', 'text[]', 'character varying(20)[]',
  '"Odd Type"', 'public.mood', 'bit varying(3)', 'double precision',
])('%s is a type name', async (type) => {
  expect(await typeNameProblem(type)).toBeUndefined();
});

test.each([
  ['timestamptz); COMMIT; DROP TABLE public.victim; COMMIT; --', /^not a type name \(syntax error/],
  ['int; DROP TABLE public.victim', /^not a type name \(2 statements\)$/],
  ['int, b int', /^not a type name$/],
  ['int + 1', /^not a type name$/],
  ['setof int', /SETOF/],
  ['numeric((SELECT 1))', /not a type name|not a constant/],
  ['varchar(length(current_user))', /not a type name|not a constant/],
  ['int FROM pg_authid', /^not a type name$/],
])('%s is refused', async (type, expected) => {
  expect(await typeNameProblem(type)).toMatch(expected);
});

test('the manifest MAC depends on every value and on the key, not on formatting or field order', () => {
  const m: Manifest = {
    format: 'safeshift-export/1', id: 'b1', server: 'PostgreSQL 18', database: 'd', snapshotAt: '2026-01-01T00:00:00.000000Z',
    encryption: { algorithm: 'aes-256-gcm', keyId: '0123456789abcdef' },
    tables: [{ schema: 's', name: 't', file: 's.t.copy.gz.enc', columns: [{ name: 'a', type: 'integer' }], rows: 1, checksum: '-5', sha256: 'a'.repeat(64), bytes: 10 }],
  };
  const key = randomBytes(32);
  const mac = manifestMac(m, key);
  expect(manifestMac({ ...m, mac: 'f'.repeat(64) }, key)).toBe(mac);
  const reordered = JSON.parse(JSON.stringify({ tables: m.tables, id: m.id, encryption: m.encryption, format: m.format, server: m.server, database: m.database, snapshotAt: m.snapshotAt })) as Manifest;
  expect(manifestMac(reordered, key)).toBe(mac);
  expect(manifestMac({ ...m, tables: [{ ...m.tables[0]!, columns: [{ name: 'a', type: 'bigint' }] }] }, key)).not.toBe(mac);
  expect(manifestMac({ ...m, tables: [{ ...m.tables[0]!, rows: 2 }] }, key)).not.toBe(mac);
  expect(manifestMac(m, randomBytes(32))).not.toBe(mac);
});

test('an export is encrypted whenever SAFESHIFT_BACKUP_KEY is set where it is written, unless --no-encrypt (\'\')', () => {
  expect(exportKeyEnv(undefined, { SAFESHIFT_BACKUP_KEY: 'k' })).toBe('SAFESHIFT_BACKUP_KEY');
  expect(exportKeyEnv(undefined, {})).toBeUndefined();
  expect(exportKeyEnv(undefined, { SAFESHIFT_BACKUP_KEY: '' })).toBeUndefined();
  expect(exportKeyEnv('', { SAFESHIFT_BACKUP_KEY: 'k' })).toBeUndefined();
  expect(exportKeyEnv('OTHER_KEY', {})).toBe('OTHER_KEY');
});

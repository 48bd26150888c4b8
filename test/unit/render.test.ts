import { humanCount, humanDuration, renderStatus } from '../../src/cli/render';
import type { MigrationStatus } from '../../src/messages';

test('durations and counts are rounded for people', () => {
  expect(humanDuration(29057.673095703125)).toBe('29 s');
  expect(humanDuration(412.5)).toBe('0.4 s');
  expect(humanDuration(252_000)).toBe('4 min 12 s');
  expect(humanDuration(3 * 3600_000 + 20 * 60_000 + 10_000)).toBe('3 h 20 min');
  expect(humanDuration(53 * 3600_000)).toBe('2 d 5 h');
  expect(humanCount(12345.4)).toBe('12,345');
  expect(humanCount(123_456_789)).toBe('123.5M');
});

test('the copy line says throttled in seconds, and a status from the record says where it came from', () => {
  const s = {
    name: 'n', planHash: 'a'.repeat(64), source: 'public.t', target: 'public.t_v2', requestedBy: 'carol', phase: 'copy', paused: false, abortRequested: false,
    copy: { rowsCopied: 1500, rowsTotal: 3000, chunks: 3, lastKey: null, rowsPerSecond: 612.4, etaSeconds: 3, throttledMs: 29057.673095703125, rowsRedone: 0, chunkRows: 500, parallel: 1, format: 'text' },
    catchUp: { backlogRows: 0, lagSeconds: 0, replayedChanges: 0 }, gates: [], phaseDurationsMs: { copy: 1234.5678 }, warnings: [], compensations: [],
    startedAt: '2026-01-01T00:00:00Z', updatedAt: '2026-01-01T00:00:00Z',
  } as MigrationStatus;
  const text = renderStatus('migration-n', s, undefined, { recorded: { from: 'ledger', at: '2026-01-01T00:00:00Z', note: 'no worker is answering' } });
  expect(text).toMatch(/throttled 29 s/);
  expect(text).toMatch(/612 rows\/s/);
  expect(text).toMatch(/copy 1.2 s/);
  expect(text.split('\n')[0]).toBe('(no worker is answering)');
  expect(text).not.toMatch(/\d\.\d{4,}/);
});

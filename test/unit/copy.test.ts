import { resumePoint, tuneChunkRows, type ChunkRecord } from '../../src/copy';

const chunk = (seq: number, lo: string | null, hi: string | null, rows: number | null = 10): ChunkRecord => ({ seq, lo: lo === null ? null : [lo], hi: hi === null ? null : [hi], rows });

describe('resumePoint: where a copy stands, from its chunk records', () => {
  test('nothing recorded: start at the beginning', () => {
    expect(resumePoint([])).toEqual({ inFlight: [], frontier: null, nextSeq: 1, finished: false, rows: 0, chunks: 0 });
  });

  test('all committed: go on after the last chunk handed out', () => {
    const p = resumePoint([chunk(2, '10', '20'), chunk(1, null, '10'), chunk(3, '20', '30')]);
    expect(p).toEqual({ inFlight: [], frontier: ['30'], nextSeq: 4, finished: false, rows: 30, chunks: 3 });
  });

  test('chunks handed out but never committed are in flight, wherever they are, and not counted', () => {
    const p = resumePoint([chunk(1, null, '10'), chunk(2, '10', '20', null), chunk(3, '20', '30'), chunk(4, '30', '40', null)]);
    expect(p.inFlight).toEqual([{ seq: 2, lo: ['10'], hi: ['20'] }, { seq: 4, lo: ['30'], hi: ['40'] }]);
    expect(p).toMatchObject({ frontier: ['40'], nextSeq: 5, finished: false, rows: 20, chunks: 2 });
  });

  test('finished once the chunk ending at the table end was handed out; chunks in flight still remain', () => {
    const p = resumePoint([chunk(1, null, '10', null), chunk(2, '10', null)]);
    expect(p).toMatchObject({ finished: true, inFlight: [{ seq: 1, lo: null, hi: ['10'] }] });
  });
});

describe('tuneChunkRows: toward the target time per chunk', () => {
  const sizing = { targetMs: 2000, min: 100, max: 1_000_000 };
  test('at most doubles or halves per chunk', () => {
    expect(tuneChunkRows(10_000, 10_000, 100, sizing)).toBe(20_000);
    expect(tuneChunkRows(10_000, 10_000, 60_000, sizing)).toBe(5_000);
  });
  test('moves to the size that would have taken the target time', () => {
    expect(tuneChunkRows(10_000, 10_000, 1600, sizing)).toBe(12_500);
  });
  test('stays within bounds, and off when there is no target', () => {
    expect(tuneChunkRows(900_000, 900_000, 10, sizing)).toBe(1_000_000);
    expect(tuneChunkRows(150, 150, 60_000, sizing)).toBe(100);
    expect(tuneChunkRows(5000, 5000, 10, { ...sizing, targetMs: 0 })).toBe(5000);
  });
});

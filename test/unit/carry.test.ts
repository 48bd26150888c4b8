/** What a continued migration run does and remembers (workflows/carry.ts): pure parts. */
import { runsSoFar, runsStep, type Carried } from '../../workflows/carry';

test('a continued run takes the migration up at its resume point and does everything after it, nothing before', () => {
  expect(runsStep(undefined, 'copy')).toBe(true);
  expect(runsStep('copy', 'copy')).toBe(true);
  expect(runsStep('copy', 'build')).toBe(true);
  expect(runsStep('catch_up', 'build')).toBe(false);
  expect(runsStep('catch_up', 'validate')).toBe(true);
  expect(runsStep('awaiting_cutover', 'validate')).toBe(false);
  expect(runsStep('awaiting_cutover', 'cutover')).toBe(true);
  expect(runsStep('awaiting_drop', 'verify')).toBe(false);
  expect(runsStep('awaiting_drop', 'awaiting_drop')).toBe(true);
});

test('the runs a decision may be signed for: the first always, and the latest twenty', () => {
  const carried = (runs: string[]) => ({ runs } as Pick<Carried, 'runs'> as Carried);
  expect(runsSoFar(undefined, 'r0')).toEqual(['r0']);
  expect(runsSoFar(carried(['r0', 'r1']), 'r2')).toEqual(['r0', 'r1', 'r2']);
  const many = Array.from({ length: 30 }, (_, i) => `r${i}`);
  const kept = runsSoFar(carried(many), 'r30');
  expect(kept[0]).toBe('r0');
  expect(kept).toHaveLength(21);
  expect(kept.slice(1)).toEqual(Array.from({ length: 20 }, (_, i) => `r${i + 11}`));
});

import { doneReason, rollbackRequestedReason } from '../../src/messages';

test('a finished migration with a compatibility view says the old name is a view over the new table, not that it has the new shape', () => {
  expect(doneReason({ source: 'public.profiles', target: 'shared.profiles' }, true, 12))
    .toBe('shared.profiles is the new table and public.profiles a view over it with the old columns; 12 rows moved');
  expect(doneReason({ source: 'public.profiles', target: 'public.profiles_v2' }, false, 12)).toBe('public.profiles now has the new shape; 12 rows moved');
});

test('a rollback asked for after cutover is reported as such, with who and why', () => {
  expect(rollbackRequestedReason('carol', 'old code still breaks')).toBe('rolled back after cutover at the request of carol: old code still breaks');
  expect(rollbackRequestedReason('carol')).toBe('rolled back after cutover at the request of carol');
});

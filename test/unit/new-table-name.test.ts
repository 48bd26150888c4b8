/**
 * `cutover.newTableName`: which name the new table has after cutover. The plan says it (or leaves the default,
 * the source's name; the target's with compatView); a contradiction is refused naming the field.
 */
import { doneReason } from '../../src/messages';
import { planSchema } from '../../src/plan/schema';
import { accessAs, keepsOwnName, newTableHome, renamesAway } from '../../src/swap';

const plan = (cutover?: Record<string, unknown>) => ({
  version: 1, name: 'items-products', database: 'DATABASE_URL', requestedBy: 'carol', source: 's.items', target: 's.products',
  approvals: { cutover: { approvers: ['alice'] }, drop: { approvers: ['alice'] } },
  ...(cutover ? { cutover } : {}),
});
const spec = { source: { schema: 's', name: 'items' }, target: { schema: 's', name: 'products' } };

test.each([
  [undefined, 's.items', false],
  [{ newTableName: 'source' }, 's.items', false],
  [{ newTableName: 'target' }, 's.products', true],
  [{ compatView: true }, 's.products', false],
  [{ compatView: true, newTableName: 'target' }, 's.products', false],
])('cutover %j: the new table is %s after cutover (old name gone: %s)', (cutover, home, gone) => {
  const parsed = planSchema.parse(plan(cutover));
  const at = newTableHome(spec, keepsOwnName(parsed.cutover));
  expect(`${at.schema}.${at.name}`).toBe(home);
  expect(renamesAway(parsed.cutover)).toBe(gone);
});

test('newTableName: source with compatView is refused, naming the field; an unknown value too', () => {
  const contradiction = planSchema.safeParse(plan({ compatView: true, newTableName: 'source' }));
  expect(contradiction.success).toBe(false);
  expect(contradiction.error!.issues.map((i) => i.path.join('.'))).toEqual(['cutover.newTableName']);
  expect(planSchema.safeParse(plan({ newTableName: 'products' })).error!.issues.map((i) => i.path.join('.'))).toEqual(['cutover.newTableName']);
});

test('access read through the new name is keyed as the old name, columns included; other objects untouched', () => {
  const m = accessAs({
    objects: { live: spec.source, readers: [], sequences: [] },
    entries: { 'anon: SELECT on s.products': true, 'anon: UPDATE on s.products (name)': false, 'anon: SELECT on s.products_view (id)': true, 'anon: USAGE on sequence s.items_id_seq': true },
    rowSecurity: [], unprobed: [],
  }, spec.target, spec.source);
  expect(m.entries).toEqual({ 'anon: SELECT on s.items': true, 'anon: UPDATE on s.items (name)': false, 'anon: SELECT on s.products_view (id)': true, 'anon: USAGE on sequence s.items_id_seq': true });
});

test('the outcome says which name the new table has', () => {
  const names = { source: 's.items', target: 's.products' };
  expect(doneReason(names, { compatView: false, newTableName: 'target' }, 3)).toBe('s.products is the new table under its own name and s.items is gone; 3 rows moved');
  expect(doneReason(names, { compatView: false }, 3)).toBe('s.items now has the new shape; 3 rows moved');
});

import { requalifyColumns } from '../../src/statements';

test('column references qualified by the old table name name the new table; strings, comments and schema-qualified names stay', async () => {
  const deparsed = `(EXISTS ( SELECT 1 FROM public.stories_shared s, shared.m m WHERE ((m.p = stories_shared.project_id) AND ('stories_shared.x' <> stories_shared.title))))`;
  expect(await requalifyColumns(deparsed, 'stories_shared', 'stories')).toBe(
    `(EXISTS ( SELECT 1 FROM public.stories_shared s, shared.m m WHERE ((m.p = "stories".project_id) AND ('stories_shared.x' <> "stories".title))))`);
  // Quoted and keyword names, and non-ASCII text before them (byte offsets).
  expect(await requalifyColumns(`'é' = "My T".a AND data.b = 1 -- data.c`, 'My T', 'new')).toBe(`'é' = "new".a AND data.b = 1 -- data.c`);
  expect(await requalifyColumns(`data.b = 1`, 'data', 'Data 2')).toBe(`"Data 2".b = 1`);
  expect(await requalifyColumns(`x = 1`, 'same', 'same')).toBe('x = 1');
});

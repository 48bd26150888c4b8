import { displayName, nameWithSuffix, parseIdent, parseTableRef, quoteIdent, quoteLiteral, utf8Bytes } from '../../src/sql';

describe('identifiers', () => {
  test('quoteIdent doubles embedded quotes and refuses names PostgreSQL would truncate', () => {
    expect(quoteIdent('profiles')).toBe('"profiles"');
    expect(quoteIdent('we"ird')).toBe('"we""ird"');
    expect(() => quoteIdent('x'.repeat(64))).toThrow(/longer than 63 bytes/);
    expect(() => quoteIdent('é'.repeat(32))).toThrow(/longer than 63 bytes/); // 64 bytes in UTF-8
    expect(() => quoteIdent('')).toThrow(/empty/);
  });

  test('nameWithSuffix shortens the base to fit 63 bytes, never splitting a character', () => {
    expect(nameWithSuffix('profiles', '_retired_20261124000000')).toBe('profiles_retired_20261124000000');
    const long = nameWithSuffix('x'.repeat(60), '_retired_20261124000000');
    expect([long.length, long.endsWith('_retired_20261124000000')]).toEqual([63, true]);
    const emoji = nameWithSuffix('🙂'.repeat(20), '_retired_20261124000000');
    expect(utf8Bytes(emoji)).toBeLessThanOrEqual(63);
    expect(emoji).toBe(`${'🙂'.repeat(10)}_retired_20261124000000`);
    expect(() => quoteIdent(emoji)).not.toThrow();
  });

  test('parseTableRef takes plain or quoted parts and defaults the schema to public', () => {
    expect(parseTableRef('profiles')).toEqual({ schema: 'public', name: 'profiles' });
    expect(parseTableRef('shared.profiles')).toEqual({ schema: 'shared', name: 'profiles' });
    expect(parseTableRef('"My Schema"."Odd""Name"')).toEqual({ schema: 'My Schema', name: 'Odd"Name' });
    expect(parseTableRef('"a.b".c')).toEqual({ schema: 'a.b', name: 'c' });
  });

  test.each(['Profiles', 'public.profiles; drop table x', 'a.b.c', '', '"unterminated', 'public.', '1abc'])('parseTableRef refuses %j', (text) => {
    expect(parseTableRef(text)).toBeUndefined();
  });

  test('parseIdent accepts only the folded lower-case form unquoted', () => {
    expect(parseIdent('display_name')).toBe('display_name');
    expect(parseIdent('DisplayName')).toBeUndefined();
    expect(parseIdent('"DisplayName"')).toBe('DisplayName');
  });

  test('displayName quotes only where needed; literals escape quotes', () => {
    expect(displayName({ schema: 'public', name: 'profiles' })).toBe('public.profiles');
    expect(displayName({ schema: 'public', name: 'Profiles' })).toBe('public."Profiles"');
    expect(quoteLiteral("it's")).toBe("'it''s'");
    // An escape string whatever standard_conforming_strings is: a backslash cannot end the literal early.
    expect(quoteLiteral("\\'; DROP TABLE x; --")).toBe("E'\\\\''; DROP TABLE x; --'");
  });
});

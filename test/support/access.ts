/** The privilege matrix of a table in the test database, read as the cutover reads it (src/access-matrix.ts). */
import pg from 'pg';
import { readAccess, type AccessMatrix, type AccessObjects } from '../../src/access-matrix';

/** `objects`: the same objects are asked about after as before, as the cutover does. */
export async function accessOf(table: string, objects?: AccessObjects): Promise<AccessMatrix> {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  try {
    return await readAccess(client, { schema: 'public', name: table }, objects);
  } finally {
    await client.end();
  }
}

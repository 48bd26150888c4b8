/** The people of the integration tests: each gets a dev key, registered once per run by global setup. */
export const TEST_PEOPLE = ['alice', 'bob', 'carol', 'dave', 'mallory'];

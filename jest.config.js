/**
 * Two projects: unit tests need nothing; integration tests share one real stack (embedded PostgreSQL, Temporal
 * dev server, worker) started by `safeshift dev` in globalSetup, exactly as an operator would start it.
 */
const transform = { '^.+\\.ts$': ['@swc/jest', { jsc: { target: 'es2022' } }] };

module.exports = {
  testTimeout: 180_000,
  // Integration files share one worker and one database, and bad-plans compares whole-catalog snapshots: they
  // must not run side by side, whatever the core count of the machine (on 2 cores jest picks 1 anyway).
  maxWorkers: 1,
  projects: [
    {
      displayName: 'unit',
      testEnvironment: 'node',
      transform,
      testMatch: ['<rootDir>/test/unit/**/*.test.ts'],
    },
    {
      displayName: 'integration',
      testEnvironment: 'node',
      transform,
      testMatch: ['<rootDir>/test/integration/**/*.test.ts'],
      globalSetup: '<rootDir>/test/support/global-setup.ts',
      globalTeardown: '<rootDir>/test/support/global-teardown.ts',
    },
  ],
};

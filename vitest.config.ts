import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    // Child processes, not worker threads: the native addon, forked children, real signals and
    // process exit hooks behave as in production only in a real process of their own.
    pool: 'forks',
    // One test file at a time. This is a 2-core machine and the tests spawn processes (crash and
    // multi-process tests are timing-sensitive under contention; test/package.test.ts compiles
    // the addon in a clone of HEAD, which takes both cores).
    fileParallelism: false,
  },
});

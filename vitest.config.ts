import {defineConfig} from 'vitest/config'

// Two projects (`npm test` runs both, unit first; `npm run test:unit` runs only unit):
//  - unit: tests next to the code. No root, no runsc/runc/buildah, no images, no global setup;
//    seconds to run. Host programs they need are stand-ins under test/fixtures.
//  - e2e: test/e2e and test/security. Real `agent` processes and launchers against real
//    runsc/runc/buildah, as root, booting the images the global setup builds (once, shared).
// Two workers: this is a 2-core host. test/helpers/skip-reporter.ts lists every skip with its
// reason, and fails the run on Linux CI if anything was skipped.
export default defineConfig({
  test: {
    exclude: ['**/node_modules/**', '**/dist/**'],
    maxWorkers: 2,
    reporters: ['default', './test/helpers/skip-reporter.ts'],
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['packages/*/src/**/*.test.ts', 'plugins/*/src/**/*.test.ts'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
          sequence: {groupOrder: 0},
        },
      },
      {
        extends: true,
        test: {
          name: 'e2e',
          include: ['test/**/*.test.ts'],
          testTimeout: 180_000,
          hookTimeout: 300_000,
          globalSetup: ['test/helpers/global-setup.ts'],
          sequence: {groupOrder: 1},
        },
      },
    ],
  },
})

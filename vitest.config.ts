import {defineConfig} from 'vitest/config'

// One run covers unit tests (next to the code) and end-to-end tests (test/), which start
// real `agent` processes against real runsc/runc/buildah. Two workers: this is a 2-core host.
export default defineConfig({
  test: {
    include: ['packages/*/src/**/*.test.ts', 'plugins/*/src/**/*.test.ts', 'test/**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**'],
    testTimeout: 180_000,
    hookTimeout: 300_000,
    maxWorkers: 2,
    reporters: ['default'],
    globalSetup: ['test/helpers/global-setup.ts'],
  },
})

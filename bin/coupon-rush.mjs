#!/usr/bin/env node
// Node 24 runs the TypeScript sources directly (type stripping): no build step. An older Node would fail on
// the first `.ts` import with ERR_UNKNOWN_FILE_EXTENSION, so say what is needed before importing any.
const major = Number(process.versions.node.split('.')[0])
if (major < 24) {
  console.error(
    `coupon-rush needs Node.js >= 24 (this is ${process.version} at ${process.execPath}); ` +
      '`npm start` (or `npm run serve`) runs it on the Node 24 that `npm ci` installs in node_modules/.bin',
  )
  process.exit(1)
}
const { main } = await import('../src/cli.ts')

main(process.argv.slice(2), process.env).catch((error) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : error)
  process.exit(1)
})

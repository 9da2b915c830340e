#!/usr/bin/env node
// Node 24 runs the TypeScript sources directly (type stripping): no build step.
import './v8-flags.mjs'
import { main } from '../src/cli.ts'

main(process.argv.slice(2), process.env).catch((error) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : error)
  process.exit(1)
})

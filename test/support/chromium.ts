import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type BrowserContext, chromium } from 'playwright-core'

/** Debian's Chromium (scripts/chromium.sh installs it). */
export const CHROMIUM = '/usr/bin/chromium'

export interface Browser {
  context: BrowserContext
  close(): Promise<void>
}

/**
 * Headless Debian Chromium in a fresh profile, with the flags that keep it off this machine's closed network
 * (background networking, component updates and sync would each try to reach Google's hosts).
 */
export async function launchChromium(
  options: Parameters<typeof chromium.launchPersistentContext>[1] = {},
): Promise<Browser> {
  const userDataDir = await mkdtemp(join(tmpdir(), 'coupon-rush-chromium-'))
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    ...options,
  })
  return {
    context,
    async close() {
      await context.close()
      await rm(userDataDir, { recursive: true, force: true })
    },
  }
}

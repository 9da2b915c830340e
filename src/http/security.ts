import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import type { FastifyHelmetOptions } from '@fastify/helmet'

const DASHBOARD = new URL('./dashboard.html', import.meta.url)

/** CSP sources allowing exactly the inline `<script>` blocks of a page (by their SHA-256), nothing else inline. */
export function inlineScriptHashes(html: string): string[] {
  return [...html.matchAll(/<script(?![^>]*\bsrc\s*=)[^>]*>([\s\S]*?)<\/script>/gi)].map(
    ([, script]) => `'sha256-${createHash('sha256').update(script!).digest('base64')}'`,
  )
}

/**
 * The security headers of every answer (@fastify/helmet). The CSP lets the dashboard at `/` (inline HTML and
 * JS, fetch and EventSource to this origin) and Swagger UI at `/docs` run, and nothing be framed or loaded
 * from elsewhere.
 */
export async function securityHeaders(): Promise<FastifyHelmetOptions> {
  const dashboard = await readFile(DASHBOARD, 'utf8')
  return {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'", ...inlineScriptHashes(dashboard)],
        scriptSrcAttr: ["'none'"],
        // Inline <style> and style attributes (dashboard, Swagger UI); scripts stay hash-pinned.
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", 'data:'],
        fontSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        objectSrc: ["'none'"],
        baseUri: ["'none'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
      },
    },
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    // The service speaks plain HTTP behind whatever terminates TLS: HSTS belongs there.
    strictTransportSecurity: false,
    // Headers only obsolete browsers read.
    xDnsPrefetchControl: false,
    xDownloadOptions: false,
    xPermittedCrossDomainPolicies: false,
    xXssProtection: false,
  }
}

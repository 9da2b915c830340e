import { readFile } from 'node:fs/promises'
import type { Receipt } from '../../domain/coupon.ts'
import type { PublicOrderLog } from './order-log.ts'
import { checkReceipt, receiptKeyFromJwk } from './verify.ts'

async function getJson<T>(url: string): Promise<T> {
  const response = await fetch(url)
  if (!response.ok) throw new Error(`GET ${url}: ${response.status} ${await response.text()}`)
  return (await response.json()) as T
}

/**
 * `coupon-rush verify --receipt file.json --url http://host:port`: checks a receipt (a file holding the
 * receipt, or a whole issuance answer with its `receipt`) against the service's public key and the coupon's
 * order log. Prints each check; exit code 0 when the person was treated in order, 1 when not.
 */
export async function verifyCommand(args: string[]): Promise<number> {
  const option = (name: string) => {
    const index = args.indexOf(`--${name}`)
    return index === -1 ? undefined : args[index + 1]
  }
  const file = option('receipt')
  const url = option('url')?.replace(/\/$/, '')
  if (file === undefined || url === undefined) {
    console.error('verify: give --receipt <file.json> --url <http://service>')
    return 2
  }
  const parsed = JSON.parse(await readFile(file, 'utf8')) as Receipt | { receipt: Receipt }
  const receipt = 'receipt' in parsed ? parsed.receipt : parsed
  const jwk = await getJson<{ kty: string; crv: string; x: string }>(
    `${url}/.well-known/coupon-rush-receipt-key`,
  )
  const log = await getJson<PublicOrderLog>(`${url}/coupons/${receipt.couponId}/order-log`)
  const result = checkReceipt(receipt, receiptKeyFromJwk(jwk), log)
  for (const line of result.lines) console.log(line)
  console.log(result.ok ? 'treated in order: yes' : 'treated in order: NO')
  return result.ok ? 0 : 1
}

/**
 * `dnsd serve` options: one schema, defaults in one place, the result frozen.
 */
import { isIP } from 'node:net'
import { z } from 'zod'
import { DnsdError } from './errors.ts'
import { DEFAULT_RATE_LIMIT } from './create-server.ts'

export interface ListenAddress {
  readonly host: string
  readonly port: number
  readonly family: 4 | 6
}

/** `ADDRESS:PORT`, IPv6 in brackets (`[::1]:53`). */
export function parseListen (text: string): ListenAddress | null {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text)
  if (match === null) return null
  const host = match[1] ?? match[2]!
  const family = isIP(host)
  const port = Number(match[3])
  if (family === 0 || (family === 6) !== (match[1] !== undefined) || port > 65535) return null
  return Object.freeze({ host, port, family: family as 4 | 6 })
}

const listen = z.string().transform((text, context) => {
  const parsed = parseListen(text)
  if (parsed === null) {
    context.addIssue({ code: 'custom', message: 'must be IPV4:PORT or [IPV6]:PORT' })
    return z.NEVER
  }
  return parsed
})

export const serveOptionsSchema = z.strictObject({
  /** A node desired-state document (netd/desired-state.ts), JSON. */
  document: z.string().min(1),
  /** Every query is answered as this local task (id or task name) would get it. */
  as: z.string().min(1),
  listen,
  resolvConf: z.string().min(1).default('/etc/resolv.conf'),
  /** Processes sharing the address (SO_REUSEPORT); 1 serves in this process. */
  workers: z.coerce.number().int().min(1).max(64).default(1),
  /** Queries per second the task may send, per worker (bursts of twice that). */
  rateLimit: z.coerce.number().int().min(1).max(100_000_000).default(DEFAULT_RATE_LIMIT.ratePerSecond),
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
  /** Set by the supervisor on the processes it forks: their index, for logs. */
  worker: z.coerce.number().int().min(0).optional()
}).refine((o) => o.workers === 1 || o.listen.port !== 0, { path: ['listen'], message: 'port 0 cannot be shared by several workers; name a port' })

export type ServeOptions = Readonly<z.infer<typeof serveOptionsSchema>>

export function parseServeOptions (input: unknown): ServeOptions {
  const parsed = serveOptionsSchema.safeParse(input)
  if (!parsed.success) {
    const details = parsed.error.issues.map((issue) => `--${kebab(String(issue.path[0] ?? ''))}: ${issue.message}`)
    throw new DnsdError('DNSD_ERR_CONFIG', `invalid dnsd options: ${details.join('; ')}`, details)
  }
  return Object.freeze(parsed.data)
}

function kebab (name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)
}

/**
 * `netd run` options: one schema, defaults in one place, the result frozen.
 */
import { z } from 'zod'
import { Address4 } from 'ip-address'
import { NetdError } from './errors.ts'

export const DEFAULT_SOCKET = '/run/weft/netd.sock'

export const runOptionsSchema = z.strictObject({
  nodeName: z.string().min(1).max(64),
  advertiseAddr: z.string().refine((s) => Address4.isValid(s) && !s.includes('/'), 'must be an IPv4 address of this host'),
  netnsPrefix: z.string().regex(/^[a-z][a-z0-9-]{0,40}-$/, 'must be lowercase letters, digits and dashes, ending with a dash').default('weft-'),
  stateDir: z.string().min(1).default('/var/lib/weft/netd'),
  socket: z.string().min(1).default(DEFAULT_SOCKET),
  metricsAddr: z.string().regex(/^[0-9.]+:\d{1,5}$/, 'must be ADDRESS:PORT').default('127.0.0.1:9324'),
  /** Seconds between drift repairs; 0 repairs only when asked or when the document changes. */
  reconcileInterval: z.coerce.number().min(0).max(3600).default(10),
  cleanup: z.boolean().default(false),
  /** Serve DNS to tasks at 127.0.0.11 (dnsd, embedded). */
  dns: z.boolean().default(true),
  /** Where the node's upstream resolvers and search domains come from. */
  resolvConf: z.string().min(1).default('/etc/resolv.conf'),
  /** DNS queries per second one task may send (bursts of twice that); beyond it queries are dropped. */
  dnsRateLimit: z.coerce.number().int().min(1).max(10_000_000).default(2000),
  /** Load balancing of VIPs and published ports (lb, nftables). */
  lb: z.boolean().default(true),
  /** Seconds an idle established TCP connection keeps its conntrack entry in task namespaces; unset keeps the kernel's 432000. */
  lbTcpEstablishedTimeout: z.coerce.number().int().min(1).max(2_147_483).optional(),
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
  /** Underlay MTU; read from the advertise address's interface when not given. */
  underlayMtu: z.coerce.number().int().min(1280).max(65535).optional()
})

export type RunOptions = Readonly<z.infer<typeof runOptionsSchema>>

export function parseRunOptions (input: unknown): RunOptions {
  const parsed = runOptionsSchema.safeParse(input)
  if (!parsed.success) {
    const details = parsed.error.issues.map((issue) => `--${kebab(String(issue.path[0] ?? ''))}: ${issue.message}`)
    throw new NetdError('NETD_ERR_CONFIG', `invalid netd options: ${details.join('; ')}`, details)
  }
  return Object.freeze(parsed.data)
}

function kebab (name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)
}

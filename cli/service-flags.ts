/**
 * `weft service create` and `service update` flags → the service spec the
 * store takes (manager/store/spec.ts). Pure: flags in, spec out, or a
 * one-line usage error naming the flag. The store checks the result again
 * (networks exist, constraints parse, ports are free).
 *
 * Flags follow `docker service create`: --replicas / --mode global,
 * --network (NAME, or name=NAME,alias=A), --env K=V (a bare K takes the
 * CLI's own value), --workdir, --user, --constraint, --endpoint-mode,
 * --publish (published=P,target=T[,protocol=tcp|udp][,mode=ingress|host],
 * or P:T[/udp]), --restart-*, --update-*, --rollback-*, --label, --health-*
 * (and --health-tcp PORT, --health-http PATH:PORT, probed from the node without
 * entering the task), --no-healthcheck, --stop-grace-period, and --drain-delay
 * (the time a stopping task spends out of DNS and load balancing before it is
 * signalled; Docker has no such flag).
 */
import type { PortConfig, ServiceSpec, ServiceSpecInput } from '../manager/store/spec.ts'
import type { HealthcheckInput, HealthTest } from '../netd/health/health-spec.ts'
import { parseDuration } from './durations.ts'
import { usage } from './errors.ts'

/** The update/rollback and restart flags both commands share. */
export interface PolicyFlags {
  restartCondition?: string
  restartDelay?: string
  restartMaxAttempts?: string
  restartWindow?: string
  updateDelay?: string
  updateParallelism?: string
  updateFailureAction?: string
  updateMonitor?: string
  updateMaxFailureRatio?: string
  rollbackDelay?: string
  rollbackParallelism?: string
  rollbackFailureAction?: string
  rollbackMonitor?: string
  rollbackMaxFailureRatio?: string
  healthCmd?: string
  healthTcp?: string
  healthHttp?: string
  healthInterval?: string
  healthTimeout?: string
  healthRetries?: string
  healthStartPeriod?: string
  /** false with --no-healthcheck. */
  healthcheck?: boolean
  stopGracePeriod?: string
  drainDelay?: string
}

export interface CreateFlags extends PolicyFlags {
  name?: string
  replicas?: string
  mode?: string
  network?: string[]
  env?: string[]
  workdir?: string
  user?: string
  constraint?: string[]
  endpointMode?: string
  publish?: string[]
  label?: string[]
}

export interface UpdateFlags extends PolicyFlags {
  image?: string
  args?: string
  replicas?: string
  envAdd?: string[]
  envRm?: string[]
  workdir?: string
  user?: string
  constraintAdd?: string[]
  constraintRm?: string[]
  networkAdd?: string[]
  networkRm?: string[]
  publishAdd?: string[]
  publishRm?: string[]
  endpointMode?: string
  labelAdd?: string[]
  labelRm?: string[]
}

export function parseCount (text: string, flag: string): number {
  if (!/^\d+$/.test(text.trim())) throw usage(`invalid value "${text}" for ${flag}: must be a whole number`)
  return Number(text)
}

function parseRatio (text: string, flag: string): number {
  const value = Number(text)
  if (text.trim() === '' || !Number.isFinite(value) || value < 0 || value > 1) throw usage(`invalid value "${text}" for ${flag}: must be a number from 0 to 1`)
  return value
}

function oneOf<T extends string> (text: string, allowed: readonly T[], flag: string): T {
  if (!(allowed as readonly string[]).includes(text)) throw usage(`invalid value "${text}" for ${flag}: must be ${allowed.join(', ').replace(/, ([^,]*)$/, ' or $1')}`)
  return text as T
}

/** `KEY=value` pairs (labels). */
export function parseLabels (list: readonly string[], flag: string): Record<string, string> {
  const labels: Record<string, string> = {}
  for (const entry of list) {
    const at = entry.indexOf('=')
    const key = at === -1 ? entry : entry.slice(0, at)
    if (key === '') throw usage(`invalid value "${entry}" for ${flag}: must be KEY=VALUE`)
    labels[key] = at === -1 ? '' : entry.slice(at + 1)
  }
  return labels
}

/** `--env K=V`; a bare `K` takes the value it has here, and is left out when it has none (as docker does). */
export function parseEnv (list: readonly string[], from: Readonly<Record<string, string | undefined>> = process.env): string[] {
  const out: string[] = []
  for (const entry of list) {
    if (entry === '' || entry.startsWith('=')) throw usage(`invalid value "${entry}" for --env: must be KEY=VALUE`)
    if (entry.includes('=')) out.push(entry)
    else if (from[entry] !== undefined) out.push(`${entry}=${from[entry]}`)
  }
  return out
}

/** `published=8080,target=80[,protocol=udp][,mode=host][,name=http]`, or `8080:80[/udp]`. */
export function parsePublish (text: string): PortConfig {
  const bad = (why: string): Error => usage(`invalid value "${text}" for --publish: ${why}`)
  const port = (value: string | undefined, what: string): number => {
    if (value === undefined || !/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 65535) throw bad(`${what} must be a port from 1 to 65535`)
    return Number(value)
  }
  if (!text.includes('=')) {
    const short = /^(\d+):(\d+)(?:\/(tcp|udp))?$/.exec(text)
    if (short === null) throw bad('use published=P,target=T[,protocol=tcp|udp][,mode=ingress|host] or P:T[/udp]')
    return { published: port(short[1], 'published'), target: port(short[2], 'target'), protocol: (short[3] ?? 'tcp') as 'tcp' | 'udp', mode: 'ingress' }
  }
  const fields: Record<string, string> = {}
  for (const part of text.split(',')) {
    const at = part.indexOf('=')
    if (at <= 0) throw bad(`"${part}" is not KEY=VALUE`)
    const key = part.slice(0, at)
    const normal = ({ p: 'published', t: 'target' } as Record<string, string>)[key] ?? key
    if (!['published', 'target', 'protocol', 'mode', 'name'].includes(normal)) throw bad(`unknown field "${key}"`)
    fields[normal] = part.slice(at + 1)
  }
  const protocol = fields.protocol ?? 'tcp'
  const mode = fields.mode ?? 'ingress'
  if (protocol !== 'tcp' && protocol !== 'udp') throw bad('protocol must be tcp or udp')
  if (mode !== 'ingress' && mode !== 'host') throw bad('mode must be ingress or host')
  return {
    ...(fields.name === undefined ? {} : { name: fields.name }),
    ...(fields.published === undefined ? {} : { published: port(fields.published, 'published') }),
    target: port(fields.target, 'target'),
    protocol,
    mode
  }
}

/** `--network NAME` or `--network name=NAME,alias=A,alias=B`. */
export function parseNetwork (text: string): { network: string, aliases: string[] } {
  if (!text.includes('=')) {
    if (text === '') throw usage('invalid value "" for --network: name a network')
    return { network: text, aliases: [] }
  }
  let network: string | undefined
  const aliases: string[] = []
  for (const part of text.split(',')) {
    const at = part.indexOf('=')
    const key = part.slice(0, at)
    const value = part.slice(at + 1)
    if (at <= 0 || value === '') throw usage(`invalid value "${text}" for --network: "${part}" is not KEY=VALUE`)
    if (key === 'name' || key === 'target') network = value
    else if (key === 'alias') aliases.push(value)
    else throw usage(`invalid value "${text}" for --network: unknown field "${key}" (use name= and alias=)`)
  }
  if (network === undefined) throw usage(`invalid value "${text}" for --network: name= is required`)
  return { network, aliases }
}

function policies (flags: PolicyFlags, base: Pick<ServiceSpec, 'restart' | 'update' | 'rollback'> | undefined): Pick<ServiceSpecInput, 'restart' | 'update' | 'rollback'> {
  const restart: Record<string, unknown> = { ...base?.restart }
  if (flags.restartCondition !== undefined) restart.condition = oneOf(flags.restartCondition, ['none', 'on-failure', 'any'] as const, '--restart-condition')
  if (flags.restartDelay !== undefined) restart.delay = parseDuration(flags.restartDelay, '--restart-delay')
  if (flags.restartMaxAttempts !== undefined) restart.maxAttempts = parseCount(flags.restartMaxAttempts, '--restart-max-attempts')
  if (flags.restartWindow !== undefined) restart.window = parseDuration(flags.restartWindow, '--restart-window')
  const config = (kind: 'update' | 'rollback'): Record<string, unknown> => {
    const out: Record<string, unknown> = { ...base?.[kind] }
    const get = (name: string): string | undefined => (flags as Record<string, string | undefined>)[`${kind}${name}`]
    const flag = (name: string): string => `--${kind}-${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`).replace(/^-/, '')}`
    if (get('Delay') !== undefined) out.delay = parseDuration(get('Delay')!, flag('Delay'))
    if (get('Parallelism') !== undefined) out.parallelism = parseCount(get('Parallelism')!, flag('Parallelism'))
    if (get('FailureAction') !== undefined) out.failureAction = oneOf(get('FailureAction')!, ['pause', 'continue', 'rollback'] as const, flag('FailureAction'))
    if (get('Monitor') !== undefined) out.monitor = parseDuration(get('Monitor')!, flag('Monitor'))
    if (get('MaxFailureRatio') !== undefined) out.maxFailureRatio = parseRatio(get('MaxFailureRatio')!, flag('MaxFailureRatio'))
    return out
  }
  return { restart, update: config('update'), rollback: config('rollback') } as Pick<ServiceSpecInput, 'restart' | 'update' | 'rollback'>
}

function parsePort (text: string, flag: string): number {
  const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN
  if (!(port >= 1 && port <= 65535)) throw usage(`invalid value "${text}" for ${flag}: must be a port from 1 to 65535`)
  return port
}

function healthTest (flags: PolicyFlags): HealthTest | undefined {
  const given = (['healthCmd', 'healthTcp', 'healthHttp'] as const).filter((key) => flags[key] !== undefined)
  if (given.length > 1) throw usage('--health-cmd, --health-tcp and --health-http are exclusive: give one')
  if (flags.healthCmd !== undefined) {
    if (flags.healthCmd.trim() === '') throw usage('invalid value "" for --health-cmd: give a command')
    return { kind: 'cmd', command: flags.healthCmd }
  }
  if (flags.healthTcp !== undefined) return { kind: 'tcp', port: parsePort(flags.healthTcp, '--health-tcp') }
  if (flags.healthHttp !== undefined) {
    const at = flags.healthHttp.lastIndexOf(':')
    const path = flags.healthHttp.slice(0, at)
    if (at < 0 || !path.startsWith('/')) throw usage(`invalid value "${flags.healthHttp}" for --health-http: must be PATH:PORT, like /healthz:8080`)
    return { kind: 'http', path, port: parsePort(flags.healthHttp.slice(at + 1), '--health-http') }
  }
  return undefined
}

/** The health check, over the current one (update) or none (create), and the stop settings given. */
function healthAndStop (flags: PolicyFlags, base: Pick<ServiceSpec, 'healthcheck'> | undefined): Pick<ServiceSpecInput, 'healthcheck' | 'drainDelay' | 'stopGracePeriod'> {
  const test = healthTest(flags)
  const timing = {
    ...(flags.healthInterval === undefined ? {} : { interval: parseDuration(flags.healthInterval, '--health-interval') }),
    ...(flags.healthTimeout === undefined ? {} : { timeout: parseDuration(flags.healthTimeout, '--health-timeout') }),
    ...(flags.healthRetries === undefined ? {} : { retries: parseCount(flags.healthRetries, '--health-retries') }),
    ...(flags.healthStartPeriod === undefined ? {} : { startPeriod: parseDuration(flags.healthStartPeriod, '--health-start-period') })
  }
  const timed = Object.keys(timing).length > 0
  let healthcheck: HealthcheckInput | undefined = base?.healthcheck
  if (flags.healthcheck === false) {
    if (test !== undefined || timed) throw usage('--no-healthcheck conflicts with the other --health-* flags')
    healthcheck = undefined
  } else if (test !== undefined) {
    healthcheck = { ...base?.healthcheck, ...timing, test }
  } else if (timed) {
    if (healthcheck === undefined) throw usage('--health-interval, --health-timeout, --health-retries and --health-start-period need a check: --health-cmd, --health-tcp or --health-http')
    healthcheck = { ...healthcheck, ...timing }
  }
  return {
    ...(healthcheck === undefined ? {} : { healthcheck }),
    ...(flags.drainDelay === undefined ? {} : { drainDelay: parseDuration(flags.drainDelay, '--drain-delay') }),
    ...(flags.stopGracePeriod === undefined ? {} : { stopGracePeriod: parseDuration(flags.stopGracePeriod, '--stop-grace-period') })
  }
}

/** `service create [flags] IMAGE [ARG...]`. */
export function specFromCreateFlags (flags: CreateFlags, image: string, args: readonly string[], env: Readonly<Record<string, string | undefined>> = process.env): ServiceSpecInput {
  const mode = oneOf(flags.mode ?? 'replicated', ['replicated', 'global'] as const, '--mode')
  if (mode === 'global' && flags.replicas !== undefined) throw usage('--replicas can only be used with replicated mode')
  const name = flags.name ?? generatedName()
  return {
    name,
    image,
    args: [...args],
    env: parseEnv(flags.env ?? [], env),
    ...(flags.workdir === undefined ? {} : { workdir: flags.workdir }),
    ...(flags.user === undefined ? {} : { user: flags.user }),
    mode: mode === 'global' ? { kind: 'global' } : { kind: 'replicated', replicas: flags.replicas === undefined ? 1 : parseCount(flags.replicas, '--replicas') },
    networks: (flags.network ?? []).map(parseNetwork),
    constraints: [...(flags.constraint ?? [])],
    ...(flags.endpointMode === undefined ? {} : { endpointMode: oneOf(flags.endpointMode, ['vip', 'dnsrr'] as const, '--endpoint-mode') }),
    ports: (flags.publish ?? []).map(parsePublish),
    labels: parseLabels(flags.label ?? [], '--label'),
    ...policies(flags, undefined),
    ...healthAndStop(flags, undefined)
  }
}

/**
 * `service update [flags] SERVICE`: the new spec from the current one. `networkId` maps a network
 * name (or id) to its id, as the current spec holds networks by id.
 */
export function specFromUpdateFlags (current: ServiceSpec, flags: UpdateFlags, networkId: (ref: string) => string, env: Readonly<Record<string, string | undefined>> = process.env): ServiceSpecInput {
  let mode = current.mode
  if (flags.replicas !== undefined) {
    if (mode.kind !== 'replicated') throw usage('--replicas can only be used with replicated mode')
    mode = { kind: 'replicated', replicas: parseCount(flags.replicas, '--replicas') }
  }
  const keyOf = (entry: string): string => entry.split('=', 1)[0]!
  const envRm = new Set(flags.envRm ?? [])
  const envAdd = parseEnv(flags.envAdd ?? [], env)
  const added = new Set(envAdd.map(keyOf))
  const labels: Record<string, string> = { ...current.labels }
  for (const key of flags.labelRm ?? []) delete labels[key]
  Object.assign(labels, parseLabels(flags.labelAdd ?? [], '--label-add'))
  const networkRm = new Set((flags.networkRm ?? []).map(networkId))
  const networkAdd = (flags.networkAdd ?? []).map(parseNetwork)
  const addedNetworks = new Set(networkAdd.map((n) => networkId(n.network)))
  const constraintRm = new Set(flags.constraintRm ?? [])
  const publishRm = new Set((flags.publishRm ?? []).map((p) => parsePortRef(p)))
  const publishAdd = (flags.publishAdd ?? []).map(parsePublish)
  const replacedPorts = new Set(publishAdd.map((p) => `${p.target}/${p.protocol}`))
  return {
    ...current,
    image: flags.image ?? current.image,
    args: flags.args === undefined ? current.args : splitArgs(flags.args),
    env: [...current.env.filter((e) => !envRm.has(keyOf(e)) && !added.has(keyOf(e))), ...envAdd],
    ...(flags.workdir === undefined ? {} : { workdir: flags.workdir }),
    ...(flags.user === undefined ? {} : { user: flags.user }),
    mode,
    networks: [
      ...current.networks.filter((n) => !networkRm.has(n.network) && !addedNetworks.has(n.network)),
      ...networkAdd
    ],
    constraints: [...current.constraints.filter((c) => !constraintRm.has(c)), ...(flags.constraintAdd ?? []).filter((c) => !current.constraints.includes(c))],
    endpointMode: flags.endpointMode === undefined ? current.endpointMode : oneOf(flags.endpointMode, ['vip', 'dnsrr'] as const, '--endpoint-mode'),
    ports: [
      ...current.ports.filter((p) => !publishRm.has(`${p.target}/${p.protocol}`) && !publishRm.has(`${p.target}`) && !replacedPorts.has(`${p.target}/${p.protocol}`)),
      ...publishAdd
    ],
    labels,
    ...policies(flags, current),
    healthcheck: undefined, // kept by healthAndStop unless --no-healthcheck
    ...healthAndStop(flags, current)
  }
}

/** `--publish-rm 80` or `80/udp`: a port by its target. */
function parsePortRef (text: string): string {
  const match = /^(\d+)(?:\/(tcp|udp))?$/.exec(text)
  if (match === null) throw usage(`invalid value "${text}" for --publish-rm: must be a target port, like 80 or 53/udp`)
  return match[2] === undefined ? match[1]! : `${match[1]}/${match[2]}`
}

/** Splits `--args` as a shell would split words: quotes group, backslash escapes. */
export function splitArgs (text: string): string[] {
  const out: string[] = []
  let word = ''
  let inWord = false
  let quote: '"' | '\'' | null = null
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!
    if (quote !== null) {
      if (c === quote) quote = null
      else if (c === '\\' && quote === '"' && i + 1 < text.length) word += text[++i]
      else word += c
    } else if (c === '"' || c === '\'') {
      quote = c
      inWord = true
    } else if (c === '\\' && i + 1 < text.length) {
      word += text[++i]
      inWord = true
    } else if (/\s/.test(c)) {
      if (inWord) out.push(word)
      word = ''
      inWord = false
    } else {
      word += c
      inWord = true
    }
  }
  if (quote !== null) throw usage(`invalid value for --args: unterminated ${quote} quote`)
  if (inWord) out.push(word)
  return out
}

const ADJECTIVES = ['brave', 'calm', 'eager', 'gentle', 'jolly', 'keen', 'lucid', 'nimble', 'quiet', 'swift', 'tender', 'vivid']
const NAMES = ['curie', 'darwin', 'euler', 'galois', 'hopper', 'lovelace', 'noether', 'pascal', 'ritchie', 'turing', 'wozniak', 'yalow']

/** Docker names an unnamed service like `quirky_wozniak`. */
export function generatedName (random: () => number = Math.random): string {
  const pick = (list: readonly string[]): string => list[Math.floor(random() * list.length)]!
  return `${pick(ADJECTIVES)}_${pick(NAMES)}`
}

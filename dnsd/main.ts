/**
 * The `dnsd` command. `dnsd serve` answers DNS on an address of this host as
 * one task of a desired-state document would get it from its own 127.0.0.11:
 * the same DnsServer, answer tables and forwarder netd embeds, without netd or
 * namespaces. For benchmarks (bench/dns.ts), fuzzing and trying answers out.
 *
 * `--workers N` forks N processes that each bind the address with
 * SO_REUSEPORT: the kernel spreads clients over them by source address and
 * port, so each has its own forward cache and rate limiter. The first process
 * only supervises: it stops them all on SIGTERM, and all of them when one dies.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { readFile } from 'node:fs/promises'
import { createServer, type Server as TcpServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import { Command, Option } from 'commander'
import { pino, type Logger } from 'pino'
import { Registry } from 'prom-client'
import { parseDesiredState, type DesiredState } from '../netd/desired-state.ts'
import { NetdError } from '../netd/errors.ts'
import { createDnsServer } from './create-server.ts'
import { bindInNamespace, closeDescriptor, localPort } from './native-sockets.ts'
import { DnsdError } from './errors.ts'
import { taskView } from './records.ts'
import { parseServeOptions, type ListenAddress, type ServeOptions } from './serve-options.ts'

const MAIN = fileURLToPath(import.meta.url)
const WORKER_STOP_MS = 5000

const program = new Command('dnsd')
  .description('weft dnsd, standalone: cluster names of a desired-state document, everything else forwarded')
  .showHelpAfterError()

program.command('serve')
  .description('answer DNS on an address as one task of a document would get it')
  .requiredOption('--document <file>', 'node desired-state document (JSON)')
  .requiredOption('--as <task>', 'answer as this local task (task id or task name)')
  .requiredOption('--listen <addr:port>', 'UDP and TCP address, IPV4:PORT or [IPV6]:PORT')
  .option('--resolv-conf <file>', 'upstream resolvers for other names (default /etc/resolv.conf)')
  .option('--workers <n>', 'processes sharing the address with SO_REUSEPORT (default 1)')
  .option('--rate-limit <qps>', 'queries per second the task may send, per worker, bursts of twice that (default 2000)')
  .option('--log-level <level>', 'trace, debug, info, warn, error (default info)')
  .addOption(new Option('--worker <index>', 'set by the supervisor on the processes it forks').hideHelp())
  .action(async (flags: Record<string, unknown>) => {
    const options = parseServeOptions(flags)
    const log = pino({ level: options.logLevel, base: { component: 'dnsd', pid: process.pid, ...(options.worker === undefined ? {} : { worker: options.worker }) } })
    if (options.workers > 1 && options.worker === undefined) await supervise(options, log)
    else await serve(options, log)
  })

function listenLabel (listen: ListenAddress): string {
  return listen.family === 6 ? `[${listen.host}]:${listen.port}` : `${listen.host}:${listen.port}`
}

async function loadDocument (file: string): Promise<DesiredState> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (error) {
    throw new DnsdError('DNSD_ERR_DOCUMENT', `cannot read document ${file}: ${(error as Error).message}`)
  }
  let input: unknown
  try {
    input = JSON.parse(text)
  } catch (error) {
    throw new DnsdError('DNSD_ERR_DOCUMENT', `${file} is not JSON: ${(error as Error).message}`)
  }
  return parseDesiredState(input)
}

/** One serving process: the supervisor's worker, or the only process. */
async function serve (options: ServeOptions, log: Logger): Promise<void> {
  const doc = await loadDocument(options.document)
  const { server } = await createDnsServer({
    resolvConfPath: options.resolvConf,
    registry: new Registry(),
    log,
    rateLimit: { ratePerSecond: options.rateLimit, burst: 2 * options.rateLimit }
  }, doc)
  // Workers share the port on purpose; a lone process must fail if someone else holds it.
  const reusePort = options.worker !== undefined
  let sockets: { udp: UdpSocket | number, tcp: TcpServer, port: number }
  try {
    if (taskView(server.tables, options.as) === undefined) {
      const known = [...server.tables.tasks.values()].map((v) => v.name ?? v.task)
      throw new DnsdError('DNSD_ERR_DOCUMENT', `--as ${options.as}: no local task of that id or name in ${options.document} (local tasks: ${known.slice(0, 10).join(', ') || 'none'}${known.length > 10 ? ', …' : ''})`)
    }
    sockets = await bind(options.listen, reusePort)
  } catch (error) {
    await server.close()
    throw error
  }
  const bound = { ...options.listen, port: sockets.port }
  if (typeof sockets.udp === 'number') server.adoptBatch(options.as, listenLabel(bound), sockets.udp, sockets.tcp)
  else server.adopt(options.as, listenLabel(bound), sockets.udp, sockets.tcp)
  log.info({ listen: listenLabel(bound), as: options.as, revision: doc.revision, upstreams: server.forwarder.upstreams.map((u) => u.address) }, 'serving')
  process.send?.({ kind: 'ready' })

  let stopping = false
  const shutdown = (reason: string): void => {
    if (stopping) return
    stopping = true
    log.info({ reason }, 'dnsd stopping')
    server.close().then(() => process.exit(0), (error: unknown) => {
      log.error({ err: error }, 'close failed')
      process.exit(1)
    })
  }
  process.on('SIGTERM', () => shutdown('SIGTERM'))
  process.on('SIGINT', () => shutdown('SIGINT'))
  // A worker whose supervisor is gone (even by SIGKILL) must not keep the port.
  if (options.worker !== undefined) process.on('disconnect', () => shutdown('supervisor gone'))
}

/**
 * UDP and TCP on the listen address. IPv4, netd's case, goes through the native addon (a descriptor
 * served in batches, as in task namespaces); IPv6 through node:dgram.
 */
async function bind (listen: ListenAddress, reusePort: boolean): Promise<{ udp: UdpSocket | number, tcp: TcpServer, port: number }> {
  let udp: UdpSocket | number
  let port: number
  if (listen.family === 4) {
    udp = bindInNamespace(null, 'udp', listen.host, listen.port, reusePort)
    port = localPort(udp)
  } else {
    // dgram passes the destination of every send through a lookup, by default dns.lookup, which answers
    // an address literal a tick later. A server only replies to the literal recvmsg gave it.
    const lookup = (address: string, _family: unknown, callback: (error: null, address: string, family: number) => void): void => {
      callback(null, address, 6)
    }
    const socket = udp = createSocket({ type: 'udp6', reusePort, lookup })
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject)
      socket.bind(listen.port, listen.host, () => { socket.off('error', reject); resolve() })
    }).catch((error: Error) => {
      throw new DnsdError('DNSD_ERR_LISTEN', `cannot bind UDP ${listenLabel(listen)}: ${error.message}`)
    })
    port = socket.address().port
  }
  const closeUdp = (): void => { if (typeof udp === 'number') closeDescriptor(udp); else udp.close() }
  // With port 0 the TCP listener takes the port the kernel gave UDP.
  const tcp = createServer()
  await new Promise<void>((resolve, reject) => {
    tcp.once('error', reject)
    tcp.listen({ host: listen.host, port, reusePort, backlog: 512 }, () => { tcp.off('error', reject); resolve() })
  }).catch((error: Error) => {
    closeUdp()
    throw new DnsdError('DNSD_ERR_LISTEN', `cannot listen on TCP ${listenLabel({ ...listen, port })}: ${error.message}`)
  })
  return { udp, tcp, port }
}

/** Forks the workers, reports when all serve, and stops all of them when told to or when one dies. */
async function supervise (options: ServeOptions, log: Logger): Promise<void> {
  const args = (index: number): string[] => [
    'serve', '--document', options.document, '--as', options.as, '--listen', listenLabel(options.listen),
    '--resolv-conf', options.resolvConf, '--workers', String(options.workers), '--rate-limit', String(options.rateLimit),
    '--log-level', options.logLevel, '--worker', String(index)
  ]
  const workers: ChildProcess[] = []
  const exited = new Map<ChildProcess, Promise<void>>()
  let stopping = false
  const stop = (code: number): void => {
    if (stopping) return
    stopping = true
    for (const worker of workers) worker.kill('SIGTERM')
    const timer = setTimeout(() => { for (const worker of workers) worker.kill('SIGKILL') }, WORKER_STOP_MS)
    void Promise.all(exited.values()).then(() => {
      clearTimeout(timer)
      process.exit(code)
    })
  }
  const ready: Promise<void>[] = []
  for (let index = 0; index < options.workers; index++) {
    const worker = fork(MAIN, args(index), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    workers.push(worker)
    exited.set(worker, new Promise((resolve) => worker.once('exit', () => resolve())))
    ready.push(new Promise((resolve, reject) => {
      worker.on('message', (message: { kind?: string }) => { if (message.kind === 'ready') resolve() })
      worker.once('exit', (code, signal) => reject(new DnsdError('DNSD_ERR_LISTEN', `worker ${index} exited before serving (${signal ?? `exit ${code}`})`)))
    }))
    worker.once('exit', (code, signal) => {
      if (stopping) return
      log.error({ worker: index, code, signal }, 'a worker died; stopping the others')
      stop(1)
    })
  }
  process.on('SIGTERM', () => stop(0))
  process.on('SIGINT', () => stop(0))
  try {
    await Promise.all(ready)
  } catch (error) {
    // The worker printed why; stop() reaps the others and exits.
    log.error({ err: error }, 'dnsd failed to start')
    stop(1)
    return
  }
  log.info({ workers: options.workers, pids: workers.map((w) => w.pid), listen: listenLabel(options.listen) }, 'dnsd ready')
}

program.parseAsync().catch((error: unknown) => {
  if (error instanceof NetdError && error.code === 'NETD_ERR_INVALID_DOCUMENT' && error.details.length > 0) {
    process.stderr.write(`dnsd: invalid desired-state document:\n${error.details.map((d) => `  ${d}`).join('\n')}\n`)
  } else if (error instanceof DnsdError && error.code === 'DNSD_ERR_CONFIG' && error.details.length > 0) {
    process.stderr.write(`dnsd: invalid options:\n${error.details.map((d) => `  ${d}`).join('\n')}\n`)
  } else {
    process.stderr.write(`dnsd: ${(error as Error).message}\n`)
  }
  // Exit now: a worker's IPC channel would otherwise keep it alive.
  process.exit(2)
})

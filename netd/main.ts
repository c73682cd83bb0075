/**
 * The `netd` command: `netd run` is the node daemon; every other subcommand
 * is an operator's debugging tool that asks a running netd over its socket.
 */
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import { hostname } from 'node:os'
import { Command, Option } from 'commander'
import { pino } from 'pino'
import { NetdClient } from './api-client.ts'
import { createApiServer, listenOnSocket } from './api-server.ts'
import { DEFAULT_SOCKET, parseRunOptions } from './config.ts'
import { NetdDaemon, type ReconcileSummary } from './daemon.ts'
import { NetdError } from './errors.ts'
import { iproute } from './iproute.ts'
import { createMetrics } from './metrics.ts'
import type { EndpointRow, FdbRow, NetworkRow } from './views.ts'
import type { HealthReport } from './health/health-spec.ts'
import type { Resolution } from '../dnsd/explain.ts'
import { formatStats, type FrontendStats } from '../lb/stats.ts'

interface DnsRecordRow { task: string, name: string, type: string, value: string, ttl: number, rule: string, network: string }
import { formatTable } from '../cli/table.ts'
import { swarmRoutes } from './cluster/api-routes.ts'
import { execCommand } from './cluster/exec-command.ts'
import { SwarmNode } from './cluster/swarm-node.ts'

const program = new Command('netd')
  .description('weft node daemon: builds and keeps the VXLAN overlay of this node')
  .addOption(new Option('--socket <path>', 'netd API socket').env('NETD_SOCKET').default(DEFAULT_SOCKET))
  .showHelpAfterError()

const client = (): NetdClient => new NetdClient(program.opts<{ socket: string }>().socket)
const print = (json: boolean, value: unknown, human: () => string): void => {
  process.stdout.write(json ? JSON.stringify(value, null, 2) + '\n' : human())
}

program.command('run')
  .description('run the node daemon')
  .requiredOption('--advertise-addr <ip>', 'this node\'s underlay address (VXLAN source, and where peers send)')
  .option('--node-name <name>', 'node name', hostname())
  .option('--netns-prefix <prefix>', 'prefix of every namespace netd creates', 'weft-')
  .option('--state-dir <dir>', 'where the applied document is kept', '/var/lib/weft/netd')
  .option('--metrics-addr <addr:port>', 'Prometheus metrics listener', '127.0.0.1:9324')
  .option('--reconcile-interval <seconds>', 'seconds between drift repairs (0: only on change or request)', '10')
  .option('--underlay-mtu <bytes>', 'underlay MTU (default: the MTU of the advertise address\'s interface)')
  .option('--cleanup', 'on SIGTERM or SIGINT, remove every kernel object netd created', false)
  .option('--no-dns', 'do not serve DNS to tasks at 127.0.0.11')
  .option('--no-lb', 'do not load-balance VIPs and published ports')
  .option('--lb-tcp-established-timeout <seconds>', 'conntrack timeout of idle established TCP connections in task namespaces (default: the kernel\'s 432000)')
  .option('--resolv-conf <path>', 'the node\'s resolv.conf: upstream resolvers and search domains for tasks', '/etc/resolv.conf')
  .option('--dns-rate-limit <qps>', 'DNS queries per second one task may send (bursts of twice that)', '2000')
  .option('--log-level <level>', 'trace, debug, info, warn, error', 'info')
  .action(async (flags: Record<string, unknown>) => {
    const options = parseRunOptions({ ...flags, socket: program.opts<{ socket: string }>().socket })
    const log = pino({ level: options.logLevel, base: { node: options.nodeName } })
    const metrics = createMetrics()
    const daemon = new NetdDaemon(options, iproute, log.child({ component: 'daemon' }), metrics)
    await daemon.start()
    const swarm = await SwarmNode.start({ daemon, options, log })
    const api = createApiServer(daemon, metrics, log.child({ component: 'api' }), swarmRoutes(swarm))
    await listenOnSocket(api, options.socket)
    const [metricsHost, metricsPort] = options.metricsAddr.split(':') as [string, string]
    const metricsServer = createServer((request, response) => {
      if (request.url !== '/metrics') { response.writeHead(404).end(); return }
      metrics.registry.metrics().then((text) => response.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        () => response.writeHead(500).end())
    })
    metricsServer.on('error', (error) => log.error({ err: error, metricsAddr: options.metricsAddr }, 'metrics listener failed'))
    metricsServer.listen(Number(metricsPort), metricsHost)
    log.info({ socket: options.socket, metricsAddr: options.metricsAddr }, 'netd ready')

    let stopping = false
    const shutdown = (signal: string): void => {
      if (stopping) return
      stopping = true
      log.info({ signal, cleanup: options.cleanup }, 'netd stopping')
      api.close()
      metricsServer.close()
      swarm.stop().then(async () => await daemon.stop()).then(() => process.exit(0), (error: unknown) => {
        log.error({ err: error }, 'cleanup failed')
        process.exit(1)
      })
    }
    process.on('SIGTERM', () => shutdown('SIGTERM'))
    process.on('SIGINT', () => shutdown('SIGINT'))
  })

const summaryText = (summary: ReconcileSummary): string =>
  summary.commands === 0
    ? 'kernel already matches the document; nothing changed\n'
    : `${summary.commands} change(s) in ${summary.batches} batch(es), ${summary.durationMs} ms:\n${summary.reasons.map((r) => `  ${r}\n`).join('')}`

program.command('apply')
  .description('apply a desired-state document (JSON) to this node')
  .requiredOption('-f, --file <path>', 'document file, or - for standard input')
  .option('--json', 'print JSON')
  .action(async (flags: { file: string, json?: boolean }) => {
    const text = flags.file === '-' ? await readStdin() : await readFile(flags.file, 'utf8')
    let doc: unknown
    try {
      doc = JSON.parse(text)
    } catch (error) {
      throw new NetdError('NETD_ERR_INVALID_DOCUMENT', `${flags.file} is not JSON: ${(error as Error).message}`)
    }
    const summary = await client().call<ReconcileSummary>('PUT', '/state', doc)
    print(flags.json === true, summary, () => summaryText(summary))
  })

program.command('reconcile')
  .description('repair any drift between the kernel and the applied document now')
  .option('--json', 'print JSON')
  .action(async (flags: { json?: boolean }) => {
    const summary = await client().call<ReconcileSummary>('POST', '/reconcile')
    print(flags.json === true, summary, () => summaryText(summary))
  })

program.command('status')
  .description('node, underlay, document revision and last reconcile')
  .option('--json', 'print JSON')
  .action(async (flags: { json?: boolean }) => {
    const status = await client().call<Record<string, unknown>>('GET', '/status')
    print(flags.json === true, status, () => Object.entries(status)
      .map(([key, value]) => `${key.padEnd(18)} ${typeof value === 'object' && value !== null ? JSON.stringify(value) : String(value)}\n`).join(''))
  })

program.command('networks')
  .description('overlay networks of this node and their kernel state')
  .option('--json', 'print JSON')
  .action(async (flags: { json?: boolean }) => {
    const rows = await client().call<NetworkRow[]>('GET', '/networks')
    print(flags.json === true, rows, () => formatTable(['NETWORK', 'NAME', 'SUBNET', 'VNI', 'LOCAL', 'REMOTE', 'NAMESPACE', 'KERNEL'],
      rows.map((r) => [r.id, r.name, r.subnet, r.vni, r.localEndpoints, r.remoteEndpoints, r.netns, r.kernel])))
  })

program.command('endpoints')
  .description('local and remote endpoints, optionally of one network')
  .argument('[network]', 'network id')
  .option('--json', 'print JSON')
  .action(async (network: string | undefined, flags: { json?: boolean }) => {
    const rows = await client().call<EndpointRow[]>('GET', network ? `/endpoints?network=${encodeURIComponent(network)}` : '/endpoints')
    print(flags.json === true, rows, () => formatTable(['TASK', 'NETWORK', 'IP', 'MAC', 'NODE', 'NAMESPACE', 'IFACE', 'KERNEL'],
      rows.map((r) => [r.task, r.network, r.ip, r.mac, r.node, r.netns, r.ifname, r.kernel])))
  })

program.command('fdb')
  .description('forwarding and neighbour entries of a network: what the kernel holds next to what it should')
  .argument('<network>', 'network id')
  .option('--json', 'print JSON')
  .action(async (network: string, flags: { json?: boolean }) => {
    const rows = await client().call<FdbRow[]>('GET', `/fdb?network=${encodeURIComponent(network)}`)
    print(flags.json === true, rows, () => formatTable(['MAC', 'IP', 'WANT NODE', 'KERNEL NODE', 'KERNEL NEIGH', 'STATUS'],
      rows.map((r) => [r.mac, r.ip, r.desiredNode, r.kernelNode, r.kernelNeighbour, r.status])))
  })

const dns = program.command('dns')
  .description('the records dnsd serves to local tasks, as each task sees them')
  .option('--as <task>', 'only what this task sees')
  .option('--json', 'print JSON')
  .action(async (flags: { as?: string, json?: boolean }) => {
    const rows = await client().call<DnsRecordRow[]>('GET', flags.as ? `/dns?as=${encodeURIComponent(flags.as)}` : '/dns')
    print(flags.json === true, rows, () => formatTable(['TASK', 'NAME', 'TYPE', 'VALUE', 'TTL', 'RULE', 'NETWORK'],
      rows.map((r) => [r.task, r.name, r.type, r.value, r.ttl, r.rule, r.network])))
  })

// --as and --json are the `dns` command's own options, shared with this subcommand (commander hands
// options after a subcommand's arguments to the parent that declares them).
dns.command('query')
  .description('resolve NAME as the task given with --as would, and explain the answer (local rule and network, or forwarded)')
  .argument('<name>', 'name to resolve')
  .option('--type <type>', 'record type', 'A')
  .action(async (name: string, _flags: unknown, command: Command) => {
    const flags = command.optsWithGlobals<{ as?: string, type: string, json?: boolean }>()
    if (!flags.as) throw new NetdError('NETD_ERR_USAGE', 'netd dns query: --as TASK is required (the task whose view the name is resolved from)')
    const result = await client().call<Resolution>('GET', `/dns/query?name=${encodeURIComponent(name)}&type=${encodeURIComponent(flags.type)}&as=${encodeURIComponent(flags.as)}`)
    print(flags.json === true, result, () => [
      `${result.name} ${result.type} as ${flags.as}: ${result.rcode}, ${result.source === 'local' ? `answered locally by rule ${result.rule} on network(s) ${result.networks.join(', ')}` : `forwarded (${result.source}${result.upstream ? ` from ${result.upstream}` : ''})`}`,
      ...(result.answers.length === 0 ? ['  (no answer records)'] : result.answers.map((a) => `  ${a}`))
    ].join('\n') + '\n')
  })

program.command('lb')
  .description('VIPs and published ports with their scheduler, backends, health and counters (like ipvsadm -Ln --stats)')
  .argument('[service]', 'only this service (id or name)')
  .option('--json', 'print JSON')
  .action(async (service: string | undefined, flags: { json?: boolean }) => {
    const rows = await client().call<FrontendStats[]>('GET', service ? `/lb?service=${encodeURIComponent(service)}` : '/lb')
    print(flags.json === true, rows, () => formatStats(rows))
  })

program.command('health')
  .description('health checks of the tasks this node runs: state, failing streak, the last results')
  .option('--json', 'print JSON')
  .action(async (flags: { json?: boolean }) => {
    const rows = await client().call<Array<HealthReport & { task: string }>>('GET', '/swarm/health')
    print(flags.json === true, rows, () => formatTable(['TASK', 'STATUS', 'STREAK', 'LAST RESULT'],
      rows.map((r) => {
        const last = r.log.at(-1)
        return [r.task, r.status, r.failingStreak, last === undefined ? '' : `${last.end} exit ${last.exitCode}: ${last.output.trim().split('\n')[0] ?? ''}`]
      })))
  })

program.command('check')
  .description('compare the kernel with the applied document; exit 1 on drift')
  .option('--json', 'print JSON')
  .action(async (flags: { json?: boolean }) => {
    const result = await client().call<{ ok: boolean, drift: string[] }>('GET', '/check')
    print(flags.json === true, result, () => result.ok ? 'ok: kernel matches the applied document\n' : `drift (${result.drift.length}):\n${result.drift.map((d) => `  ${d}\n`).join('')}`)
    if (!result.ok) process.exitCode = 1
  })

program.command('leave')
  .description('forget the applied document and remove every kernel object netd created')
  .option('--json', 'print JSON')
  .action(async (flags: { json?: boolean }) => {
    const summary = await client().call<ReconcileSummary>('POST', '/leave')
    print(flags.json === true, summary, () => `left: ${summary.commands} kernel change(s)\n`)
  })

program.addCommand(execCommand(client))

async function readStdin (): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) chunks.push(chunk)
  return Buffer.concat(chunks).toString('utf8')
}

program.parseAsync().catch((error: unknown) => {
  if (error instanceof NetdError) {
    process.stderr.write(`netd: ${error.code === 'NETD_ERR_INVALID_DOCUMENT' && error.details.length > 0 ? `invalid desired-state document:\n${error.details.map((d) => `  ${d}`).join('\n')}` : error.message}\n`)
  } else {
    process.stderr.write(`netd: ${(error as Error).message}\n`)
  }
  process.exit(2)
})

/**
 * `weft service create|ls|ps|inspect|scale|update|rollback|rm`: the swarm's
 * services, from a manager. Flags are read by service-flags.ts, output made
 * by cluster-views.ts.
 */
import { Command, Option } from 'commander'
import { randomId } from '../manager/store/ids.ts'
import type { ServiceSpec } from '../manager/store/spec.ts'
import type { ClusterState, ServiceRecord, TaskRecord } from '../manager/store/state.ts'
import { findNetworkIn, findServiceIn, inspectService, SERVICE_COLUMNS, serviceRows, TASK_COLUMNS, taskRows, taskTable, type TaskFilter } from './cluster-views.ts'
import { usage } from './errors.ts'
import { parseCount, specFromCreateFlags, specFromUpdateFlags, type CreateFlags, type UpdateFlags } from './service-flags.ts'
import { clientOf, collect, control, printJson, printList, propose, snapshot } from './swarm-client.ts'

/** The restart, update and rollback flags of both create and update. */
function policyOptions (command: Command): Command {
  return command
    .option('--restart-condition <condition>', 'restart tasks: none, on-failure or any')
    .option('--restart-delay <duration>', 'wait between a task\'s end and its replacement')
    .option('--restart-max-attempts <n>', 'restarts of one slot before giving up (0: no limit)')
    .option('--restart-window <duration>', 'a task that ran this long resets the restart count')
    .option('--update-delay <duration>', 'wait between update batches')
    .option('--update-parallelism <n>', 'tasks updated at a time (0: all)')
    .option('--update-failure-action <action>', 'pause, continue or rollback')
    .option('--update-monitor <duration>', 'how long a new task must run to count as a success')
    .option('--update-max-failure-ratio <ratio>', 'failures tolerated during an update (0 to 1)')
    .option('--rollback-delay <duration>', 'wait between rollback batches')
    .option('--rollback-parallelism <n>', 'tasks rolled back at a time (0: all)')
    .option('--rollback-failure-action <action>', 'pause or continue')
    .option('--rollback-monitor <duration>', 'how long a rolled-back task must run')
    .option('--rollback-max-failure-ratio <ratio>', 'failures tolerated during a rollback')
    .option('--health-cmd <command>', 'health check: a shell command run inside the task (exit 0 is healthy)')
    .option('--health-tcp <port>', 'health check: a TCP connection to the task\'s PORT, from the node')
    .option('--health-http <path:port>', 'health check: HTTP GET of PATH on the task\'s PORT, from the node (2xx/3xx is healthy)')
    .option('--health-interval <duration>', 'time between health checks (default 5s)')
    .option('--health-timeout <duration>', 'a check running longer fails (default 3s)')
    .option('--health-retries <n>', 'consecutive failures that make a task unhealthy (default 3)')
    .option('--health-start-period <duration>', 'failures this soon after the start do not count (default 0s)')
    .option('--no-healthcheck', 'no health check')
    .option('--stop-grace-period <duration>', 'time between SIGTERM and SIGKILL (default 10s)')
    .option('--drain-delay <duration>', 'time a stopping task is out of DNS and load balancing before SIGTERM (default 2s)')
}

export function serviceCommand (): Command {
  const service = new Command('service').description('manage services').enablePositionalOptions()

  policyOptions(service.command('create'))
    .description('create a service')
    .argument('<image>', 'image: a directory under the images dir, or the host\'s filesystem')
    .argument('[args...]', 'command and arguments')
    .passThroughOptions()
    .option('--name <name>', 'service name')
    .option('--replicas <n>', 'number of tasks (replicated mode)')
    .addOption(new Option('--mode <mode>', 'replicated or global').choices(['replicated', 'global']))
    .option('--network <network>', 'attach to a network: NAME or name=NAME,alias=ALIAS (repeatable)', collect)
    .option('-e, --env <KEY=value>', 'environment variable (repeatable)', collect)
    .option('-w, --workdir <dir>', 'working directory inside the task')
    .option('-u, --user <user>', 'user: NAME, UID, NAME:GROUP or UID:GID')
    .option('--constraint <expr>', 'placement constraint, like node.labels.zone==east (repeatable)', collect)
    .option('--endpoint-mode <mode>', 'vip or dnsrr')
    .option('-p, --publish <port>', 'publish a port: published=P,target=T[,protocol=udp][,mode=host] or P:T (repeatable)', collect)
    .option('-l, --label <key=value>', 'service label (repeatable)', collect)
    .action(async (image: string, args: string[], flags: CreateFlags, command: Command) => {
      const spec = specFromCreateFlags(flags, image, args)
      const id = randomId()
      const result = await propose(clientOf(command), { type: 'service.create', id, spec })
      process.stdout.write(`${result.id ?? id}\n`)
    })

  service.command('ls')
    .alias('list')
    .description('list services')
    .option('-q, --quiet', 'print service ids only')
    .option('--no-trunc', 'do not shorten ids')
    .option('--format <format>', 'json, or a template like {{.Name}}')
    .action(async (flags: { quiet?: boolean, trunc: boolean, format?: string }, command: Command) => {
      const snap = await snapshot(clientOf(command))
      printList(serviceRows(snap.state, !flags.trunc || flags.quiet === true), flags, SERVICE_COLUMNS,
        (rows) => rows.map((r) => [r.ID, r.Name, r.Mode, r.Replicas, r.Image, r.Ports]), (r) => r.ID)
    })

  service.command('ps')
    .description('the tasks of services, with their history')
    .argument('<service...>', 'service id, id prefix or name')
    .option('-q, --quiet', 'print task ids only')
    .option('--no-trunc', 'do not shorten ids and errors')
    .option('-f, --filter <filter>', 'desired-state=running|shutdown|accepted, or node=NODE (repeatable)', collect)
    .option('--format <format>', 'json, or a template like {{.Name}}')
    .action(async (refs: string[], flags: { quiet?: boolean, trunc: boolean, filter?: string[], format?: string }, command: Command) => {
      const snap = await snapshot(clientOf(command))
      const services = refs.map((ref) => findServiceIn(snap.state, ref))
      const rows = taskRows(snap.state, services, Date.now(), { noTrunc: !flags.trunc || flags.quiet === true, filter: parseTaskFilter(flags.filter ?? []) })
      printList(rows, flags, TASK_COLUMNS, taskTable, (r) => r.ID)
    })

  service.command('inspect')
    .description('services in detail, as JSON')
    .argument('<service...>', 'service id, id prefix or name')
    .action(async (refs: string[], _flags: unknown, command: Command) => {
      const snap = await snapshot(clientOf(command))
      printJson(refs.map((ref) => inspectService(snap.state, findServiceIn(snap.state, ref))))
    })

  service.command('scale')
    .description('set the number of tasks of replicated services')
    .argument('<service=replicas...>', 'e.g. web=3 db=1')
    .action(async (pairs: string[], _flags: unknown, command: Command) => {
      const targets = pairs.map((pair) => {
        const at = pair.lastIndexOf('=')
        if (at <= 0) throw usage(`invalid scale specifier "${pair}": use SERVICE=REPLICAS`)
        return { ref: pair.slice(0, at), replicas: parseCount(pair.slice(at + 1), `scale ${pair.slice(0, at)}`) }
      })
      const client = clientOf(command)
      const snap = await snapshot(client)
      const ids = targets.map(({ ref }) => findServiceIn(snap.state, ref).id)
      for (const [i, { ref, replicas }] of targets.entries()) {
        await propose(client, { type: 'service.scale', service: ids[i]!, replicas })
        process.stdout.write(`${ref} scaled to ${replicas}\n`)
      }
    })

  policyOptions(service.command('update'))
    .description('change a service; a change to what its tasks run rolls through them')
    .argument('<service>', 'service id, id prefix or name')
    .option('--image <image>', 'new image')
    .option('--args <command>', 'new command and arguments (one string, split like a shell)')
    .option('--replicas <n>', 'number of tasks')
    .option('--env-add <KEY=value>', 'add or change an environment variable (repeatable)', collect)
    .option('--env-rm <KEY>', 'remove an environment variable (repeatable)', collect)
    .option('-w, --workdir <dir>', 'working directory')
    .option('-u, --user <user>', 'user')
    .option('--constraint-add <expr>', 'add a placement constraint (repeatable)', collect)
    .option('--constraint-rm <expr>', 'remove a placement constraint (repeatable)', collect)
    .option('--network-add <network>', 'attach to a network (repeatable)', collect)
    .option('--network-rm <network>', 'detach from a network (repeatable)', collect)
    .option('--publish-add <port>', 'publish a port (repeatable)', collect)
    .option('--publish-rm <target>', 'stop publishing a target port (repeatable)', collect)
    .option('--endpoint-mode <mode>', 'vip or dnsrr')
    .option('--label-add <key=value>', 'add or change a service label (repeatable)', collect)
    .option('--label-rm <key>', 'remove a service label (repeatable)', collect)
    .action(async (ref: string, flags: UpdateFlags, command: Command) => {
      const client = clientOf(command)
      const snap = await snapshot(client)
      const current = findServiceIn(snap.state, ref)
      const spec = specFromUpdateFlags(current.spec as ServiceSpec, flags, (network) => findNetworkIn(snap.state, network).id)
      await propose(client, { type: 'service.update', service: current.id, spec, version: current.version })
      process.stdout.write(`${ref}\n`)
    })

  service.command('rollback')
    .description('go back to a service\'s previous spec')
    .argument('<service>', 'service id, id prefix or name')
    .action(async (ref: string, _flags: unknown, command: Command) => {
      const client = clientOf(command)
      const snap = await snapshot(client)
      await propose(client, { type: 'service.rollback', service: findServiceIn(snap.state, ref).id })
      process.stdout.write(`${ref}\n`)
    })

  service.command('logs')
    .description('the output of a service\'s tasks (or of one task), from the nodes that run them')
    .argument('<service|task>', 'service id, id prefix or name; or a task id or id prefix')
    .option('-n, --tail <n>', 'only the last N lines of each task\'s output')
    .option('--raw', 'no task prefix on each line')
    .option('--no-trunc', 'full task ids')
    .action(async (ref: string, flags: { tail?: string, raw?: boolean, trunc: boolean }, command: Command) => {
      const client = clientOf(command)
      const snap = await snapshot(client)
      const tasks = logTargets(snap.state, ref)
      const tail = flags.tail === undefined || flags.tail === 'all' ? undefined : parseCount(flags.tail, '--tail')
      const answers = await control<Array<{ task: string, stdout: string, stderr: string, error: string | null }>>(client, { op: 'logs', tasks: tasks.map((t) => t.id), ...(tail === undefined ? {} : { tail }) })
      const prefixes = tasks.map((t) => logPrefix(snap.state, t, !flags.trunc))
      const width = Math.max(0, ...prefixes.map((p) => p.length))
      for (const [i, answer] of answers.entries()) {
        const prefix = flags.raw === true ? '' : `${prefixes[i]!.padEnd(width)}    | `
        const lines = (text: string): string => text === '' ? '' : text.replace(/\n$/, '').split('\n').map((line) => `${prefix}${line}\n`).join('')
        process.stdout.write(lines(answer.stdout))
        process.stderr.write(lines(answer.stderr))
        if (answer.error !== null && tasks.length === 1) process.stderr.write(`weft: ${answer.error}\n`)
      }
    })

  service.command('rm')
    .alias('remove')
    .description('remove services (their tasks stop)')
    .argument('<service...>', 'service id, id prefix or name')
    .action(async (refs: string[], _flags: unknown, command: Command) => {
      const client = clientOf(command)
      const snap = await snapshot(client)
      const ids = refs.map((ref) => findServiceIn(snap.state, ref).id)
      for (const [i, ref] of refs.entries()) {
        await propose(client, { type: 'service.remove', service: ids[i]! })
        process.stdout.write(`${ref}\n`)
      }
    })

  return service
}

/** A service's tasks that were given to a node, in `service ps` order; or the one task named. */
export function logTargets (state: ClusterState, ref: string): TaskRecord[] {
  let service: ServiceRecord | undefined
  try {
    service = findServiceIn(state, ref)
  } catch (error) {
    const task = Object.values(state.tasks).filter((t) => t.id === ref || t.id.startsWith(ref))
    if (task.length === 1) return task
    throw error
  }
  return Object.values(state.tasks)
    .filter((t) => t.service === service.id && t.node !== null)
    .sort((a, b) => (a.slot ?? 0) - (b.slot ?? 0) || (a.node ?? '').localeCompare(b.node ?? '') || a.createdAt - b.createdAt)
}

/** Docker's prefix of a log line: `myapp.1.a8iv0fxfyaul@h1`. */
export function logPrefix (state: ClusterState, task: TaskRecord, noTrunc: boolean): string {
  const name = state.services[task.service]?.spec.name ?? task.service
  const node = task.node === null ? '' : state.nodes[task.node]?.hostname ?? task.node
  return `${name}.${task.slot ?? task.node}.${noTrunc ? task.id : task.id.slice(0, 12)}@${node}`
}

export function parseTaskFilter (filters: readonly string[]): TaskFilter {
  const out: TaskFilter = {}
  for (const filter of filters) {
    const at = filter.indexOf('=')
    const key = filter.slice(0, at)
    const value = filter.slice(at + 1)
    if (at <= 0 || value === '') throw usage(`invalid filter "${filter}": use KEY=VALUE`)
    if (key === 'desired-state') {
      if (value !== 'running' && value !== 'shutdown' && value !== 'accepted') throw usage(`invalid filter "${filter}": desired-state is running, shutdown or accepted`)
      out.desiredState = value
    } else if (key === 'node') {
      out.node = value
    } else {
      throw usage(`invalid filter "${filter}": the filters are desired-state and node`)
    }
  }
  return out
}

/**
 * `weft swarm init|join|join-token|leave` and `weft info`: this node's
 * membership, through the local netd, with Swarm's words.
 */
import { Command, Option } from 'commander'
import { initMessage, joinInstructions, parseManagerAddress } from '../manager/ca/join-command.ts'
import type { InitResult, SwarmInfo } from '../netd/cluster/swarm-node.ts'
import { parseDuration } from './durations.ts'
import { usage } from './errors.ts'
import { clientOf, collect, control, swarmInfo } from './swarm-client.ts'

export function swarmCommand (): Command {
  const swarm = new Command('swarm').description('manage the swarm: init, join, join-token, leave')

  swarm.command('init')
    .description('make this node the first manager of a new swarm')
    .option('--advertise-addr <addr[:port]>', 'address other nodes reach this manager at (default: netd\'s --advertise-addr, port 2377)')
    .option('--listen-addr <addr[:port]>', 'address the manager listens on', '0.0.0.0:2377')
    .option('--default-addr-pool <cidr>', 'pool overlay subnets are taken from (repeatable; default 10.0.0.0/8)', collect)
    .option('--default-addr-pool-mask-length <n>', 'prefix length of subnets taken from the pool (default 24)')
    .option('--dispatcher-heartbeat <duration>', 'how often nodes heartbeat; a node silent for three periods is down', '5s')
    .action(async (flags: { advertiseAddr?: string, listenAddr: string, defaultAddrPool?: string[], defaultAddrPoolMaskLength?: string, dispatcherHeartbeat: string }, command: Command) => {
      const body = initBody(flags)
      const result = await clientOf(command).call<InitResult>('POST', '/swarm/init', body)
      process.stdout.write(initMessage(result.nodeId, result.workerToken, parseManagerAddress(result.managerAddr)))
    })

  swarm.command('join')
    .description('join a swarm as a node (the token decides the role)')
    .requiredOption('--token <token>', 'join token (SWMTKN-1-…)')
    .argument('<host:port>', 'a manager\'s address (port 2377 by default)')
    .action(async (remoteAddr: string, flags: { token: string }, command: Command) => {
      parseManagerAddress(remoteAddr)
      const result = await clientOf(command).call<{ role: string }>('POST', '/swarm/join', { token: flags.token, remoteAddr })
      process.stdout.write(`This node joined a swarm as a ${result.role}.\n`)
    })

  swarm.command('join-token')
    .description('show (or rotate) the token that joins a worker or a manager')
    .argument('<role>', 'worker or manager')
    .option('-q, --quiet', 'print the token only')
    .option('--rotate', 'replace the token (nodes that joined with the old one are unaffected)')
    .action(async (role: string, flags: { quiet?: boolean, rotate?: boolean }, command: Command) => {
      if (role !== 'worker' && role !== 'manager') throw usage(`unknown role ${role}: use worker or manager`)
      const answer = await control<{ token: string, managerAddr: string }>(clientOf(command), { op: 'join-token', role, rotate: flags.rotate === true })
      if (flags.quiet === true) {
        process.stdout.write(`${answer.token}\n`)
        return
      }
      const rotated = flags.rotate === true ? `Successfully rotated ${role} join token.\n\n` : ''
      process.stdout.write(rotated + joinInstructions(role, answer.token, parseManagerAddress(answer.managerAddr)))
    })

  swarm.command('leave')
    .description('leave the swarm: stop this node\'s tasks and remove its overlay')
    .option('-f, --force', 'leave even as the last manager (the swarm\'s state is lost)')
    .action(async (flags: { force?: boolean }, command: Command) => {
      await clientOf(command).call('POST', '/swarm/leave', { force: flags.force === true })
      process.stdout.write('Node left the swarm.\n')
    })

  return swarm
}

/** `swarm init` flags → the body of POST /swarm/init. */
export function initBody (flags: { advertiseAddr?: string, listenAddr?: string, defaultAddrPool?: string[], defaultAddrPoolMaskLength?: string, dispatcherHeartbeat?: string }): Record<string, unknown> {
  if (flags.advertiseAddr !== undefined) parseManagerAddress(flags.advertiseAddr)
  if (flags.listenAddr !== undefined) parseManagerAddress(flags.listenAddr)
  let subnetSize: number | undefined
  if (flags.defaultAddrPoolMaskLength !== undefined) {
    subnetSize = Number(flags.defaultAddrPoolMaskLength)
    if (!/^\d+$/.test(flags.defaultAddrPoolMaskLength) || subnetSize < 8 || subnetSize > 30) throw usage(`invalid value "${flags.defaultAddrPoolMaskLength}" for --default-addr-pool-mask-length: must be from 8 to 30`)
  }
  const heartbeat = parseDuration(flags.dispatcherHeartbeat ?? '5s', '--dispatcher-heartbeat')
  if (heartbeat < 100) throw usage('--dispatcher-heartbeat must be at least 100ms')
  return {
    ...(flags.advertiseAddr === undefined ? {} : { advertiseAddr: flags.advertiseAddr }),
    ...(flags.listenAddr === undefined ? {} : { listenAddr: flags.listenAddr }),
    ...(flags.defaultAddrPool === undefined ? {} : { defaultAddrPool: flags.defaultAddrPool }),
    ...(subnetSize === undefined ? {} : { subnetSize }),
    dispatcherHeartbeatMs: heartbeat
  }
}

/** The Swarm section of `weft info`, in the article's words. */
export function infoText (info: SwarmInfo): string {
  if (info.state === 'inactive') return 'Swarm: inactive\n'
  const lines = [`Swarm: ${info.state}`, `NodeID: ${info.nodeId ?? ''}`, `Is Manager: ${String(info.isManager)}`]
  if (info.isManager) lines.push(`ClusterID: ${info.clusterId ?? ''}`, `Managers: ${info.managers ?? 0}`, `Nodes: ${info.nodes ?? 0}`)
  lines.push(`Node Address: ${info.nodeAddr}`, 'Manager Addresses:', ...info.managerAddrs.map((a) => ` ${a}`))
  if (info.agent?.lastError != null && info.state !== 'active') lines.push(`Error: ${info.agent.lastError}`)
  return lines.join('\n') + '\n'
}

export function infoCommand (): Command {
  return new Command('info')
    .description('this node\'s swarm membership: Swarm, NodeID, Is Manager, ClusterID, Managers, Nodes')
    .addOption(new Option('--format <format>', 'json, or a template like {{.NodeID}}'))
    .action(async (flags: { format?: string }, command: Command) => {
      const info = await swarmInfo(clientOf(command))
      if (flags.format === 'json') process.stdout.write(`${JSON.stringify({ Swarm: info })}\n`)
      else process.stdout.write(infoText(info))
    })
}

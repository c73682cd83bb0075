/**
 * `weft network create|ls|inspect|rm`: the swarm's overlay networks.
 */
import { Command } from 'commander'
import { randomId } from '../manager/store/ids.ts'
import { findNetworkIn, inspectNetwork, NETWORK_COLUMNS, networkRows } from './cluster-views.ts'
import { usage } from './errors.ts'
import { parseLabels } from './service-flags.ts'
import { clientOf, collect, printJson, printList, propose, snapshot } from './swarm-client.ts'

export function networkCommand (): Command {
  const network = new Command('network').description('manage overlay networks')

  network.command('create')
    .description('create an overlay network')
    .argument('<name>', 'network name')
    .option('-d, --driver <driver>', 'network driver (overlay is the only one)', 'overlay')
    .option('--subnet <cidr>', 'subnet (default: the next free one of the address pool)')
    .option('--gateway <ip>', 'gateway address (default: the subnet\'s first)')
    .option('--attachable', 'let standalone tasks attach')
    .option('--label <key=value>', 'label (repeatable)', collect)
    .action(async (name: string, flags: { driver: string, subnet?: string, gateway?: string, attachable?: boolean, label?: string[] }, command: Command) => {
      if (flags.driver !== 'overlay') throw usage(`network driver "${flags.driver}" is not supported: weft networks are overlay networks (--driver overlay)`)
      const id = randomId()
      const result = await propose(clientOf(command), {
        type: 'network.create',
        id,
        name,
        driver: 'overlay',
        ...(flags.subnet === undefined ? {} : { subnet: flags.subnet }),
        ...(flags.gateway === undefined ? {} : { gateway: flags.gateway }),
        attachable: flags.attachable === true,
        labels: parseLabels(flags.label ?? [], '--label')
      })
      process.stdout.write(`${result.id ?? id}\n`)
    })

  network.command('ls')
    .alias('list')
    .description('list networks')
    .option('-q, --quiet', 'print network ids only')
    .option('--no-trunc', 'do not shorten ids')
    .option('--format <format>', 'json, or a template like {{.Name}}')
    .action(async (flags: { quiet?: boolean, trunc: boolean, format?: string }, command: Command) => {
      const snap = await snapshot(clientOf(command))
      printList(networkRows(snap.state, !flags.trunc || flags.quiet === true), flags, NETWORK_COLUMNS, (rows) => rows.map((r) => [r.ID, r.Name, r.Driver, r.Scope]), (r) => r.ID)
    })

  network.command('inspect')
    .description('networks in detail, as JSON')
    .argument('<network...>', 'network id, id prefix or name')
    .action(async (refs: string[], _flags: unknown, command: Command) => {
      const snap = await snapshot(clientOf(command))
      printJson(refs.map((ref) => inspectNetwork(snap.state, findNetworkIn(snap.state, ref))))
    })

  network.command('rm')
    .alias('remove')
    .description('remove networks (refused while a service uses them)')
    .argument('<network...>', 'network id, id prefix or name')
    .action(async (refs: string[], _flags: unknown, command: Command) => {
      const client = clientOf(command)
      const snap = await snapshot(client)
      for (const ref of refs) {
        await propose(client, { type: 'network.remove', network: findNetworkIn(snap.state, ref).id })
        process.stdout.write(`${ref}\n`)
      }
    })

  return network
}

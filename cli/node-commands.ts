/**
 * `weft node ls|inspect|update|promote|demote|rm|ps`: the swarm's nodes, from
 * a manager.
 */
import { Command } from 'commander'
import { inspectNode, findNodeIn, NODE_COLUMNS, nodeRows, nodeTable, taskRows, taskTable, TASK_COLUMNS } from './cluster-views.ts'
import { usage } from './errors.ts'
import { parseLabels } from './service-flags.ts'
import { clientOf, collect, printJson, printList, propose, snapshot, swarmInfo } from './swarm-client.ts'

export function nodeCommand (): Command {
  const node = new Command('node').description('manage swarm nodes')

  node.command('ls')
    .alias('list')
    .description('list the swarm\'s nodes (* marks this one)')
    .option('-q, --quiet', 'print node ids only')
    .option('--format <format>', 'json, or a template like {{.Hostname}}')
    .action(async (flags: { quiet?: boolean, format?: string }, command: Command) => {
      const client = clientOf(command)
      const [snap, info] = await Promise.all([snapshot(client), swarmInfo(client)])
      printList(nodeRows(snap.state, info.nodeId), flags, NODE_COLUMNS, nodeTable, (r) => r.ID)
    })

  node.command('inspect')
    .description('a node in detail, as JSON (self: this node)')
    .argument('<node...>', 'node id, id prefix, hostname, or self')
    .action(async (refs: string[], _flags: unknown, command: Command) => {
      const client = clientOf(command)
      const [snap, info] = await Promise.all([snapshot(client), swarmInfo(client)])
      printJson(refs.map((ref) => inspectNode(snap, findNodeIn(snap.state, ref, info.nodeId))))
    })

  node.command('ps')
    .description('tasks on a node (default: this one)')
    .argument('[node]', 'node id, hostname, or self', 'self')
    .option('--no-trunc', 'do not shorten ids and errors')
    .option('-q, --quiet', 'print task ids only')
    .option('--format <format>', 'json, or a template')
    .action(async (ref: string, flags: { trunc: boolean, quiet?: boolean, format?: string }, command: Command) => {
      const client = clientOf(command)
      const [snap, info] = await Promise.all([snapshot(client), swarmInfo(client)])
      const target = findNodeIn(snap.state, ref, info.nodeId)
      const rows = taskRows(snap.state, Object.values(snap.state.services), Date.now(), { noTrunc: !flags.trunc, filter: { node: target.id } })
      printList(rows, flags, TASK_COLUMNS, taskTable, (r) => r.ID)
    })

  node.command('update')
    .description('change a node\'s availability or labels')
    .argument('<node>', 'node id or hostname')
    .option('--availability <state>', 'active, pause or drain')
    .option('--label-add <key=value>', 'add or change a label (repeatable)', collect)
    .option('--label-rm <key>', 'remove a label (repeatable)', collect)
    .action(async (ref: string, flags: { availability?: string, labelAdd?: string[], labelRm?: string[] }, command: Command) => {
      const client = clientOf(command)
      if (flags.availability !== undefined && !['active', 'pause', 'drain'].includes(flags.availability)) {
        throw usage(`invalid value "${flags.availability}" for --availability: must be active, pause or drain`)
      }
      const id = await resolveNode(client, ref)
      await propose(client, {
        type: 'node.update',
        node: id,
        ...(flags.availability === undefined ? {} : { availability: flags.availability as 'active' | 'pause' | 'drain' }),
        labelsAdd: parseLabels(flags.labelAdd ?? [], '--label-add'),
        labelsRemove: flags.labelRm ?? []
      })
      process.stdout.write(`${ref}\n`)
    })

  node.command('promote')
    .description('make workers managers')
    .argument('<node...>', 'node ids or hostnames')
    .action(async (refs: string[], _flags: unknown, command: Command) => {
      const client = clientOf(command)
      for (const ref of refs) {
        await propose(client, { type: 'node.update', node: await resolveNode(client, ref), role: 'manager' })
        process.stdout.write(`Node ${ref} promoted to a manager in the swarm.\n`)
      }
    })

  node.command('demote')
    .description('make managers workers')
    .argument('<node...>', 'node ids or hostnames')
    .action(async (refs: string[], _flags: unknown, command: Command) => {
      const client = clientOf(command)
      for (const ref of refs) {
        await propose(client, { type: 'node.update', node: await resolveNode(client, ref), role: 'worker' })
        process.stdout.write(`Manager ${ref} demoted in the swarm.\n`)
      }
    })

  node.command('rm')
    .alias('remove')
    .description('remove nodes from the swarm')
    .argument('<node...>', 'node ids or hostnames')
    .option('-f, --force', 'remove a node that is not down')
    .action(async (refs: string[], flags: { force?: boolean }, command: Command) => {
      const client = clientOf(command)
      for (const ref of refs) {
        await propose(client, { type: 'node.remove', node: await resolveNode(client, ref), force: flags.force === true })
        process.stdout.write(`${ref}\n`)
      }
    })

  return node
}

/** A node reference (id, unique id prefix, hostname, self) as the node's id. */
async function resolveNode (client: ReturnType<typeof clientOf>, ref: string): Promise<string> {
  const [snap, info] = await Promise.all([snapshot(client), swarmInfo(client)])
  return findNodeIn(snap.state, ref, info.nodeId).id
}

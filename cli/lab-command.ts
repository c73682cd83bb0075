/**
 * `weft lab …`: up, down, ls, exec. A thin shell over lab/lab.ts; it parses arguments, prints
 * tables and sets the exit code, and holds no lab logic of its own.
 */

import { Command, InvalidArgumentError, Option } from 'commander'
import { labDown, labDownAll, labList, labUp, openLab } from '../lab/lab.ts'
import { DEFAULT_LAB_NAME, DEFAULT_NODES, MAX_NODES, allHosts } from '../lab/topology.ts'
import { formatTable } from './table.ts'

function parseNodes(value: string): number {
  const n = Number(value)
  if (!/^\d+$/.test(value) || n < 1 || n > MAX_NODES) throw new InvalidArgumentError(`must be an integer from 1 to ${MAX_NODES}`)
  return n
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value]
}

const nameOption = (): Option => new Option('--name <name>', 'lab name').default(DEFAULT_LAB_NAME)

export function labCommand(): Command {
  const lab = new Command('lab').description('a weft cluster on this machine, made of network namespaces').enablePositionalOptions()

  lab
    .command('up')
    .description('create a lab: N nodes running netd, an outside client and a DNS resolver')
    .addOption(new Option('--nodes <n>', `number of nodes (1-${MAX_NODES})`).argParser(parseNodes).default(DEFAULT_NODES))
    .addOption(nameOption())
    .option('--netd-entry <path>', 'netd script to run instead of the repository one')
    .option('--netd-arg <arg>', 'extra argument for every netd (repeatable; use --netd-arg=--flag)', collect, [])
    .action(async (opts: { nodes: number; name: string; netdEntry?: string; netdArg: string[] }) => {
      const created = await labUp({ name: opts.name, nodes: opts.nodes, netdEntry: opts.netdEntry, netdArgs: opts.netdArg })
      const rows = allHosts(created.topology).map((h) => [h.name, h.netns, h.address ?? '-', h.role])
      process.stdout.write(formatTable(['HOST', 'NAMESPACE', 'ADDRESS', 'ROLE'], rows))
    })

  lab
    .command('down')
    .description('remove a lab and everything it started (also after a crash)')
    .addOption(nameOption())
    .option('--all', 'remove every lab, including orphaned ones')
    .action(async (opts: { name: string; all?: boolean }) => {
      if (opts.all) {
        const removed = await labDownAll()
        process.stdout.write(removed.length === 0 ? 'no labs\n' : `removed ${removed.join(', ')}\n`)
      } else {
        await labDown(opts.name)
      }
    })

  lab
    .command('ls')
    .description('list labs, from state files and from leftover namespaces')
    .action(async () => {
      const rows = (await labList()).map((l) => [l.name, l.nodes === null ? '-' : String(l.nodes), String(l.namespaces), l.state])
      process.stdout.write(formatTable(['NAME', 'NODES', 'NAMESPACES', 'STATE'], rows))
    })

  lab
    .command('exec')
    .description('run a command on a lab host (h1..hN, outside, dns, ul)')
    .addOption(nameOption())
    .argument('<host>', 'host name')
    .argument('<command...>', 'command and arguments, after --')
    .passThroughOptions()
    .action(async (host: string, command: string[], opts: { name: string }) => {
      const opened = await openLab(opts.name)
      // With passThroughOptions commander keeps the `--` that separates our options from the command.
      const argv = command[0] === '--' ? command.slice(1) : command
      // The terminal sends Ctrl-C to the command too; we only wait for it and pass its status on.
      const ignore = (): void => {}
      process.on('SIGINT', ignore)
      try {
        process.exitCode = await opened.execInherit(host, argv)
      } finally {
        process.off('SIGINT', ignore)
      }
    })

  return lab
}

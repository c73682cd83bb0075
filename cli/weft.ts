/**
 * The `weft` command. Each command group lives in its own module (`lab-command.ts`,
 * `swarm-commands.ts`, `node-commands.ts`, `network-commands.ts`, `service-commands.ts`) and is
 * registered here; errors with a stable code are shown
 * as one line for a person plus the code for a program.
 */

import { Command, CommanderError, Option } from 'commander'
import { labCommand } from './lab-command.ts'
import { networkCommand } from './network-commands.ts'
import { nodeCommand } from './node-commands.ts'
import { serviceCommand } from './service-commands.ts'
import { infoCommand, swarmCommand } from './swarm-commands.ts'

function program(): Command {
  return new Command('weft')
    .description('overlay networking and service discovery in the shape of Docker Swarm mode')
    .enablePositionalOptions()
    .exitOverride()
    .addOption(new Option('--socket <path>', 'the local netd\'s API socket').env('NETD_SOCKET'))
    .addCommand(labCommand())
    .addCommand(swarmCommand())
    .addCommand(nodeCommand())
    .addCommand(networkCommand())
    .addCommand(serviceCommand())
    .addCommand(infoCommand())
}

async function main(argv: readonly string[]): Promise<void> {
  try {
    await program().parseAsync([...argv], { from: 'user' })
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander already printed usage or the parse error.
      process.exitCode = err.exitCode
      return
    }
    const e = err as Error & { code?: unknown }
    process.stderr.write(`weft: ${e.message}${typeof e.code === 'string' ? ` [${e.code}]` : ''}\n`)
    process.exitCode = 1
  }
}

await main(process.argv.slice(2))

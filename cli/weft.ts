/**
 * The `weft` command. Each command group lives in its own module (`lab-command.ts` now; swarm,
 * node, service and network later) and is registered here; errors with a stable code are shown
 * as one line for a person plus the code for a program.
 */

import { Command, CommanderError } from 'commander'
import { labCommand } from './lab-command.ts'

function program(): Command {
  return new Command('weft')
    .description('overlay networking and service discovery in the shape of Docker Swarm mode')
    .enablePositionalOptions()
    .exitOverride()
    .addCommand(labCommand())
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

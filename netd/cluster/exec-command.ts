/**
 * `netd exec TASK -- CMD…`: runs CMD inside a task on this node (see
 * netd/runtime/exec.ts), with this process's stdin, stdout and stderr, and
 * exits with CMD's exit code. TASK is a task id, a unique prefix of one, or a
 * name such as `web.2`. The running netd says where its tasks live; the
 * command itself runs from here, so no output passes through the daemon.
 */
import { Command } from 'commander'
import type { NetdClient } from '../api-client.ts'
import { netdExec } from '../runtime/exec.ts'

export function execCommand (client: () => NetdClient): Command {
  return new Command('exec')
    .description('run a command inside a task on this node (TASK: id, id prefix, or name such as web.2)')
    .argument('<task>', 'task id, unique id prefix, or name')
    .argument('<command...>', 'command and arguments, after --')
    .option('-u, --user <user>', 'run as this user (NAME, UID, NAME:GROUP or UID:GID) instead of the task\'s')
    .option('-w, --workdir <dir>', 'working directory inside the task')
    .option('-e, --env <KEY=value>', 'set an environment variable (repeatable)', (value: string, previous: string[]) => [...previous, value], [] as string[])
    .action(async (task: string, command: string[], flags: { user?: string, workdir?: string, env: string[] }) => {
      const argv = command[0] === '--' ? command.slice(1) : command
      const { stateDir } = await client().call<{ stateDir: string }>('GET', '/swarm/runtime')
      const env = Object.fromEntries(flags.env.map((entry) => {
        const at = entry.indexOf('=')
        return at === -1 ? [entry, process.env[entry] ?? ''] : [entry.slice(0, at), entry.slice(at + 1)]
      }))
      process.exitCode = await netdExec(stateDir, task, argv, {
        ...(flags.user === undefined ? {} : { user: flags.user }),
        ...(flags.workdir === undefined ? {} : { workdir: flags.workdir }),
        ...(flags.env.length === 0 ? {} : { env })
      })
    })
}

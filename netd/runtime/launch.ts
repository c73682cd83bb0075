/**
 * How a task's process is started, as data: the settings after the image's
 * defaults are applied, and the exact argv of the process chain. Pure, so
 * the chain can be read (and tested) without starting anything.
 *
 * The chain, outermost first:
 *
 *   supervisor  `sh`, in netd's namespaces, its own session and process group (netd spawns it
 *               detached), so netd's exit, crash or restart never reaches the task. It writes
 *               its pid, runs the rest in the foreground and, when that ends, writes the exit
 *               status to `exit-status` with a rename: the status is kept even if netd is down.
 *   waiter      `ip netns exec NS unshare --pid --mount --uts --ipc -- sh`: joins the task's
 *               network namespace (and gets /etc/netns/NS/resolv.conf bound over
 *               /etc/resolv.conf in a private mount namespace), unshares the rest, and waits for
 *               its first child, which is PID 1 of the new PID namespace. unshare --fork is not
 *               used because util-linux 2.38 reports a child killed by SIGKILL as exit 1.
 *   init        `sh`, PID 1 while it prepares: mounts /proc for the new PID namespace, sets the
 *               hostname, and for a rootfs image mounts /proc, /dev, /sys and resolv.conf inside
 *               it; then execs
 *   env -i …    the task's environment, exactly (this part of the chain is read from a root-only
 *               file, see INIT_SCRIPT);
 *   setpriv     the group and supplementary groups (still root, so the chroot can follow);
 *   unshare     chroot to the image's rootfs (if any), chdir to the workdir, setuid; then execs
 *   the command, which is therefore PID 1 of its namespace, as in a container without --init.
 *
 * Signals: the supervisor and the waiter trap the catchable signals with a no-op handler (not
 * "ignore", which children would inherit), so a signal to the whole process group reaches the
 * task and leaves the two shells waiting to record how it ended. A shell reports a death by
 * signal N as 128+N: so does the status file, as docker reports it.
 */
import { DEFAULT_PATH, defaultHostname, type TaskProcessSpec } from './spec.ts'
import type { ResolvedImage } from './image.ts'
import type { ResolvedUser } from './users.ts'
import { TaskRuntimeError } from './errors.ts'

/** Absolute paths of the programs the chain runs (found once, see tools.ts). */
export interface Tools {
  readonly sh: string
  readonly ip: string
  readonly unshare: string
  readonly nsenter: string
  readonly setpriv: string
  readonly env: string
  readonly mount: string
}

/** What the task runs, after the image's defaults: the spec's values win. */
export interface TaskSettings {
  readonly command: readonly string[]
  /** The image's env under the spec's; PATH, HOSTNAME and HOME are added by planLaunch. */
  readonly env: Readonly<Record<string, string>>
  readonly workdir: string
  readonly user: string | undefined
  readonly hostname: string
}

export function taskSettings (spec: TaskProcessSpec, image: ResolvedImage): TaskSettings {
  const config = image.kind === 'rootfs' ? image.config : {}
  const command = spec.command.length > 0 ? spec.command : (config.command ?? [])
  if (command.length === 0) {
    throw new TaskRuntimeError('NETD_ERR_TASK_NO_COMMAND', image.kind === 'host'
      ? `task ${spec.task}: no command given, and image "${spec.image}" is not in the images directory: the host filesystem has no default command`
      : `task ${spec.task}: no command given, and image "${spec.image}" has no default command (config.json "command")`)
  }
  return {
    command,
    env: { ...config.env, ...spec.env },
    workdir: spec.workdir ?? config.workdir ?? '/',
    user: spec.user ?? config.user,
    hostname: spec.hostname ?? defaultHostname(spec.name)
  }
}

/** Mount targets inside a rootfs image, as host paths already resolved inside the root ('' = skip). */
export interface RootMounts {
  readonly proc: string
  readonly dev: string
  readonly sys: string
  readonly resolvConf: string
}

export const NO_ROOT_MOUNTS: RootMounts = Object.freeze({ proc: '', dev: '', sys: '', resolvConf: '' })

/** Everything the chain needs, and what `netd exec` later needs to join the task as it runs. */
export interface LaunchPlan {
  readonly netns: string
  /** The image's rootfs (host path), or null for the host filesystem. */
  readonly rootfs: string | null
  readonly mounts: RootMounts
  readonly hostname: string
  readonly uid: number
  readonly gid: number
  readonly groups: readonly number[]
  /** The complete environment, sorted by name. */
  readonly env: Readonly<Record<string, string>>
  readonly workdir: string
  readonly argv: readonly string[]
}

export function planLaunch (spec: TaskProcessSpec, image: ResolvedImage, settings: TaskSettings, user: ResolvedUser, mounts: RootMounts): LaunchPlan {
  const env: Record<string, string> = { PATH: DEFAULT_PATH, HOSTNAME: settings.hostname, HOME: user.home, ...settings.env }
  const sorted = Object.fromEntries(Object.entries(env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
  return {
    netns: spec.netns,
    rootfs: image.kind === 'rootfs' ? image.rootfs : null,
    mounts: image.kind === 'rootfs' ? mounts : NO_ROOT_MOUNTS,
    hostname: settings.hostname,
    uid: user.uid,
    gid: user.gid,
    groups: user.groups,
    env: sorted,
    workdir: settings.workdir,
    argv: settings.command
  }
}

const TRAPPED = 'HUP INT QUIT TERM USR1 USR2 ALRM'

/**
 * $1: the task's state directory; the rest: the chain. The chain runs inside a function, whose
 * positional parameters are its own, so $1 is the directory again when the status is written.
 */
export const SUPERVISOR_SCRIPT = `trap : ${TRAPPED}
umask 022
printf '%s\\n' "$$" > "$1/supervisor.pid.tmp" && mv -f "$1/supervisor.pid.tmp" "$1/supervisor.pid"
chain () { shift; "$@"; }
chain "$@"
printf '%s\\n' "$?" > "$1/exit-status.tmp" && mv -f "$1/exit-status.tmp" "$1/exit-status"
`

export const WAITER_SCRIPT = `trap : ${TRAPPED}
"$@"
exit $?
`

/**
 * Replaces the positional parameters with the arguments in the file named by $args, written by
 * encodeArgs: `r` + an argument as it is, or `e` + an argument whose backslashes and newlines are
 * escaped for printf %b (the x guards trailing newlines from the command substitution).
 */
export const READ_ARGS = `set --
while IFS= read -r line; do
  case $line in
    r*) set -- "$@" "\${line#r}" ;;
    *) v=$(printf '%bx' "\${line#e}"); set -- "$@" "\${v%x}" ;;
  esac
done < "$args"
`

/**
 * PID 1 while it prepares. $1 hostname, $2 mount, $3-$6 rootfs mount targets ('' = skip), $7 the
 * file holding the exec chain (env -i with the task's environment … the command). The chain is
 * read from a root-only file, not passed as arguments: command lines are world-readable in /proc,
 * and the supervisor's and the waiter's live as long as the task, secrets in the env with them.
 */
export const INIT_SCRIPT = `host=$1 mount=$2 proc=$3 dev=$4 sys=$5 resolv=$6 args=$7
fail () { printf 'weft: %s\\n' "$1" >&2; exit 125; }
"$mount" -t proc -o nosuid,nodev,noexec proc /proc || fail 'cannot mount /proc'
printf '%s' "$host" > /proc/sys/kernel/hostname || fail 'cannot set the hostname'
if [ -n "$proc" ]; then "$mount" -t proc -o nosuid,nodev,noexec proc "$proc" || fail "cannot mount $proc"; fi
if [ -n "$dev" ]; then "$mount" --rbind /dev "$dev" || fail "cannot mount $dev"; fi
if [ -n "$sys" ]; then "$mount" --rbind /sys "$sys" || fail "cannot mount $sys"; fi
if [ -n "$resolv" ]; then "$mount" --bind /etc/resolv.conf "$resolv" || fail "cannot mount $resolv"; fi
[ -r "$args" ] || fail "cannot read $args"
${READ_ARGS}[ $# -gt 0 ] || fail "no command in $args"
exec "$@"
`

/** The file READ_ARGS reads: one argument per line. Arguments never hold NUL (the spec refuses it). */
export function encodeArgs (args: readonly string[]): string {
  return args.map((arg) => /[\\\n]/.test(arg)
    ? `e${arg.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}\n`
    : `r${arg}\n`).join('')
}

function groupArgs (groups: readonly number[]): string[] {
  return groups.length > 0 ? ['--groups', groups.join(',')] : ['--clear-groups']
}

/** What PID 1 execs once prepared: the task's exact environment, its groups, root, workdir, uid; then the command. */
export function execChain (plan: LaunchPlan, tools: Tools): string[] {
  return [
    tools.env, '-i', ...Object.entries(plan.env).map(([k, v]) => `${k}=${v}`),
    tools.setpriv, '--regid', String(plan.gid), ...groupArgs(plan.groups), '--',
    tools.unshare, ...(plan.rootfs === null ? [] : ['--root', plan.rootfs]), '--wd', plan.workdir, '--setuid', String(plan.uid), '--',
    ...plan.argv
  ]
}

/**
 * The supervisor's argv (to spawn with a fixed environment, detached, stdio to the log files).
 * `argsFile` must hold encodeArgs(execChain(plan, tools)).
 */
export function supervisorArgv (plan: LaunchPlan, taskDir: string, argsFile: string, tools: Tools): string[] {
  return [
    tools.sh, '-c', SUPERVISOR_SCRIPT, 'weft-supervisor', taskDir,
    tools.ip, 'netns', 'exec', plan.netns,
    tools.unshare, '--pid', '--mount', '--uts', '--ipc', '--propagation', 'private', '--',
    tools.sh, '-c', WAITER_SCRIPT, 'weft-waiter',
    tools.sh, '-c', INIT_SCRIPT, 'weft-init', plan.hostname, tools.mount,
    plan.mounts.proc, plan.mounts.dev, plan.mounts.sys, plan.mounts.resolvConf, argsFile
  ]
}

/** Who and where an exec runs: by default as the task itself. */
export interface ExecIdentity {
  readonly uid: number
  readonly gid: number
  readonly groups: readonly number[]
  readonly workdir: string
}

/**
 * The argv that runs `argv` in the namespaces of the process `pid` (the task's PID 1): nsenter
 * joins them, takes that process's root, changes to the workdir inside it and sets the uid;
 * setpriv sets the groups first, while still root. The environment is passed to the spawned
 * process itself: neither tool changes it.
 */
export function execArgv (pid: number, identity: ExecIdentity, argv: readonly string[], tools: Tools): string[] {
  return [
    tools.setpriv, '--regid', String(identity.gid), ...groupArgs(identity.groups), '--',
    tools.nsenter, '--target', String(pid), '--mount', '--uts', '--ipc', '--net', '--pid',
    '--root', `--wdns=${identity.workdir}`, '--setuid', String(identity.uid), '--',
    ...argv
  ]
}

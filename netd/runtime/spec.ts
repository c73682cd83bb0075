/**
 * What the runtime needs to start one task's process, validated once at the
 * edge. Everything that reaches a file name (task id, image), an argv
 * (command, env) or the kernel (hostname) is checked here, so the launch code
 * can pass values on without quoting surprises: no NUL bytes anywhere (exec
 * cannot carry them), no `=` in an environment name, ids and image names
 * that cannot climb out of their directory.
 */
import { z } from 'zod'
import { TaskRuntimeError } from './errors.ts'

/** The desired-state document's id pattern (netd/desired-state.ts): task ids are 25 base-36 characters. */
export const TASK_ID_PATTERN = /^[a-z0-9][a-z0-9_.-]{0,31}$/

/**
 * An image reference: Docker's path components (lower-case, `.`, `_`, `__` or dashes between
 * alphanumerics), separated by `/`, with an optional `:tag`. No registry host with a port and no
 * digest. No component can be `.` or `..`, so the reference is a safe relative path.
 */
export const IMAGE_PATTERN = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$/

/** `name`, `uid`, `name:group`, `uid:gid` (or mixed). Names as useradd accepts them. */
export const USER_PATTERN = /^(?:[a-z_][a-z0-9_.-]{0,31}\$?|\d{1,10})(?::(?:[a-z_][a-z0-9_.-]{0,31}|\d{1,10}))?$/

const HOSTNAME_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/
/** The kernel keeps at most 64 bytes of hostname. */
export const HOSTNAME_MAX = 64

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

const noNul = (s: string): boolean => !s.includes('\0')
const text = z.string().refine(noNul, 'must not contain NUL bytes')

export const envSchema = z.record(
  z.string().min(1).max(1024).regex(/^[^=\0]+$/, 'must not contain = or NUL').refine((s) => !s.startsWith('-'), 'must not start with -'),
  text
)

export const workdirSchema = z.string().max(4096).refine(noNul, 'must not contain NUL bytes')
  .refine((s) => s.startsWith('/'), 'must be an absolute path')

export const userSchema = z.string().regex(USER_PATTERN, 'must be NAME, UID, NAME:GROUP or UID:GID')

export const hostnameSchema = z.string().max(HOSTNAME_MAX).refine(
  (s) => s.split('.').every((label) => HOSTNAME_LABEL.test(label)),
  'must be a host name: labels of letters, digits and dashes separated by dots, at most 64 characters'
)

export const taskProcessSpecSchema = z.strictObject({
  /** The task id: names the state directory. */
  task: z.string().regex(TASK_ID_PATTERN, 'must be 1-32 characters of a-z, 0-9, _ . - starting with a letter or digit'),
  /** The task name, `<service>.<slot>.<task-id>`: what `netd exec web.2` matches, and the default hostname. */
  name: z.string().min(1).max(255).regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'must be letters, digits, _ . - starting with a letter or digit'),
  /** The task's network namespace, created beforehand by netd's reconciler. */
  netns: z.string().min(1).max(255).regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'must be a network namespace name'),
  image: z.string().max(255).regex(IMAGE_PATTERN, 'must be an image name: lower-case components of letters and digits (separated by . _ __ - or /), optionally :TAG'),
  /** argv; empty runs the image's default command. */
  command: z.array(text.max(128 * 1024)).max(4096).default([]),
  env: envSchema.default({}),
  workdir: workdirSchema.optional(),
  user: userSchema.optional(),
  hostname: hostnameSchema.optional()
}).refine((spec) => spec.command.length === 0 || spec.command[0] !== '', { message: 'must not start with an empty program name', path: ['command'] })

export type TaskProcessSpec = z.output<typeof taskProcessSpecSchema>
export type TaskProcessSpecInput = z.input<typeof taskProcessSpecSchema>

/** Validates a spec; throws NETD_ERR_TASK_SPEC with one detail per problem. */
export function parseTaskProcessSpec (input: unknown): TaskProcessSpec {
  const parsed = taskProcessSpecSchema.safeParse(input)
  if (!parsed.success) {
    const details = parsed.error.issues.map((issue) => `${issue.path.map(String).join('.') || 'spec'}: ${issue.message}`)
    throw new TaskRuntimeError('NETD_ERR_TASK_SPEC', `invalid task process spec: ${details.join('; ')}`, details)
  }
  return parsed.data
}

/**
 * The task's hostname when none is given: its name, as a host name (other characters become
 * dashes, cut to 64 characters). Swarm uses the container id; a name is what people read.
 */
export function defaultHostname (name: string): string {
  const labels = name.replace(/[^A-Za-z0-9.-]/g, '-').slice(0, HOSTNAME_MAX).split('.')
    .map((label) => label.replace(/^-+|-+$/g, '').slice(0, 63))
    .filter((label) => label !== '')
  return labels.join('.') || 'task'
}

/**
 * A service's `KEY=value` list (docker's `--env`) as the spec's map. A bare `KEY` takes the value
 * from `from` (the node's environment) and is left out when it has none there, as docker does.
 */
export function envFromList (list: readonly string[], from: Readonly<Record<string, string | undefined>> = {}): Record<string, string> {
  const env: Record<string, string> = {}
  for (const entry of list) {
    const eq = entry.indexOf('=')
    if (eq === -1) {
      const value = from[entry]
      if (value !== undefined) env[entry] = value
    } else {
      env[entry.slice(0, eq)] = entry.slice(eq + 1)
    }
  }
  return env
}

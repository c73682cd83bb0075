/**
 * Who a task runs as, resolved from the task root's /etc/passwd and
 * /etc/group (the image's own files, or the host's for the host image).
 * Files only, no NSS: a chrooted image cannot consult the host's LDAP, and
 * the same rule for both kinds of image keeps behaviour predictable.
 *
 * As docker does: a numeric uid need not exist (it then gets gid 0 unless a
 * group is given, and home `/`); a name must. Supplementary groups are the
 * primary group plus every group that lists the user name as a member.
 */
import { TaskRuntimeError } from './errors.ts'

export interface PasswdEntry {
  readonly name: string
  readonly uid: number
  readonly gid: number
  readonly home: string
}

export interface GroupEntry {
  readonly name: string
  readonly gid: number
  readonly members: readonly string[]
}

export interface ResolvedUser {
  readonly uid: number
  readonly gid: number
  /** Supplementary groups, the primary group first. */
  readonly groups: readonly number[]
  readonly home: string
  /** The user name when the passwd file knows the user. */
  readonly name: string | null
}

const ID_MAX = 0xfffffffe

function parseId (field: string | undefined): number | null {
  if (field === undefined || !/^\d{1,10}$/.test(field)) return null
  const n = Number(field)
  return n <= ID_MAX ? n : null
}

/** Malformed lines are skipped, as libc does. */
export function parsePasswd (text: string): PasswdEntry[] {
  const entries: PasswdEntry[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const fields = line.split(':')
    const uid = parseId(fields[2])
    const gid = parseId(fields[3])
    const name = fields[0]
    if (name === undefined || name === '' || uid === null || gid === null) continue
    entries.push({ name, uid, gid, home: fields[5] || '/' })
  }
  return entries
}

export function parseGroup (text: string): GroupEntry[] {
  const entries: GroupEntry[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const fields = line.split(':')
    const gid = parseId(fields[2])
    const name = fields[0]
    if (name === undefined || name === '' || gid === null) continue
    entries.push({ name, gid, members: (fields[3] ?? '').split(',').filter((m) => m !== '') })
  }
  return entries
}

/**
 * Resolves `user` (`name`, `uid`, `name:group`, `uid:gid`; undefined is root) against the
 * root's passwd and group entries. Throws NETD_ERR_TASK_USER for a name that is not there.
 */
export function resolveUser (user: string | undefined, passwd: readonly PasswdEntry[], group: readonly GroupEntry[]): ResolvedUser {
  const spec = user ?? '0'
  const colon = spec.indexOf(':')
  const userPart = colon === -1 ? spec : spec.slice(0, colon)
  const groupPart = colon === -1 ? null : spec.slice(colon + 1)

  let entry: PasswdEntry | undefined
  let uid: number
  const numericUid = parseId(userPart)
  if (numericUid !== null) {
    uid = numericUid
    entry = passwd.find((p) => p.uid === uid)
  } else {
    entry = passwd.find((p) => p.name === userPart)
    if (entry === undefined) throw new TaskRuntimeError('NETD_ERR_TASK_USER', `unknown user "${userPart}": not in the image's /etc/passwd`)
    uid = entry.uid
  }

  let gid = entry?.gid ?? 0
  if (groupPart !== null) {
    const numericGid = parseId(groupPart)
    if (numericGid !== null) {
      gid = numericGid
    } else {
      const g = group.find((candidate) => candidate.name === groupPart)
      if (g === undefined) throw new TaskRuntimeError('NETD_ERR_TASK_USER', `unknown group "${groupPart}": not in the image's /etc/group`)
      gid = g.gid
    }
  }

  const groups = [gid]
  if (entry !== undefined) {
    for (const g of group) {
      if (g.members.includes(entry.name) && !groups.includes(g.gid)) groups.push(g.gid)
    }
  }
  return { uid, gid, groups, home: entry?.home ?? '/', name: entry?.name ?? null }
}

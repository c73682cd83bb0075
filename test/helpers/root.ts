/**
 * The guard of a privileged test file: without root it fails in CI (where it
 * must run) and is skipped elsewhere (a laptop), then the file ends.
 */
import t from 'tap'

export function requireRoot (what: string, needs: string): void {
  if (process.getuid?.() === 0) return
  if (process.env.CI !== undefined) t.fail(`${what} needs root`)
  else t.plan(0, `needs root (${needs})`)
  process.exit()
}

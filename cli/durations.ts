/**
 * Durations as Docker's flags take them (Go's time.ParseDuration: `10s`,
 * `1m30s`, `500ms`, `1.5h`; a bare `0`), to milliseconds; and back, for
 * `inspect --pretty`-style output; and Docker's "48 seconds ago" wording.
 */
import { usage } from './errors.ts'

const UNIT_MS: Readonly<Record<string, number>> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

export function parseDuration (text: string, flag: string): number {
  const input = text.trim()
  if (input === '0') return 0
  const parts = [...input.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)]
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== input) {
    throw usage(`invalid duration "${text}" for ${flag}: use a number with a unit, like 10s, 1m30s or 500ms`)
  }
  return Math.round(parts.reduce((ms, p) => ms + Number(p[1]) * UNIT_MS[p[2]!]!, 0))
}

export function formatDuration (ms: number): string {
  if (ms === 0) return '0s'
  const out: string[] = []
  let rest = ms
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (rest >= size) {
      out.push(`${Math.floor(rest / size)}${unit}`)
      rest %= size
    }
  }
  if (rest > 0) out.push(`${rest}ms`)
  return out.join('')
}

/** Docker's (go-units) HumanDuration: "Less than a second", "48 seconds", "About a minute", "3 hours", … */
export function humanDuration (ms: number): string {
  const seconds = Math.floor(ms / 1000)
  if (seconds < 1) return 'Less than a second'
  if (seconds === 1) return '1 second'
  if (seconds < 60) return `${seconds} seconds`
  const minutes = Math.floor(ms / 60_000)
  if (minutes === 1) return 'About a minute'
  if (minutes < 60) return `${minutes} minutes`
  const hours = Math.round(ms / 3_600_000)
  if (hours === 1) return 'About an hour'
  if (hours < 48) return `${hours} hours`
  if (hours < 24 * 7 * 2) return `${Math.floor(hours / 24)} days`
  if (hours < 24 * 30 * 2) return `${Math.floor(hours / 24 / 7)} weeks`
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24 / 30)} months`
  return `${Math.floor(hours / 24 / 365)} years`
}

/** `Running 48 seconds ago`, `Running less than a second ago`. */
export function stateSince (state: string, since: number, now: number): string {
  const ago = humanDuration(Math.max(0, now - since))
  return `${capitalize(state)} ${ago.charAt(0).toLowerCase()}${ago.slice(1)} ago`
}

export function capitalize (word: string): string {
  return word === '' ? word : word.charAt(0).toUpperCase() + word.slice(1)
}

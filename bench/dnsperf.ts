/**
 * Reading dnsperf 2.10's output. The summary gives throughput and the mean
 * latency; percentiles come from `-v`, which prints one line per answered
 * query with its latency in seconds (`> NOERROR svc-001 A 0.000123`).
 */

export interface DnsperfSummary {
  readonly qps: number
  readonly completed: number
  readonly lost: number
  readonly avgLatencyMs: number
  /** e.g. `NOERROR 99.00%, NXDOMAIN 1.00%`, as dnsperf prints it. */
  readonly rcodes: string
}

export interface Percentiles {
  readonly count: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly p999Ms: number
  readonly maxMs: number
}

function field (stdout: string, label: string): string {
  const match = new RegExp(`^\\s*${label}:\\s*(.+)$`, 'm').exec(stdout)
  if (match === null) throw new Error(`dnsperf output has no "${label}" line:\n${stdout.slice(-1500)}`)
  return match[1]!.trim()
}

export function parseSummary (stdout: string): DnsperfSummary {
  return {
    qps: Number(field(stdout, 'Queries per second')),
    completed: Number(field(stdout, 'Queries completed').split(' ')[0]),
    lost: Number(field(stdout, 'Queries lost').split(' ')[0]),
    avgLatencyMs: Number(field(stdout, 'Average Latency \\(s\\)').split(' ')[0]) * 1000,
    rcodes: field(stdout, 'Response codes').replace(/ \(/g, ' ').replace(/\)/g, '')
  }
}

/** Nearest-rank percentiles of the per-query latencies `dnsperf -v` printed. */
export function parseLatencies (stdout: string): Percentiles {
  const samples: number[] = []
  for (const match of stdout.matchAll(/^> \S+ \S+ \S+ (\d+\.\d+)$/gm)) samples.push(Number(match[1]) * 1000)
  if (samples.length === 0) throw new Error(`dnsperf -v printed no per-query latencies:\n${stdout.slice(-1500)}`)
  const sorted = Float64Array.from(samples).sort()
  const rank = (p: number): number => sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!
  return { count: sorted.length, p50Ms: rank(0.5), p99Ms: rank(0.99), p999Ms: rank(0.999), maxMs: sorted[sorted.length - 1]! }
}

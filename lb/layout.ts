/**
 * The nft layout lb owns, in one place: the table, its sets and their
 * declarations, its chains and the exact text of their rules, and how set
 * elements group by the frontend (or backend) they belong to.
 *
 * Rule texts are written in the form `nft list` prints them back (checked on
 * the kernel by test/e2e/lb-kernel.test.ts), so a ruleset parsed from the
 * kernel compares equal to a compiled one.
 *
 * Design constraint: everything that changes with an endpoint is a set
 * element, and no verdict map grows with the number of services. Per-service
 * objects (chains, named sets, anonymous sets, counter objects) make nft's
 * userspace cache, and the kernel's linear set list, cost O(services) per
 * transaction (320-430 ms per change at 10,000 services with per-service
 * chains and counters); a verdict map keyed by VIP makes the kernel walk it
 * after every change that adds a jump (README "Why this layout").
 */
export const FAMILY = 'ip'
/** Starts with "weft" so the project's leak check sees a forgotten one. */
export const TABLE = 'weft_lb'

/**
 * Packet mark bit set on a routing-mesh (ingress mode) connection's first
 * packet in prerouting, and tested in postrouting to masquerade it (kube-proxy
 * does the same with 0x4000). host-mode connections go out the same leg but
 * keep the client address, so the leg alone cannot tell them apart.
 */
export const MESH_MARK = 0x02000000
/** A fixed seed: `sh` keeps a client on its backend across restarts and rule rewrites (the kernel picks a random one otherwise). */
export const JHASH_SEED = 0x77656674

export type Hook = 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting'

export interface BaseChain {
  readonly type: 'nat' | 'filter'
  readonly hook: Hook
  readonly priority: number
}

export interface NftSetDecl {
  /** Kernel key type(s) as `nft -j` shows them, joined with ' . '. */
  readonly type: string
  /** Map data type (`verdict`, `ipv4_addr`, ...), or null for a plain set. */
  readonly data: string | null
  /** Each element carries its own counter (`counter` flag on the set). */
  readonly counter: boolean
}

export const hex = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`

const hooks = {
  natPrerouting: { type: 'nat', hook: 'prerouting', priority: -100 },
  natOutput: { type: 'nat', hook: 'output', priority: -100 },
  natPostrouting: { type: 'nat', hook: 'postrouting', priority: 100 },
  filterInput: { type: 'filter', hook: 'input', priority: 0 },
  filterForward: { type: 'filter', hook: 'forward', priority: 0 },
  filterOutput: { type: 'filter', hook: 'output', priority: 0 }
} as const satisfies Record<string, BaseChain>

// ---------------------------------------------------------------------------
// Task namespaces: VIPs.

export const TASK_SETS: ReadonlyMap<string, NftSetDecl> = new Map([
  /** VIP . slot → backend address; slots 0..N-1 are the healthy backends in address order. */
  ['vip_slots', { type: 'ipv4_addr . integer', data: 'ipv4_addr', counter: false }],
  /** VIPs without a healthy backend: rejected in the filter chain (reject is not allowed in nat chains). */
  ['idle_vips', { type: 'ipv4_addr', data: null, counter: false }],
  /**
   * VIP . backend, one counter per element: new connections; packets in the original direction (caller →
   * backend, ipvsadm's InPkts); packets in the reply direction (OutPkts). Kept while the backend is listed,
   * healthy or not, so a health flap does not reset them.
   */
  ['vip_conns', { type: 'ipv4_addr . ipv4_addr', data: null, counter: true }],
  ['vip_orig', { type: 'ipv4_addr . ipv4_addr', data: null, counter: true }],
  ['vip_reply', { type: 'ipv4_addr . ipv4_addr', data: null, counter: true }]
])

/**
 * The VIPs with `backends` healthy backends under one scheduler: one set per
 * (scheduler, count) in use, one nat rule each. Not a verdict map VIP → chain:
 * the kernel validates a table after every `jump` element it gains, walking
 * every verdict map, so re-pointing one VIP cost O(VIPs) in the kernel
 * (measured 5-6 ms per transaction at 50,000 VIPs, against 0.02 ms for a
 * plain set element).
 */
export const VIP_DISPATCH_SET: NftSetDecl = Object.freeze({ type: 'ipv4_addr', data: null, counter: false })

export function vipDispatchSet (scheduler: 'rr' | 'sh', backends: number): string {
  return `vip_${scheduler}_${backends}`
}

export function vipDispatchRule (scheduler: 'rr' | 'sh', backends: number): string {
  return `ip daddr @${vipDispatchSet(scheduler, backends)} dnat to ip daddr . ${picker(scheduler, backends)} map @vip_slots`
}

/** Dispatch sets in rule order: rr before sh, fewer backends first. */
export function compareDispatch (a: { scheduler: 'rr' | 'sh', backends: number }, b: { scheduler: 'rr' | 'sh', backends: number }): number {
  return a.scheduler !== b.scheduler ? (a.scheduler < b.scheduler ? -1 : 1) : a.backends - b.backends
}

export const TASK_FILTER_CHAINS: ReadonlyMap<string, { base: BaseChain, rules: readonly string[] }> = new Map([
  ['filter_output', {
    base: hooks.filterOutput,
    // `ct state new` first: the lookups then cost a connection's first packet only, not every packet.
    rules: [
      'ct state new ip daddr @idle_vips reject with tcp reset',
      'ct state new ip daddr @idle_vips reject',
      'ct state new ct status dnat ct original ip daddr . ip daddr @vip_conns',
      'ct status dnat ct original ip daddr . ip daddr @vip_orig'
    ]
  }],
  ['filter_input', { base: hooks.filterInput, rules: ['ct status dnat ct original ip daddr . ip saddr @vip_reply'] }]
])

/** The VIP nat chain: one rule per dispatch set in use. */
export function taskNatChain (dispatch: ReadonlyArray<{ scheduler: 'rr' | 'sh', backends: number }>): { base: BaseChain, rules: readonly string[] } {
  return { base: hooks.natOutput, rules: dispatch.map((d) => vipDispatchRule(d.scheduler, d.backends)) }
}

// ---------------------------------------------------------------------------
// The host namespace: published ports (the routing mesh and host mode).

export const HOST_SETS: ReadonlyMap<string, NftSetDecl> = new Map([
  /** proto . published port → jump to the dispatch chain of its mode, scheduler and backend count. */
  ['ports', { type: 'inet_proto . inet_service', data: 'verdict', counter: false }],
  /**
   * Per protocol, published port . slot → task address . target port. One map per protocol because nft 1.0.6
   * ties a typeof map's `addr . port` data to one transport protocol (see setDeclaration).
   */
  ['tcp_slots', { type: 'inet_service . integer', data: 'ipv4_addr . inet_service', counter: false }],
  ['udp_slots', { type: 'inet_service . integer', data: 'ipv4_addr . inet_service', counter: false }],
  ['idle_ports', { type: 'inet_proto . inet_service', data: null, counter: false }],
  /** proto . task address . target port, as vip_conns/orig/reply (shared by two published ports of one target). */
  ['port_conns', { type: 'inet_proto . ipv4_addr . inet_service', data: null, counter: true }],
  ['port_orig', { type: 'inet_proto . ipv4_addr . inet_service', data: null, counter: true }],
  ['port_reply', { type: 'inet_proto . ipv4_addr . inet_service', data: null, counter: true }]
])

export function portDispatchChain (mode: 'ingress' | 'host', protocol: 'tcp' | 'udp', scheduler: 'rr' | 'sh', backends: number): string {
  return `${mode}_${protocol}_${scheduler}_${backends}`
}

export function portDispatchRules (mode: 'ingress' | 'host', protocol: 'tcp' | 'udp', scheduler: 'rr' | 'sh', backends: number): string[] {
  // `tcp dport` / `udp dport` (not `th`): nft adds the matching `meta l4proto` itself, which a DNAT that
  // sets a port requires, and which agrees with the map's declaration.
  const dnat = `dnat ip to ${protocol} dport . ${picker(scheduler, backends)} map @${protocol}_slots`
  return mode === 'ingress' ? [`meta mark set meta mark | ${hex(MESH_MARK)}`, dnat] : [dnat]
}

export function hostBaseChains (leg: string): ReadonlyMap<string, { base: BaseChain, rules: readonly string[] }> {
  const ifname = JSON.stringify(leg)
  return new Map([
    // Not from the leg: the ingress network's own traffic to this node's ingress address is not re-balanced.
    ['nat_prerouting', { base: hooks.natPrerouting, rules: [`iifname != ${ifname} fib daddr type local meta l4proto . th dport vmap @ports`] }],
    // The node's own connections to its addresses; not loopback (a 127/8 source cannot leave through the leg).
    ['nat_output', { base: hooks.natOutput, rules: ['ip daddr != 127.0.0.0/8 fib daddr type local meta l4proto . th dport vmap @ports'] }],
    ['nat_postrouting', { base: hooks.natPostrouting, rules: [`oifname ${ifname} meta mark & ${hex(MESH_MARK)} == ${hex(MESH_MARK)} masquerade`] }],
    ['filter_input', {
      base: hooks.filterInput,
      rules: [
        // Written as nft lists it back: `reject with tcp reset` implies `meta l4proto tcp`, so nft shows `tcp dport`.
        // `ct state new` first: every packet the node receives (the overlay's VXLAN too) passes here, and
        // only a connection's first one needs the lookup.
        `ct state new iifname != ${ifname} meta l4proto . tcp dport @idle_ports reject with tcp reset`,
        `ct state new iifname != ${ifname} meta l4proto . th dport @idle_ports reject`,
        'ct status dnat ct direction reply meta l4proto . ip saddr . th sport @port_reply'
      ]
    }],
    ['filter_forward', {
      base: hooks.filterForward,
      rules: [
        'ct state new ct status dnat meta l4proto . ip daddr . th dport @port_conns',
        'ct status dnat ct direction original meta l4proto . ip daddr . th dport @port_orig',
        'ct status dnat ct direction reply meta l4proto . ip saddr . th sport @port_reply'
      ]
    }],
    ['filter_output', {
      base: hooks.filterOutput,
      rules: [
        'ct state new ct status dnat meta l4proto . ip daddr . th dport @port_conns',
        'ct status dnat ct direction original meta l4proto . ip daddr . th dport @port_orig'
      ]
    }]
  ])
}

/**
 * How a connection picks its slot. `sh`: a hash of the caller's address
 * (affinity). `rr`: `numgen random`, not `numgen inc`. A numgen keeps one
 * counter per rule, and a rule here serves every frontend with the same
 * scheduler and backend count (per-frontend rules or chains cost O(services)
 * per change in nft 1.0.6: measured 50-170 ms at 10,000 services). With one
 * shared counter, a client that alternates between two VIPs of two tasks each
 * would get the even numbers for one and the odd for the other: each VIP
 * pinned to one task, for that client, forever. Random has no such resonance
 * and spreads evenly in expectation (not exactly, as IPVS rr does).
 */
function picker (scheduler: 'rr' | 'sh', backends: number): string {
  return scheduler === 'rr' ? `numgen random mod ${backends}` : `jhash ip saddr mod ${backends} seed ${hex(JHASH_SEED)}`
}

// ---------------------------------------------------------------------------
// Declarations and grouping.

/**
 * The declaration inside `add set NAME { }`. Keys with a numgen/jhash part need
 * `typeof` (there is no named type for a 32-bit integer); the kernel keeps only
 * the resulting types, which is what the model holds, so the typeof text is
 * chosen by set name here.
 *
 * nft 1.0.6 and typeof maps of `addr . port` data: declared `ip daddr . th dport`,
 * every later transaction adding a rule that uses the map fails ("conflicting
 * protocols specified: ip vs. th"); declared `ip daddr . tcp dport`, nft adds a
 * hidden `meta l4proto tcp` to rules using it, and UDP stops matching. Hence
 * one map per protocol, each declared with its own protocol.
 */
const TYPEOF: Readonly<Record<string, string>> = {
  vip_slots: 'typeof ip daddr . numgen inc mod 2 : ip daddr',
  tcp_slots: 'typeof tcp dport . numgen inc mod 2 : ip daddr . tcp dport',
  udp_slots: 'typeof udp dport . numgen inc mod 2 : ip daddr . udp dport'
}

export function setDeclaration (name: string, decl: NftSetDecl): string {
  const head = TYPEOF[name] ?? `type ${decl.data === null ? decl.type : `${decl.type} : ${decl.data}`}`
  return decl.counter ? `${head}; counter;` : `${head};`
}

const FRONTEND_PARTS: ReadonlyMap<string, number> = new Map([
  ['vip_slots', 1], ['idle_vips', 1], ['vip_conns', 1], ['vip_orig', 1], ['vip_reply', 1],
  ['ports', 2], ['idle_ports', 2]
])
const DISPATCH_SET = /^vip_(rr|sh)_\d+$/
const BACKEND_SETS: ReadonlySet<string> = new Set(['port_conns', 'port_orig', 'port_reply'])

/**
 * The group an element belongs to: the frontend it serves (a VIP, `tcp . 8080`),
 * or for the host's counters the backend (`tcp . 10.255.0.5 . 80`). An element
 * belongs to exactly one group, so a change to one frontend is a change to one
 * group, and the diff can skip every group it finds unchanged.
 */
export function groupOf (set: string, key: string): string {
  if (BACKEND_SETS.has(set)) return key
  if (set === 'tcp_slots' || set === 'udp_slots') return `${set.slice(0, 3)} . ${key.split(' . ', 1)[0]!}`
  const parts = DISPATCH_SET.test(set) ? 1 : FRONTEND_PARTS.get(set)
  if (parts === undefined) return `?${set}`
  return key.split(' . ', parts).join(' . ')
}

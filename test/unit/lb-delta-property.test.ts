/**
 * The delta's invariant, over random documents: for any old and new spec,
 * applyDelta(compile(old), diff(compile(old), compile(new))) equals
 * compile(new), for every namespace (task and host), and applyDelta (which
 * refuses what the kernel refuses) accepts every delta. Also along random
 * edit sequences through one long-lived compiler (its memo and patch paths),
 * whose tables must equal fresh compiles. Seeds are printed on failure.
 */
import t from 'tap'
import { parseDesiredState, type DesiredState } from '../../netd/desired-state.ts'
import { lbSpec, type LbSpec } from '../../lb/spec.ts'
import { RulesetCompiler, canonical, compileHost, compileTask, type NftTable } from '../../lb/ruleset.ts'
import { applyDelta, diff } from '../../lb/delta.ts'
import { prng, randomDocument, randomEdit } from '../fixtures/lb-gen.ts'

const LEG = { ifname: 'wleg0', ip: '10.255.0.2' }
const specOf = (doc: DesiredState): LbSpec => lbSpec(parseDesiredState(doc), { taskNetns: (task) => task, ingressLeg: LEG })

/** Every namespace's table, keyed by namespace ('' = host), with a fresh compiler. */
function tables (spec: LbSpec): Map<string, NftTable | null> {
  const out = new Map<string, NftTable | null>([['', compileHost(spec.host)]])
  for (const [netns, task] of spec.tasks) out.set(netns, compileTask(task))
  return out
}

t.test('applyDelta(a, diff(a, b)) equals b, for random pairs of documents', async (t) => {
  const RUNS = 300
  let checked = 0
  for (let seed = 1; seed <= RUNS; seed++) {
    const random = prng(seed)
    const before = tables(specOf(randomDocument(random)))
    const after = tables(specOf(randomDocument(random)))
    for (const netns of new Set([...before.keys(), ...after.keys()])) {
      const a = before.get(netns) ?? null
      const b = after.get(netns) ?? null
      let applied: NftTable | null
      try {
        applied = applyDelta(a, diff(a, b))
      } catch (error) {
        t.fail(`seed ${seed}, namespace "${netns}": ${(error as Error).message}`)
        return
      }
      if (JSON.stringify(canonical(applied)) !== JSON.stringify(canonical(b))) {
        t.same(canonical(applied), canonical(b), `seed ${seed}, namespace "${netns}"`)
        return
      }
      checked++
    }
  }
  t.ok(checked > RUNS, `${checked} namespace transitions checked`)
})

t.test('a long-lived compiler along random edits: equal to fresh compiles, deltas apply', async (t) => {
  for (let seed = 1000; seed < 1060; seed++) {
    const random = prng(seed)
    const compiler = new RulesetCompiler()
    let doc = randomDocument(random)
    let applied = new Map<string, NftTable | null>()
    for (let step = 0; step < 25; step++) {
      const spec = specOf(doc)
      const fresh = tables(spec)
      const next = new Map<string, NftTable | null>([['', compiler.host(spec.host)]])
      for (const [netns, task] of spec.tasks) next.set(netns, compiler.task(task))
      compiler.sweep()
      for (const [netns, table] of next) {
        const want = JSON.stringify(canonical(fresh.get(netns) ?? null))
        if (JSON.stringify(canonical(table)) !== want) {
          t.fail(`seed ${seed} step ${step} namespace "${netns}": memoised compile differs from a fresh one`)
          return
        }
        const from = applied.get(netns) ?? null
        let result: NftTable | null
        try {
          result = applyDelta(from, diff(from, table))
        } catch (error) {
          t.fail(`seed ${seed} step ${step} namespace "${netns}": ${(error as Error).message}`)
          return
        }
        if (JSON.stringify(canonical(result)) !== want) {
          t.fail(`seed ${seed} step ${step} namespace "${netns}": applied delta differs`)
          return
        }
      }
      applied = next
      doc = randomEdit(random, doc)
    }
  }
  t.pass('60 sequences of 25 syncs')
})

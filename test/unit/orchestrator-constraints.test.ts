/**
 * Placement constraints: Swarm's syntax, its case-insensitive matching, and a
 * clear error for every way an expression can be wrong.
 */
import t from 'tap'
import { parseConstraint, parseConstraints, satisfies, satisfiesAll, type Constraint } from '../../manager/orchestrator/constraints.ts'

const worker1 = { id: 'oibbiiwrgwjkw0ni38ydrfsre', hostname: 'worker1', role: 'worker', labels: { datacenter: 'bjidc', disk: 'SSD' } }
const manager = { id: 'qc42f6myqfpoevfkrzmx08n0r', hostname: 'manager', role: 'manager', labels: {} }

const parse = (expression: string): Constraint => {
  const parsed = parseConstraint(expression)
  if (!parsed.ok) throw new Error(parsed.error)
  return parsed.value
}

t.test('the four keys, both operators', async (t) => {
  t.same(parse('node.hostname==worker1').key, { kind: 'hostname' })
  t.same(parse('node.role != manager').operator, '!=')
  t.same(parse('node.id==abc').key, { kind: 'id' })
  t.same(parse('node.labels.datacenter==bjidc').key, { kind: 'label', label: 'datacenter' })
  t.equal(parse('  node.hostname  ==  worker1 ').value, 'worker1', 'spaces around the operator are ignored')
})

t.test('matching', async (t) => {
  t.ok(satisfies(worker1, parse('node.hostname==worker1')))
  t.notOk(satisfies(manager, parse('node.hostname==worker1')))
  t.ok(satisfies(manager, parse('node.hostname!=worker1')))
  t.ok(satisfies(manager, parse('node.role==manager')))
  t.ok(satisfies(worker1, parse('node.role!=manager')))
  t.ok(satisfies(worker1, parse(`node.id==${worker1.id}`)))
  t.ok(satisfies(worker1, parse('node.labels.datacenter==bjidc')))
  t.ok(satisfies(worker1, parse('node.labels.disk==ssd')), 'values compare without regard to case, as SwarmKit does')
  t.ok(satisfies(worker1, parse('node.HOSTNAME==WORKER1')))
  t.notOk(satisfies(manager, parse('node.labels.datacenter==bjidc')), 'a missing label equals nothing')
  t.ok(satisfies(manager, parse('node.labels.datacenter!=bjidc')), 'so != holds on a node without the label')
  const all = parseConstraints(['node.role==worker', 'node.labels.datacenter==bjidc'])
  t.ok(all.ok && satisfiesAll(worker1, all.value))
  t.ok(all.ok && !satisfiesAll(manager, all.value))
  t.ok(satisfiesAll(manager, []), 'no constraint: every node')
})

t.test('bad expressions are clear errors', async (t) => {
  const errorOf = (expression: string): string => {
    const parsed = parseConstraint(expression)
    return parsed.ok ? 'ok' : parsed.error
  }
  t.match(errorOf('node.hostname=worker1'), /invalid constraint "node.hostname=worker1": expected KEY==VALUE or KEY!=VALUE/)
  t.match(errorOf('node.host==worker1'), /unknown key "node.host" \(use node.id, node.hostname, node.role or node.labels.KEY\)/)
  t.match(errorOf('engine.labels.x==y'), /unknown key "engine.labels.x"/)
  t.match(errorOf('node.role==boss'), /node.role is manager or worker, not "boss"/)
  t.match(errorOf('node.hostname=='), /the value is empty/)
  t.match(errorOf('==x'), /the key is empty/)
  t.match(errorOf('node.labels.==x'), /the label name is empty/)
  t.match(errorOf('node.hostname==a==b'), /more than one operator/)
  t.match(errorOf('node.hostname==a!b'), /contains = or !/)
  const list = parseConstraints(['node.role==worker', 'node.bogus==1'])
  t.notOk(list.ok)
  t.match(list.ok ? '' : list.error, /node.bogus/, 'a list reports its first bad expression')
})

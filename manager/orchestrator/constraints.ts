/**
 * Placement constraints, as `docker service create --constraint` takes them:
 *
 *   node.id==ID   node.hostname==NAME   node.role==manager|worker   node.labels.KEY==VALUE
 *
 * each with `==` or `!=`. Values compare without regard to case (SwarmKit's
 * EqualFold); a label the node does not have equals nothing, so
 * `node.labels.zone!=east` holds on a node without a zone label.
 *
 * A leaf module: the store uses it to refuse a bad expression when a service
 * is created, the scheduler to place tasks.
 */

export type ConstraintKey =
  | { readonly kind: 'id' }
  | { readonly kind: 'hostname' }
  | { readonly kind: 'role' }
  | { readonly kind: 'label', readonly label: string }

export interface Constraint {
  readonly expression: string
  readonly key: ConstraintKey
  readonly operator: '==' | '!='
  readonly value: string
}

/** What a constraint can look at: a node record satisfies it. */
export interface ConstraintSubject {
  readonly id: string
  readonly hostname: string
  readonly role: string
  readonly labels: Readonly<Record<string, string>>
}

export type Parsed<T> = { readonly ok: true, readonly value: T } | { readonly ok: false, readonly error: string }

const KEYS = 'node.id, node.hostname, node.role or node.labels.KEY'

export function parseConstraint (expression: string): Parsed<Constraint> {
  const bad = (why: string): Parsed<Constraint> => ({ ok: false, error: `invalid constraint "${expression}": ${why}` })
  const match = /^(.*?)(==|!=)(.*)$/.exec(expression)
  if (match === null) return bad('expected KEY==VALUE or KEY!=VALUE')
  const keyText = match[1]!.trim()
  const operator = match[2] as '==' | '!='
  const value = match[3]!.trim()
  if (value.includes('==') || value.includes('!=')) return bad('more than one operator')
  if (value === '') return bad('the value is empty')
  if (/[=!]/.test(value)) return bad(`the value "${value}" contains = or !`)
  let key: ConstraintKey
  const lower = keyText.toLowerCase()
  if (lower === 'node.id') key = { kind: 'id' }
  else if (lower === 'node.hostname') key = { kind: 'hostname' }
  else if (lower === 'node.role') {
    key = { kind: 'role' }
    if (!['manager', 'worker'].includes(value.toLowerCase())) return bad(`node.role is manager or worker, not "${value}"`)
  } else if (lower.startsWith('node.labels.')) {
    const label = keyText.slice('node.labels.'.length)
    if (label === '') return bad('the label name is empty')
    key = { kind: 'label', label }
  } else if (keyText === '') return bad('the key is empty')
  else return bad(`unknown key "${keyText}" (use ${KEYS})`)
  return { ok: true, value: { expression, key, operator, value } }
}

/** Parses all, and reports the first bad one. */
export function parseConstraints (expressions: readonly string[]): Parsed<Constraint[]> {
  const out: Constraint[] = []
  for (const expression of expressions) {
    const parsed = parseConstraint(expression)
    if (!parsed.ok) return parsed
    out.push(parsed.value)
  }
  return { ok: true, value: out }
}

function subjectValue (key: ConstraintKey, node: ConstraintSubject): string | undefined {
  switch (key.kind) {
    case 'id': return node.id
    case 'hostname': return node.hostname
    case 'role': return node.role
    case 'label': return node.labels[key.label]
  }
}

export function satisfies (node: ConstraintSubject, constraint: Constraint): boolean {
  const actual = subjectValue(constraint.key, node)
  const equal = actual !== undefined && actual.toLowerCase() === constraint.value.toLowerCase()
  return constraint.operator === '==' ? equal : !equal
}

export function satisfiesAll (node: ConstraintSubject, constraints: readonly Constraint[]): boolean {
  return constraints.every((c) => satisfies(node, c))
}

const cache = new WeakMap<readonly string[], Parsed<Constraint[]>>()

/** parseConstraints, remembered per (immutable, stored) array: the scheduler asks once per task and node. */
export function constraintsOf (expressions: readonly string[]): Parsed<Constraint[]> {
  let parsed = cache.get(expressions)
  if (parsed === undefined) cache.set(expressions, parsed = parseConstraints(expressions))
  return parsed
}

/**
 * netd/ipv4.ts against ip-address, the library it stands in for on the
 * per-endpoint path: the same strings accepted, the same numbers.
 */
import { Address4 } from 'ip-address'
import t from 'tap'
import { parseIpv4 } from '../../netd/ipv4.ts'

const libraryAccepts = (text: string): boolean => Address4.isValid(text) && !text.includes('/')

t.test('accepts what Address4 accepts for a plain address, and nothing else', async (t) => {
  const cases = ['1.2.3.4', '0.0.0.0', '255.255.255.255', '10.0.0.10', '01.2.3.4', '1.2.3.04', '1.2.3', '1.2.3.4.5', '256.1.1.1', '1.2.3.256',
    ' 1.2.3.4', '1.2.3.4 ', '1.2.3.4\n', '1..3.4', '', '1.2.3.4/24', '1.2.3.4/', '0x1.2.3.4', '1.2.3.4%1', '١.2.3.4', '-1.2.3.4', '1.2.3.+4', '1.2.3.0255', '1.2.3.4444', '1.2.3.00', '1.2.3.0', '.1.2.3', '1.2.3.']
  for (const text of cases) t.equal(parseIpv4(text) !== null, libraryAccepts(text), JSON.stringify(text))
})

t.test('random dotted strings: the same verdict, and the same number when valid', async (t) => {
  let seed = 0x1f2e3d
  const random = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
    return seed % n
  }
  const pieces = ['0', '1', '9', '10', '99', '100', '199', '200', '249', '250', '255', '256', '300', '01', '001', '', 'a', ' ']
  let valid = 0
  for (let i = 0; i < 5000; i++) {
    const text = Array.from({ length: 3 + random(3) }, () => pieces[random(pieces.length)]).join('.')
    const parsed = parseIpv4(text)
    if (parsed !== null) valid++
    if ((parsed !== null) !== libraryAccepts(text)) t.fail(`verdicts differ on ${JSON.stringify(text)}`)
    else if (parsed !== null && parsed !== Number(new Address4(text).bigInt())) t.fail(`numbers differ on ${text}: ${parsed}`)
  }
  t.ok(valid > 100, `${valid} of the random strings were addresses`)
})
